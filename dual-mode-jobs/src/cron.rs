//! Cron expressions in an IANA time zone.
//!
//! [croner] parses an expression and finds its matches on the wall clock; the tz database
//! compiled into [chrono-tz](chrono_tz) turns wall-clock times into instants. What happens
//! where the two disagree, at daylight-saving changes, is decided here (see [`Cron`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::error::CronError;

/// How far ahead [`Cron::next_after`] looks before it gives up (an expression such as
/// `0 0 30 2 *`, February 30th, never matches).
const SEARCH_DAYS: i64 = 366 * 8;

/// A parsed cron expression in a time zone (UTC unless one is given).
///
/// Five fields (`minute hour day-of-month month day-of-week`, at second 0) or six (a leading
/// `second` field). Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`,
/// and comma-separated lists of these; months take `JAN`-`DEC` and days of the week
/// `SUN`-`SAT` (0 or 7 is Sunday); `?` is `*`. The extensions:
///
/// - `L` in the day of month is its last day; `5L` in the day of week is the month's last
///   Friday;
/// - `FRI#2` (or `5#2`) is the month's second Friday;
/// - `15W` is the weekday (Monday to Friday) nearest the 15th (for days 2 to 27, whose
///   nearest weekday is always in the same month);
/// - the macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and
///   `@hourly`.
///
/// As in classic cron, when both day-of-month and day-of-week are restricted, a day matches if
/// either matches.
///
/// # Time zones
///
/// An expression is read on the wall clock of its zone: give the zone's IANA name with
/// [`Cron::parse_in`] or [`Cron::in_zone`], or as a `CRON_TZ=` (or `TZ=`) prefix, as cronie
/// and Kubernetes take it: `CRON_TZ=Europe/Berlin 30 2 * * *`. The tz database is compiled in,
/// so the system's tzdata is not read.
///
/// Where daylight-saving time changes the wall clock, ticks follow Vixie cron's rule (also
/// that of the Open Cron Pattern Specification). A *fixed-time* expression is one whose
/// second, minute and hour fields are each a single number (`30 2 * * *`, `@daily`); every
/// other one is an *interval* expression (`*/15 * * * *`, `0 * * * *`, `0 1-3 * * *`).
///
/// - **A skipped hour** (spring forward, 02:00 becomes 03:00): a fixed-time tick that falls
///   in it runs once, at the first instant after the gap (03:00, when the clock jumps), so a
///   daily job does not lose its day. Interval ticks in the gap do not exist: the hour did
///   not happen, and the ticks after it come as usual.
/// - **A repeated hour** (fall back, 02:00 becomes 01:00 again): a fixed-time tick runs once,
///   at the first of its two wall-clock occurrences (01:30 in daylight time), so a daily job
///   does not run twice and does not start an hour late. Interval ticks run in both passes,
///   as elapsed time does: `0 * * * *` ticks every hour, 25 times that day.
///
/// Ticks are instants: [`Cron::next_after_secs`] answers Unix seconds, always strictly later
/// than its argument, so a loop that feeds each tick back in walks every tick once.
///
/// ```
/// use dual_mode_jobs::Cron;
///
/// let every_5_min = Cron::parse("*/5 * * * *").unwrap();
/// assert_eq!(every_5_min.next_after_secs(0), Some(300));
/// // 2026-03-29, when Berlin's clocks jump from 02:00 to 03:00 (01:00 UTC): the 02:30 tick
/// // runs once, at 03:00 local time.
/// let daily = Cron::parse_in("30 2 * * *", "Europe/Berlin").unwrap();
/// let midnight_utc = 1_774_742_400; // 2026-03-29T00:00:00Z
/// assert_eq!(daily.next_after_secs(midnight_utc), Some(midnight_utc + 3600));
/// ```
#[derive(Clone)]
pub struct Cron {
    expr: String,
    pattern: croner::Cron,
    zone: Tz,
    fixed: bool,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.zone == other.zone
    }
}

impl Eq for Cron {}

