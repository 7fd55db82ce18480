//! A small cron expression parser and matcher, in UTC.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::CronError;

/// How far ahead [`Cron::next_after`] looks before it gives up (an expression such as
/// `0 0 30 2 *`, February 30th, never matches).
const SEARCH_DAYS: i64 = 366 * 8;

/// A parsed cron expression, evaluated in UTC.
///
/// Five fields (`minute hour day-of-month month day-of-week`, at second 0) or six (a leading
/// `second` field). Each field takes `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or
/// `a/n`, and comma-separated lists of these; months take `JAN`-`DEC` and days of the week
/// `SUN`-`SAT` (0 or 7 is Sunday); `?` is `*`. The macros `@yearly`, `@annually`,
/// `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` are accepted.
///
/// As in classic cron, when both day-of-month and day-of-week are restricted (neither starts
/// with `*`), a day matches if either matches.
///
/// ```
/// use dual_mode_runtime::jobs::Cron;
/// let every_5_min = Cron::parse("*/5 * * * *").unwrap();
/// assert_eq!(every_5_min.next_after_secs(0), Some(300));
/// let every_second = Cron::parse("* * * * * *").unwrap();
/// assert_eq!(every_second.next_after_secs(10), Some(11));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    expr: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses a cron expression.
    ///
    /// # Errors
    /// A [`CronError`] naming the expression and what is wrong.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let err = |detail: String| CronError { expr: expr.to_owned(), detail };
        let trimmed = expr.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(err(format!("unknown macro `{other}`"))),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(err(format!("expected 5 or 6 fields, found {n}"))),
        };
        let field = |name: &str, text: &str, min: u32, max: u32, names: &[&str]| {
            parse_field(text, min, max, names).map_err(|d| err(format!("{name} field `{text}`: {d}")))
        };
        let mut weekdays = field("day-of-week", rest[4], 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let star = |s: &str| s.starts_with('*') || s.starts_with('?');
        Ok(Self {
            expr: expr.to_owned(),
            seconds: field("second", sec, 0, 59, &[])?,
            minutes: field("minute", rest[0], 0, 59, &[])?,
            hours: field("hour", rest[1], 0, 23, &[])?,
            days: field("day-of-month", rest[2], 1, 31, &[])?,
            months: field("month", rest[3], 1, 12, &MONTHS)?,
            weekdays,
            days_star: star(rest[2]),
            weekdays_star: star(rest[4]),
        })
    }

    /// The expression as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first matching time strictly after `t` (whole seconds), or `None` if none within
    /// eight years.
    #[must_use]
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).ok()?,
            Err(e) => -i64::try_from(e.duration().as_secs()).ok()? - 1,
        };
        let next = self.next_after_secs(secs)?;
        Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(next).ok()?))
    }

    /// The first matching Unix second strictly after `t`.
    #[must_use]
    pub fn next_after_secs(&self, t: i64) -> Option<i64> {
        let start = t.checked_add(1)?;
        let first_day = start.div_euclid(86_400);
        let first_sod = start.rem_euclid(86_400);
        for day in first_day..first_day + SEARCH_DAYS {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day { first_sod } else { 0 };
            if let Some(sod) = self.time_at_or_after(from) {
                return Some(day * 86_400 + sod);
            }
        }
        None
    }

    /// Whether the Unix second `t` matches.
    #[must_use]
    pub fn matches_secs(&self, t: i64) -> bool {
        let sod = t.rem_euclid(86_400);
        self.day_matches(t.div_euclid(86_400)) && self.time_at_or_after(sod) == Some(sod)
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, month, dom) = civil_from_days(day);
        let dow = day.wrapping_add(4).rem_euclid(7);
        if !bit(self.months, i64::from(month)) {
            return false;
        }
        let d = bit(self.days, i64::from(dom));
        let w = bit(self.weekdays, dow);
        match (self.days_star, self.weekdays_star) {
            (false, false) => d || w,
            _ => d && w,
        }
    }

    fn time_at_or_after(&self, sod: i64) -> Option<i64> {
        let (sh, sm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
        let mut h = next_bit(self.hours, sh, 23)?;
        loop {
            let m_from = if h == sh { sm } else { 0 };
            if let Some(mut m) = next_bit(self.minutes, m_from, 59) {
                loop {
                    let s_from = if h == sh && m == sm { ss } else { 0 };
                    if let Some(s) = next_bit(self.seconds, s_from, 59) {
                        return Some(h * 3600 + m * 60 + s);
                    }
                    m = next_bit(self.minutes, m + 1, 59)?;
                }
            }
            h = next_bit(self.hours, h + 1, 23)?;
        }
    }
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

fn bit(mask: u64, i: i64) -> bool {
    (0..64).contains(&i) && mask & (1u64 << i) != 0
}

/// The lowest set bit of `mask` in `from..=max`.
fn next_bit(mask: u64, from: i64, max: i64) -> Option<i64> {
    (from.max(0)..=max).find(|&i| bit(mask, i))
}

fn parse_value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    let offset = u32::from(names.len() == 12);
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return u32::try_from(i).map(|i| i + offset).map_err(|e| e.to_string());
    }
    let v: u32 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if v < min || v > max {
        return Err(format!("{v} is out of range {min}-{max}"));
    }
    Ok(v)
}

