//! HTML building: escaping, the page layout, times and byte strings. Every value that comes
//! from Redis or the request goes through [`Esc`]; nothing else writes user data.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Text escaped for HTML content and quoted attribute values.
pub(super) struct Esc<'a>(pub(super) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Text escaped for a URL path segment or query value (everything but unreserved
/// characters percent-encoded); the result is HTML-safe as well.
pub(super) struct Url<'a>(pub(super) &'a str);

impl fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                f.write_char(char::from(b))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// Bytes as text: UTF-8 as it is, other bytes replaced.
pub(super) fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A time in UTC, `2026-11-27 17:03:05`, and how long ago (or ahead) it is.
pub(super) struct When(pub(super) SystemTime);

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::{Datelike as _, Timelike as _};
        let secs = self.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let t = chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0).unwrap_or_default();
        write!(
            f,
            "<time title=\"{}\">{:04}-{:02}-{:02} {:02}:{:02}:{:02}</time>",
            Ago(self.0),
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// An optional time; a dash for none.
pub(super) fn when(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "&ndash;".to_owned(), |t| When(t).to_string())
}

/// How long ago (or ahead) a time is, `12 s ago`, `in 3 min`.
pub(super) struct Ago(pub(super) SystemTime);

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match SystemTime::now().duration_since(self.0) {
            Ok(ago) => write!(f, "{} ago", Span(ago)),
            Err(ahead) => write!(f, "in {}", Span(ahead.duration())),
        }
    }
}

/// A duration in its largest sensible unit.
pub(super) struct Span(pub(super) Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            0 => write!(f, "{} ms", self.0.as_millis()),
            1..120 => write!(f, "{s} s"),
            120..7200 => write!(f, "{} min", s / 60),
            7200..172_800 => write!(f, "{} h", s / 3600),
            _ => write!(f, "{} d", s / 86_400),
        }
    }
}

/// A whole page: the header with the mount's links, an optional notice, the body.
pub(super) fn page(base: &str, title: &str, notice: Option<&str>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} &middot; jobs</title>\
         <link rel=\"stylesheet\" href=\"{base}/assets/style.css\">\
         <script src=\"{base}/assets/app.js\" defer></script></head><body>\
         <header><a class=\"brand\" href=\"{home}\">jobs</a>\
         <form class=\"find\" method=\"get\" action=\"{base}/find\">\
         <input name=\"id\" placeholder=\"job id\" aria-label=\"job id\" size=\"38\"><button>find</button></form>\
         </header><main>",
        title = Esc(title),
        base = Esc(base),
        home = Esc(&home(base)),
    );
    if let Some(notice) = notice {
        let _ = write!(out, "<p class=\"notice\" id=\"notice\">{}</p>", Esc(notice));
    }
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// The overview's URL under `base`.
pub(super) fn home(base: &str) -> String {
    if base.is_empty() { "/".to_owned() } else { base.to_owned() }
}

/// A POST form of one button, with the CSRF token; `confirm` asks first (with JavaScript).
pub(super) fn button(action: &str, label: &str, csrf: &str, confirm: Option<&str>) -> String {
    let confirm = confirm.map(|c| format!(" data-confirm=\"{}\"", Esc(c))).unwrap_or_default();
    format!(
        "<form class=\"action\" method=\"post\" action=\"{}\"{confirm}>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>{}</button></form>",
        Esc(action),
        Esc(csrf),
        Esc(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_and_urls_encoded() {
        let s = Esc("<script>alert(\"x\")</script>&'").to_string();
        assert_eq!(s, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;");
        assert_eq!(Url("a b/<c>?").to_string(), "a%20b%2F%3Cc%3E%3F");
    }

    #[test]
    fn times_render_as_utc_dates() {
        let at = |days: u64, secs: u64| When(UNIX_EPOCH + Duration::from_secs(days * 86_400 + secs)).to_string();
        assert!(at(0, 0).contains(">1970-01-01 00:00:00<"), "{}", at(0, 0));
        assert!(at(11_016, 59).contains(">2000-02-29 00:00:59<"), "{}", at(11_016, 59));
        assert!(at(20_784, 61_385).contains(">2026-11-27 17:03:05<"), "{}", at(20_784, 61_385));
    }
}
