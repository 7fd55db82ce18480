//! [`Timestamp`]: a UTC instant in unix seconds, with the two text forms ESI uses: RFC 3339 in
//! bodies (`2026-11-20T11:32:05Z`) and IMF-fixdate HTTP-dates in headers
//! (`Fri, 20 Nov 2026 12:00:00 GMT`). The calendar arithmetic is H. Hinnant's, a few lines, so
//! the example needs no date crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with one-second precision, as unix seconds.
///
/// Serialized as RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`, the form ESI uses; parsing also tolerates
/// fractional seconds (dropped), a lowercase `t`/`z` and a numeric `+HH:MM`/`-HH:MM` offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub i64);

/// Why a string is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {expected} timestamp: {input:?}")]
pub struct TimestampError {
    input: String,
    expected: &'static str,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

impl Timestamp {
    /// The current time of the system clock (0 if the clock is before 1970).
    #[must_use]
    pub fn now() -> Self {
        Self::from_system_time(std::time::SystemTime::now())
    }

    /// The second of `time` (0 before 1970).
    #[must_use]
    pub fn from_system_time(time: std::time::SystemTime) -> Self {
        let secs = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// This instant plus `secs` seconds (saturating).
    #[must_use]
    pub const fn plus_seconds(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Parses RFC 3339 (`2026-11-20T11:32:05Z`, `2026-11-20T11:32:05.123Z`,
    /// `2026-11-20T13:32:05+02:00`).
    ///
    /// # Errors
    /// The input is not such a timestamp, or names a day or time that does not exist.
    pub fn parse_rfc3339(input: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError { input: input.to_owned(), expected: "RFC 3339" };
        let b = input.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(err());
        }
        let year = digits(&b[0..4]).ok_or_else(err)?;
        let month = digits(&b[5..7]).ok_or_else(err)?;
        let day = digits(&b[8..10]).ok_or_else(err)?;
        let hour = digits(&b[11..13]).ok_or_else(err)?;
        let minute = digits(&b[14..16]).ok_or_else(err)?;
        let second = digits(&b[17..19]).ok_or_else(err)?;
        let mut rest = &b[19..];
        if let [b'.', tail @ ..] = rest {
            let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return Err(err());
            }
            rest = &tail[n..];
        }
        let offset = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let oh = digits(&[*h1, *h2]).ok_or_else(err)?;
                let om = digits(&[*m1, *m2]).ok_or_else(err)?;
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let secs = oh * 3600 + om * 60;
                if *sign == b'+' { secs } else { -secs }
            }
            _ => return Err(err()),
        };
        let civil = civil_to_unix(year, month, day, hour, minute, second).ok_or_else(err)?;
        Ok(Self(civil - offset))
    }

    /// Parses an HTTP-date in its preferred IMF-fixdate form (`Fri, 20 Nov 2026 12:00:00 GMT`),
    /// the form ESI sends in `Expires` and `Last-Modified`. The weekday is not checked.
    ///
    /// # Errors
    /// The input is not such a date.
    pub fn parse_http_date(input: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError { input: input.to_owned(), expected: "HTTP-date" };
        let b = input.as_bytes();
        if b.len() != 29
            || &b[3..5] != b", "
            || b[7] != b' '
            || b[11] != b' '
            || b[16] != b' '
            || b[19] != b':'
            || b[22] != b':'
            || &b[25..] != b" GMT"
        {
            return Err(err());
        }
        let day = digits(&b[5..7]).ok_or_else(err)?;
        let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11]).ok_or_else(err)?;
        let year = digits(&b[12..16]).ok_or_else(err)?;
        let hour = digits(&b[17..19]).ok_or_else(err)?;
        let minute = digits(&b[20..22]).ok_or_else(err)?;
        let second = digits(&b[23..25]).ok_or_else(err)?;
        let month = i64::try_from(month).map_err(|_| err())? + 1;
        civil_to_unix(year, month, day, hour, minute, second).map(Self).ok_or_else(err)
    }

    /// Formats as an IMF-fixdate HTTP-date (`Fri, 20 Nov 2026 12:00:00 GMT`).
    #[must_use]
    pub fn to_http_date(self) -> String {
        let (year, month, day, hour, minute, second) = unix_to_civil(self.0);
        let weekday = WEEKDAYS[usize::try_from(self.0.div_euclid(86_400).rem_euclid(7)).unwrap_or(0)];
        let month = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
        format!("{weekday}, {day:02} {month} {year:04} {hour:02}:{minute:02}:{second:02} GMT")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day, hour, minute, second) = unix_to_civil(self.0);
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as 2026-11-20T11:32:05Z")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The value of a run of ASCII digits, `None` if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0_i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
}

const fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

const fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of a validated civil UTC time (second 60, a leap second, is accepted and lands
/// on the next minute).
fn civil_to_unix(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Option<i64> {
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && (0..=23).contains(&hour)
        && (0..=59).contains(&minute)
        && (0..=60).contains(&second);
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// `(year, month, day, hour, minute, second)` of unix seconds (H. Hinnant's `civil_from_days`).
const fn unix_to_civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day, tod / 3600, tod % 3600 / 60, tod % 60)
}