impl Cron {
    /// Parses a cron expression, in UTC unless it starts with `CRON_TZ=<zone>` or `TZ=<zone>`.
    ///
    /// # Errors
    /// A [`CronError`] naming the expression and what is wrong: a field, a macro, or an
    /// unknown time zone.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let trimmed = expr.trim();
        let prefix = trimmed.split_once(char::is_whitespace).and_then(|(first, rest)| {
            let zone = first.strip_prefix("CRON_TZ=").or_else(|| first.strip_prefix("TZ="))?;
            Some((zone, rest.trim_start()))
        });
        match prefix {
            Some((zone, body)) => Self::build(expr, body, parse_zone(expr, zone)?),
            None => Self::build(expr, trimmed, Tz::UTC),
        }
    }

    /// Parses a cron expression read on the wall clock of the IANA time zone `zone` (such as
    /// `Europe/Berlin`).
    ///
    /// # Errors
    /// A [`CronError`]: the expression does not parse or the zone is unknown.
    pub fn parse_in(expr: &str, zone: &str) -> Result<Self, CronError> {
        Self::parse(expr)?.in_zone(zone)
    }

    /// The same expression read in the IANA time zone `zone`.
    ///
    /// # Errors
    /// A [`CronError`] when the zone is unknown.
    pub fn in_zone(mut self, zone: &str) -> Result<Self, CronError> {
        self.zone = parse_zone(&self.expr, zone)?;
        Ok(self)
    }

    fn build(expr: &str, body: &str, zone: Tz) -> Result<Self, CronError> {
        let err = |detail: String| CronError { expr: expr.to_owned(), detail };
        let expanded = match body {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(err(format!("unknown macro `{other}`"))),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, minute, hour, day) = match fields[..] {
            [minute, hour, day, _, _] => ("0", minute, hour, day),
            [second, minute, hour, day, _, _] => (second, minute, hour, day),
            _ => return Err(err(format!("expected 5 or 6 fields, found {}", fields.len()))),
        };
        // croner 2 lets `W` cross into the next or previous month at a month's edge; refuse the
        // days where that can happen rather than tick on a wrong day.
        for item in day.split(',') {
            if let Some(n) = item.strip_suffix(['W', 'w']).and_then(|n| n.parse::<u32>().ok())
                && (n == 1 || n >= 28)
            {
                return Err(err(format!(
                    "`{item}`: `W` is supported for days 2 to 27 (the nearest weekday of a day at a month's edge is not)"
                )));
            }
        }
        let single = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit());
        let mut parser = croner::Cron::new(expanded);
        parser.with_seconds_optional();
        let pattern = parser.parse().map_err(|e| err(e.to_string()))?;
        Ok(Self { expr: expr.to_owned(), pattern, zone, fixed: single(second) && single(minute) && single(hour) })
    }

    /// The expression as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the time zone the expression is read in (`UTC` by default).
    #[must_use]
    pub fn zone(&self) -> &'static str {
        self.zone.name()
    }

    /// The first tick strictly after `t` (whole seconds), or `None` if none within eight
    /// years.
    #[must_use]
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).ok()?,
            Err(e) => -i64::try_from(e.duration().as_secs()).ok()? - 1,
        };
        let next = self.next_after_secs(secs)?;
        Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(next).ok()?))
    }

    /// Whether the Unix second `t` is a tick.
    #[must_use]
    pub fn matches_secs(&self, t: i64) -> bool {
        t.checked_sub(1).and_then(|before| self.next_after_secs(before)) == Some(t)
    }

    /// The first tick (Unix seconds) strictly after the Unix second `t`, or `None` if none
    /// within eight years.
    #[must_use]
    pub fn next_after_secs(&self, t: i64) -> Option<i64> {
        let wall = DateTime::from_timestamp(t, 0)?.with_timezone(&self.zone).naive_local();
        // A later tick is earlier on the wall clock only in the second pass of a repeated
        // hour whose first pass holds `t`: start that much before.
        let mut cursor = match self.zone.from_local_datetime(&wall) {
            LocalResult::Ambiguous(first, second) if second.timestamp() > t => {
                wall - TimeDelta::seconds(second.timestamp() - first.timestamp())
            }
            _ => wall,
        };
        let limit = wall + TimeDelta::days(SEARCH_DAYS);
        let mut best: Option<i64> = None;
        loop {
            let Some(candidate) = self.next_wall(cursor).filter(|c| *c <= limit) else {
                return best;
            };
            let instants = self.instants(candidate);
            // The earliest instant of a candidate grows with the candidate: once it passes the
            // best tick, no later candidate can beat it.
            if let (Some(earliest), Some(b)) = (instants.iter().flatten().min(), best)
                && *earliest > b
            {
                return best;
            }
            for i in instants.into_iter().flatten().filter(|i| *i > t) {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
            cursor = candidate;
        }
    }

    /// The next matching wall-clock time strictly after `wall`.
    fn next_wall(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let next = self.pattern.find_next_occurrence(&Utc.from_utc_datetime(&wall), false).ok()?;
        Some(next.naive_utc())
    }

    /// The instants (Unix seconds) at which the wall-clock tick `wall` runs: one, two for an
    /// interval tick in a repeated hour, none for an interval tick in a skipped one.
    fn instants(&self, wall: NaiveDateTime) -> [Option<i64>; 2] {
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(at) => [Some(at.timestamp()), None],
            LocalResult::Ambiguous(first, second) => {
                [Some(first.timestamp()), (!self.fixed).then(|| second.timestamp())]
            }
            LocalResult::None if self.fixed => [self.end_of_gap(wall), None],
            LocalResult::None => [None, None],
        }
    }

    /// The first instant after the skipped wall-clock time `wall`: the moment the clock
    /// jumped. Transitions fall on whole seconds; a gap lasts at most a day.
    fn end_of_gap(&self, wall: NaiveDateTime) -> Option<i64> {
        let exists = |w: NaiveDateTime| !matches!(self.zone.from_local_datetime(&w), LocalResult::None);
        let minute = TimeDelta::minutes(1);
        let mut after = (1..=25 * 60).map(|m| wall + minute * m).find(|w| exists(*w))?;
        while exists(after - TimeDelta::seconds(1)) {
            after -= TimeDelta::seconds(1);
        }
        self.zone.from_local_datetime(&after).earliest().map(|at| at.timestamp())
    }
}