fn parse_field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".to_owned());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("step `{s}` is not a number"))?;
                if step == 0 {
                    return Err("step must be at least 1".to_owned());
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(a, min, max, names)?, parse_value(b, min, max, names)?);
            if a > b {
                return Err(format!("range {a}-{b} is reversed"));
            }
            (a, b)
        } else {
            let a = parse_value(range, min, max, names)?;
            (a, if step.is_some() { max } else { a })
        };
        let mut v = lo;
        while v <= hi {
            mask |= 1u64 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok(mask)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date-time.
    fn ts(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
        // days_from_civil
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (mo + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + h * 3600 + mi * 60 + s
    }

    fn next(expr: &str, from: i64) -> Option<i64> {
        Cron::parse(expr).expect("valid").next_after_secs(from)
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(ts(2024, 2, 29, 0, 0, 0) / 86_400), (2024, 2, 29));
        assert_eq!(civil_from_days(ts(2000, 3, 1, 0, 0, 0) / 86_400), (2000, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn basic_fields() {
        let t = ts(2025, 6, 1, 12, 34, 56);
        assert_eq!(next("* * * * *", t), Some(ts(2025, 6, 1, 12, 35, 0)));
        assert_eq!(next("* * * * * *", t), Some(t + 1));
        assert_eq!(next("*/15 * * * *", t), Some(ts(2025, 6, 1, 12, 45, 0)));
        assert_eq!(next("0 0 * * *", t), Some(ts(2025, 6, 2, 0, 0, 0)));
        assert_eq!(next("30 9 1 * *", t), Some(ts(2025, 7, 1, 9, 30, 0)));
        assert_eq!(next("0 0 1 JAN *", t), Some(ts(2026, 1, 1, 0, 0, 0)));
        assert_eq!(next("*/10 * * * * *", t), Some(ts(2025, 6, 1, 12, 35, 0)));
        assert_eq!(next("5,10-12 * * * * *", ts(2025, 6, 1, 0, 0, 10)), Some(ts(2025, 6, 1, 0, 0, 11)));
        assert_eq!(next("0-30/10 * * * * *", ts(2025, 6, 1, 0, 0, 25)), Some(ts(2025, 6, 1, 0, 0, 30)));
        assert_eq!(next("20/20 * * * * *", ts(2025, 6, 1, 0, 0, 41)), Some(ts(2025, 6, 1, 0, 1, 20)));
        assert_eq!(next("@hourly", t), Some(ts(2025, 6, 1, 13, 0, 0)));
    }

    #[test]
    fn weekdays_and_days() {
        // 2025-06-01 is a Sunday.
        let t = ts(2025, 6, 1, 12, 0, 0);
        assert_eq!(next("0 9 * * MON", t), Some(ts(2025, 6, 2, 9, 0, 0)));
        assert_eq!(next("0 9 * * 0", t), Some(ts(2025, 6, 8, 9, 0, 0)));
        assert_eq!(next("0 9 * * 7", t), Some(ts(2025, 6, 8, 9, 0, 0)));
        assert_eq!(next("0 9 * * mon-fri", ts(2025, 6, 6, 10, 0, 0)), Some(ts(2025, 6, 9, 9, 0, 0)));
        // Both restricted: either matches (the 15th, or any Friday).
        assert_eq!(next("0 0 15 * FRI", t), Some(ts(2025, 6, 6, 0, 0, 0)));
        assert_eq!(next("0 0 15 * FRI", ts(2025, 6, 13, 1, 0, 0)), Some(ts(2025, 6, 15, 0, 0, 0)));
        // Leap day.
        assert_eq!(next("0 0 29 2 *", t), Some(ts(2028, 2, 29, 0, 0, 0)));
        // Never.
        assert_eq!(next("0 0 30 2 *", t), None);
    }

    #[test]
    fn matches() {
        let c = Cron::parse("*/2 * * * * *").expect("valid");
        assert!(c.matches_secs(ts(2025, 1, 1, 0, 0, 2)));
        assert!(!c.matches_secs(ts(2025, 1, 1, 0, 0, 3)));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "1,,2 * * * *",
            "@often",
        ] {
            let e = Cron::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid cron expression"), "{e}");
        }
        let e = Cron::parse("* 24 * * *").expect_err("hour");
        assert!(e.detail.contains("hour field"), "{e}");
    }
}
