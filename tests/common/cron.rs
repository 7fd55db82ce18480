//! Cron arithmetic for the tests: UTC instants and the ticks of an expression between two.
#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use dual_mode::jobs::Cron;

/// Unix seconds of `yyyy-mm-ddThh:mm:00Z`.
pub fn utc(date: &str, hm: &str) -> i64 {
    let num = |s: &str| s.parse::<i64>().expect("a number");
    let (year, month, day) = (num(&date[0..4]), num(&date[5..7]), num(&date[8..10]));
    let (hour, minute) = (num(&hm[0..2]), num(&hm[3..5]));
    // Days from civil (H. Hinnant).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + hour * 3600 + minute * 60
}

/// The ticks of `cron` in `zone` strictly after `from` and at or before `to`.
pub fn ticks(cron: &str, zone: &str, from: i64, to: i64) -> Vec<i64> {
    let cron = Cron::parse_in(cron, zone).expect("valid");
    let mut out = Vec::new();
    let mut t = from;
    while let Some(next) = cron.next_after_secs(t).filter(|n| *n <= to) {
        out.push(next);
        t = next;
    }
    out
}

/// Every `step` from `first` to `last`, both included.
pub fn every(first: i64, last: i64, step: i64) -> Vec<i64> {
    (0..=(last - first) / step).map(|i| first + i * step).collect()
}
