//! Cron in time zones, with no store: ticks around the 2026 daylight-saving changes in
//! `Europe/Berlin` and `America/New_York`, and the `L`, `#` and `W` extensions. Schedules on a
//! queue (ticks deduped by their UTC instant, pausing and resuming across schedulers,
//! listing, catch-up) are in the conformance suite, `tests/conformance/`.

#[path = "common/cron.rs"]
mod cron_support;

use cron_support::{every, ticks, utc};
use dual_mode::jobs::Cron;

// Berlin: 2026-03-29 02:00 CET becomes 03:00 CEST at 01:00 UTC; 2026-10-25 03:00 CEST becomes
// 02:00 CET at 01:00 UTC. New York: 2026-03-08 02:00 EST becomes 03:00 EDT at 07:00 UTC;
// 2026-11-01 02:00 EDT becomes 01:00 EST at 06:00 UTC.

#[test]
fn a_fixed_time_in_the_skipped_hour_runs_once_when_the_clock_jumps() {
    // 02:30 does not exist on the spring-forward day: the tick runs at 03:00 local time, the
    // first instant after the gap, once; the days around it tick at 02:30.
    let berlin = ticks("30 2 * * *", "Europe/Berlin", utc("2026-03-27", "12:00"), utc("2026-03-31", "12:00"));
    assert_eq!(
        berlin,
        [
            utc("2026-03-28", "01:30"), // 02:30 CET
            utc("2026-03-29", "01:00"), // 03:00 CEST
            utc("2026-03-30", "00:30"), // 02:30 CEST
            utc("2026-03-31", "00:30"),
        ]
    );
    let new_york = ticks("30 2 * * *", "America/New_York", utc("2026-03-07", "00:00"), utc("2026-03-09", "23:00"));
    assert_eq!(new_york, [utc("2026-03-07", "07:30"), utc("2026-03-08", "07:00"), utc("2026-03-09", "06:30")]);
    // Several fixed times in one gap still give one tick each, at the same instant: the
    // dedupe key, named by that instant, makes them one job. `0,30 2` is no fixed time (two
    // minutes): an interval job, whose ticks in the gap do not exist.
    let interval = ticks("0,30 2 * * *", "Europe/Berlin", utc("2026-03-28", "12:00"), utc("2026-03-30", "12:00"));
    assert_eq!(interval, [utc("2026-03-30", "00:00"), utc("2026-03-30", "00:30")]);
}

#[test]
fn a_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() {
    // 01:30 happens twice in New York on 2026-11-01: at 05:30 UTC (EDT) and 06:30 UTC (EST).
    // The tick runs at the first, as Vixie cron does: it is 24 h after the day before's, and
    // the second 01:30 is the same wall-clock tick again.
    let new_york = ticks("30 1 * * *", "America/New_York", utc("2026-10-31", "00:00"), utc("2026-11-02", "23:00"));
    assert_eq!(new_york, [utc("2026-10-31", "05:30"), utc("2026-11-01", "05:30"), utc("2026-11-02", "06:30")]);
    let berlin = ticks("30 2 * * *", "Europe/Berlin", utc("2026-10-24", "12:00"), utc("2026-10-26", "12:00"));
    assert_eq!(berlin, [utc("2026-10-25", "00:30"), utc("2026-10-26", "01:30")]);
    // Asked from inside either pass, the answer is the same: the first pass's tick if it is
    // still ahead, else the next day's, never the second 02:30.
    let daily = Cron::parse_in("30 2 * * *", "Europe/Berlin").expect("valid");
    assert_eq!(daily.next_after_secs(utc("2026-10-25", "00:10")), Some(utc("2026-10-25", "00:30")));
    assert_eq!(daily.next_after_secs(utc("2026-10-25", "00:40")), Some(utc("2026-10-26", "01:30")));
    assert_eq!(daily.next_after_secs(utc("2026-10-25", "01:10")), Some(utc("2026-10-26", "01:30")));
}

#[test]
fn an_hourly_schedule_ticks_every_real_hour_across_both_changes() {
    for (zone, spring_day, fall_day) in
        [("Europe/Berlin", "2026-03-29", "2026-10-25"), ("America/New_York", "2026-03-08", "2026-11-01")]
    {
        let offset_hours = |date: &str| -> i64 {
            // Local midnight of the day before the change, as a UTC hour.
            let cron = Cron::parse_in("0 0 * * *", zone).expect("valid");
            let midnight = cron.next_after_secs(utc(date, "00:00") - 86_400).expect("a midnight");
            midnight - (utc(date, "00:00") - 86_400)
        };
        for (day, hours) in [(spring_day, 23), (fall_day, 25)] {
            let start = utc(day, "00:00") + offset_hours(day);
            let got = ticks("0 * * * *", zone, start - 1, start + hours * 3600 - 1);
            assert_eq!(got, every(start, start + (hours - 1) * 3600, 3600), "{zone} {day}");
            assert_eq!(got.len(), usize::try_from(hours).expect("hours"), "{zone} {day}");
            // `@hourly` is the same expression.
            assert_eq!(ticks("@hourly", zone, start - 1, start + hours * 3600 - 1), got, "{zone} {day}");
        }
    }
    // Interval ticks inside the repeated hour run in both passes.
    let half_hourly = ticks("*/30 2 * * *", "Europe/Berlin", utc("2026-10-24", "12:00"), utc("2026-10-25", "12:00"));
    assert_eq!(half_hourly, every(utc("2026-10-25", "00:00"), utc("2026-10-25", "01:30"), 1800));
}

#[test]
fn last_nth_and_nearest_weekday() {
    let first = |cron: &str, zone: &str, from: i64| Cron::parse_in(cron, zone).expect(cron).next_after_secs(from);
    // The last day of February, in a common and a leap year.
    assert_eq!(first("0 0 L * *", "UTC", utc("2026-02-01", "00:00")), Some(utc("2026-02-28", "00:00")));
    assert_eq!(first("0 0 L * *", "UTC", utc("2028-02-01", "00:00")), Some(utc("2028-02-29", "00:00")));
    // In New York, 09:00 EST on the last day of February is 14:00 UTC.
    assert_eq!(first("0 9 L * *", "America/New_York", utc("2026-02-01", "00:00")), Some(utc("2026-02-28", "14:00")));
    // The second Friday of January 2026 (the 1st is a Thursday), by name and by number.
    assert_eq!(first("0 9 * * FRI#2", "UTC", utc("2026-01-01", "00:00")), Some(utc("2026-01-09", "09:00")));
    assert_eq!(first("0 9 * * 5#2", "UTC", utc("2026-01-01", "00:00")), Some(utc("2026-01-09", "09:00")));
    // The last Friday of January 2026.
    assert_eq!(first("0 9 * * 5L", "UTC", utc("2026-01-01", "00:00")), Some(utc("2026-01-30", "09:00")));
    // The weekday nearest the 15th: 2026-08-15 is a Saturday, so Friday the 14th.
    assert_eq!(first("0 9 15W * *", "UTC", utc("2026-08-01", "00:00")), Some(utc("2026-08-14", "09:00")));
    // The 2nd of August 2026 is a Sunday: Monday the 3rd.
    assert_eq!(first("0 9 2W * *", "UTC", utc("2026-07-15", "00:00")), Some(utc("2026-08-03", "09:00")));
    // Berlin in summer: 09:00 CEST on the second Friday of July 2026 (the 10th) is 07:00 UTC.
    assert_eq!(first("0 9 * * FRI#2", "Europe/Berlin", utc("2026-07-01", "00:00")), Some(utc("2026-07-10", "07:00")));
}