fn parse_zone(expr: &str, zone: &str) -> Result<Tz, CronError> {
    zone.parse().map_err(|_| CronError {
        expr: expr.to_owned(),
        detail: format!("unknown time zone `{zone}` (an IANA name such as `Europe/Berlin`)"),
    })
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The expression and the zone, `Cron { expr: "0 9 * * 1-5", zone: "Europe/Berlin" }`; not
/// the parser's tables.
#[allow(clippy::missing_fields_in_debug, reason = "the parser's tables are left out on purpose")]
impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cron").field("expr", &self.expr).field("zone", &self.zone.name()).finish()
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_expression_and_the_zone() {
        let cron = Cron::parse_in("30 2 * * *", "Europe/Berlin").expect("parses");
        assert_eq!(format!("{cron:?}"), r#"Cron { expr: "30 2 * * *", zone: "Europe/Berlin" }"#);
    }

    /// Unix seconds of a UTC date-time.
    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().expect("a UTC time").timestamp()
    }

    fn next(expr: &str, from: i64) -> Option<i64> {
        Cron::parse(expr).expect("valid").next_after_secs(from)
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
        assert_eq!(next("@hourly", t), Some(ts(2025, 6, 1, 13, 0, 0)));
        assert_eq!(next("@midnight", t), Some(ts(2025, 6, 2, 0, 0, 0)));
    }

    #[test]
    fn weekdays_and_days() {
        // 2025-06-01 is a Sunday.
        let t = ts(2025, 6, 1, 12, 0, 0);
        assert_eq!(next("0 9 * * MON", t), Some(ts(2025, 6, 2, 9, 0, 0)));
        assert_eq!(next("0 9 * * 0", t), Some(ts(2025, 6, 8, 9, 0, 0)));
        assert_eq!(next("0 9 * * 7", t), Some(ts(2025, 6, 8, 9, 0, 0)));
        assert_eq!(next("0 9 * * MON-FRI", ts(2025, 6, 6, 10, 0, 0)), Some(ts(2025, 6, 9, 9, 0, 0)));
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
        // In Berlin, the skipped 02:30 of 2026-03-29 runs at 03:00 CEST, 01:00 UTC.
        let c = Cron::parse_in("30 2 * * *", "Europe/Berlin").expect("valid");
        assert!(c.matches_secs(ts(2026, 3, 29, 1, 0, 0)));
        assert!(!c.matches_secs(ts(2026, 3, 29, 0, 30, 0)));
        assert!(!c.matches_secs(ts(2026, 3, 29, 1, 30, 0)));
    }

    #[test]
    fn zones_by_prefix_and_by_name() {
        let t = ts(2026, 7, 1, 0, 0, 0);
        // Berlin is UTC+2 in July.
        let by_prefix = Cron::parse("CRON_TZ=Europe/Berlin 0 9 * * *").expect("valid");
        let by_name = Cron::parse_in("0 9 * * *", "Europe/Berlin").expect("valid");
        assert_eq!(by_prefix.zone(), "Europe/Berlin");
        assert_eq!(by_prefix.next_after_secs(t), Some(ts(2026, 7, 1, 7, 0, 0)));
        assert_eq!(by_name.next_after_secs(t), Some(ts(2026, 7, 1, 7, 0, 0)));
        assert_eq!(Cron::parse("TZ=America/New_York 0 9 * * *").expect("valid").zone(), "America/New_York");
        assert_eq!(Cron::parse("0 9 * * *").expect("valid").zone(), "UTC");
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
            "a * * * *",
            "@often",
            "CRON_TZ=Mars/Olympus 0 * * * *",
            "0 0 1W * *",
            "0 0 10,31W * *",
        ] {
            let e = Cron::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid cron expression"), "{e}");
        }
        let e = Cron::parse_in("0 * * * *", "Europe/Atlantis").expect_err("zone");
        assert!(e.detail.contains("unknown time zone `Europe/Atlantis`"), "{e}");
    }
}
