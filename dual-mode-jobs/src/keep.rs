//! What a queue keeps of ended jobs ([`Keep`], per end state), and how a store applies it.

use std::fmt;
use std::time::Duration;

use crate::envelope::millis;

/// How long a queue keeps the records of jobs that ended one way (done, parked or
/// cancelled): for a time, the newest `n`, both, or not at all.
///
/// A record that is not kept is deleted when its job ends: [`Queue::job`](crate::Queue::job)
/// finds nothing, listings and counts leave it out, and a later
/// [`Queue::wait_for`](crate::Queue::wait_for) answers [`WaitError::NotKept`](crate::WaitError::NotKept).
/// Two things keep a record anyway: a wait that began before the job ended (the record is then
/// kept for [`QueueConfig::keep_waited`](crate::QueueConfig::keep_waited)), and
/// [`PushOptions::keep_for`](crate::PushOptions::keep_for) on the push. Such a record outlives
/// the `newest` count (it leaves the listing, not the store) and expires at its own time.
///
/// ```
/// use std::time::Duration;
/// use dual_mode_jobs::{Keep, QueueConfig};
///
/// const DAY: Duration = Duration::from_secs(24 * 3600);
/// let config = QueueConfig::new("mail")
///     .keep_done(Keep::none())                              // succeeded: nothing, unless waited for
///     .keep_parked(Keep::for_time(7 * DAY).at_most(10_000)) // failed: a week, 10,000 at most
///     .keep_cancelled(Keep::newest(100));                   // the last 100 cancellations
/// assert!(!config.keep_done.is_kept());
/// assert_eq!(config.keep_parked.to_string(), "newest 10000, for 7d");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keep {
    max_age: Option<Duration>,
    max_count: Option<u64>,
}

impl Keep {
    /// Keeps no record: it is deleted when the job ends.
    #[must_use]
    pub const fn none() -> Self {
        Self { max_age: None, max_count: Some(0) }
    }

    /// Keeps each record for `age` after its job ended (what a queue does by default, for a
    /// day). A zero `age` keeps nothing.
    #[must_use]
    pub const fn for_time(age: Duration) -> Self {
        if age.is_zero() { Self::none() } else { Self { max_age: Some(age), max_count: None } }
    }

    /// Keeps the records of the newest `n` jobs that ended this way, however old (`0` keeps
    /// nothing); the oldest goes when one more ends.
    #[must_use]
    pub const fn newest(n: u64) -> Self {
        Self { max_age: None, max_count: Some(n) }
    }

    /// Also drops records older than `age`: `Keep::newest(1000).within(week)`.
    #[must_use]
    pub const fn within(self, age: Duration) -> Self {
        if age.is_zero() { Self::none() } else { Self { max_age: Some(age), ..self } }
    }

    /// Also keeps at most the newest `n`: `Keep::for_time(day).at_most(10_000)`.
    #[must_use]
    pub const fn at_most(self, n: u64) -> Self {
        Self { max_count: Some(n), ..self }
    }

    /// How long a record is kept at most after its job ended; `None`: no time limit.
    #[must_use]
    pub const fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// How many records are kept at most; `None`: no count limit.
    #[must_use]
    pub const fn max_count(&self) -> Option<u64> {
        self.max_count
    }

    /// Whether any record is kept.
    #[must_use]
    pub const fn is_kept(&self) -> bool {
        !matches!(self.max_count, Some(0))
    }

    /// The store's form: ages in ms (at least 1), `None` for no limit.
    #[must_use]
    pub fn to_ms(&self) -> KeepMs {
        KeepMs { age_ms: self.max_age.map(|a| millis(a).max(1)), count: self.max_count }
    }
}

impl fmt::Display for Keep {
    /// `not kept`, `for 1d`, `newest 100`, `newest 100, for 7d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.max_count, self.max_age) {
            (Some(0), _) => f.write_str("not kept"),
            (Some(n), Some(age)) => write!(f, "newest {n}, for {}", Age(age)),
            (Some(n), None) => write!(f, "newest {n}"),
            (None, Some(age)) => write!(f, "for {}", Age(age)),
            (None, None) => f.write_str("kept"),
        }
    }
}

/// A duration in the largest whole unit that states it: `7d`, `12h`, `90s`, `250ms`.
struct Age(Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// A [`Keep`] as stores apply it: the age in ms and the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepMs {
    /// How long a record lives after its job ended, in ms; `None`: no time limit.
    pub age_ms: Option<u64>,
    /// How many records of the state are kept; `None`: no count limit, `Some(0)`: none.
    pub count: Option<u64>,
}

impl KeepMs {
    /// Whether a record of this state is kept at all.
    #[must_use]
    pub const fn is_kept(&self) -> bool {
        !matches!(self.count, Some(0))
    }

    /// The time a record that ended at `now` expires, if it is kept and has an age limit;
    /// `pin_ms` (a wait's or the push's own keep time) keeps it at least that long.
    #[must_use]
    pub fn expiry(&self, now: u64, pin_ms: Option<u64>) -> Option<u64> {
        match (pin_ms, self.age_ms) {
            (Some(pin), Some(age)) => Some(now.saturating_add(pin.max(age))),
            (Some(pin), None) if !self.is_kept() || self.count.is_some() => Some(now.saturating_add(pin)),
            (Some(_), None) => None,
            (None, age) => age.map(|a| now.saturating_add(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_read_as_they_are_built_and_say_so() {
        let day = Duration::from_secs(86_400);
        assert_eq!(Keep::for_time(Duration::ZERO), Keep::none());
        assert_eq!(Keep::newest(5).within(Duration::ZERO), Keep::none());
        assert!(!Keep::newest(0).is_kept());
        assert_eq!(Keep::for_time(day).at_most(3), Keep::newest(3).within(day));
        assert_eq!(Keep::none().to_string(), "not kept");
        assert_eq!(Keep::for_time(day).to_string(), "for 1d");
        assert_eq!(Keep::for_time(Duration::from_millis(1500)).to_string(), "for 1500ms");
        assert_eq!(Keep::newest(100).within(Duration::from_secs(90)).to_string(), "newest 100, for 90s");
        assert_eq!(Keep::for_time(Duration::from_micros(10)).to_ms().age_ms, Some(1), "at least 1 ms");
    }

    #[test]
    fn a_pin_keeps_a_record_at_least_its_own_time() {
        let timed = Keep::for_time(Duration::from_secs(10)).to_ms();
        assert_eq!(timed.expiry(1000, None), Some(11_000));
        assert_eq!(timed.expiry(1000, Some(60_000)), Some(61_000));
        assert_eq!(timed.expiry(1000, Some(5)), Some(11_000));
        let none = Keep::none().to_ms();
        assert_eq!(none.expiry(1000, Some(500)), Some(1500));
        let newest = Keep::newest(3).to_ms();
        assert_eq!(newest.expiry(1000, None), None, "kept until the count drops it");
        assert_eq!(newest.expiry(1000, Some(500)), Some(1500), "a pinned record expires at its own time");
    }
}
