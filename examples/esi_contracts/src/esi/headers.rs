//! What ESI's response headers and error bodies say: dates, `Retry-After`, the rate-limit
//! bucket (`X-Ratelimit-Limit`) and the error-limit window.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};

use crate::timestamp::Timestamp;

/// ESI's `{"error": "..."}` text, or the start of the body.
pub(super) fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(serde_json::Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

pub(super) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

pub(super) fn header_time(headers: &HeaderMap, name: header::HeaderName) -> Option<Timestamp> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| Timestamp::parse_http_date(v.trim()).ok())
}

/// `Retry-After` as seconds or as an HTTP-date.
pub(super) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = Timestamp::parse_http_date(value).ok()?;
    Some(Duration::from_secs(u64::try_from(at.0 - Timestamp::now().0).unwrap_or(0)))
}

/// `X-Ratelimit-Limit`, `150/15m`: the tokens and the window they refill over.
pub(super) fn rate_limit_of(headers: &HeaderMap) -> Option<(u64, Duration)> {
    let (tokens, window) = header_str(headers, "x-ratelimit-limit")?.split_once('/')?;
    let tokens = tokens.trim().parse::<u64>().ok().filter(|&t| t > 0)?;
    let window = window.trim();
    let unit = match window.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        _ => return None,
    };
    let n = window[..window.len() - 1].parse::<u64>().ok()?;
    Some((tokens, Duration::from_secs(n.checked_mul(unit)?)))
}

/// `X-ESI-Error-Limit-Reset`, 0 when absent.
pub(super) fn reset_of(headers: &HeaderMap) -> u64 {
    header_str(headers, "x-esi-error-limit-reset").and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (header::HeaderName::from_static(name), value.parse().unwrap())).collect()
    }

    #[test]
    fn rate_limit_windows() {
        let of = |v: &str| rate_limit_of(&headers(&[("x-ratelimit-limit", v)]));
        assert_eq!(of("150/15m"), Some((150, Duration::from_secs(900))));
        assert_eq!(of("10/1h"), Some((10, Duration::from_secs(3600))));
        assert_eq!(of(" 5 / 90s "), Some((5, Duration::from_secs(90))));
        for bad in ["0/15m", "150", "150/15", "150/m", "x/15m", "150/15d"] {
            assert_eq!(of(bad), None, "{bad}");
        }
        assert_eq!(rate_limit_of(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let of = |v: &str| retry_after_of(&headers(&[("retry-after", v)]));
        assert_eq!(of("12"), Some(Duration::from_secs(12)));
        let later = of(&Timestamp::now().plus_seconds(30).to_http_date()).unwrap();
        assert!((Duration::from_secs(29)..=Duration::from_secs(30)).contains(&later), "{later:?}");
        assert_eq!(of(&Timestamp::now().plus_seconds(-30).to_http_date()), Some(Duration::ZERO), "past: now");
        assert_eq!(of("soon"), None);
    }

    #[test]
    fn error_bodies() {
        assert_eq!(error_text(r#"{"error":"Region not found"}"#), "Region not found");
        assert_eq!(error_text("<html>bad gateway</html>"), "<html>bad gateway</html>");
        assert_eq!(error_text(&"x".repeat(500)).len(), 200);
    }
}
