//! Rate limits shared by every worker of a queue: which buckets a job draws from.
//!
//! Each bucket is a GCRA (generic cell rate algorithm) state in the store: the theoretical
//! arrival time of the next start. One gate checks all the buckets a job draws from and, when
//! it must wait, reserves its start in each of them, so a job over its limit is delayed once,
//! to the moment it may start, instead of asking again and again. Each bucket also counts its
//! actual starts over the last period (see [`Bucket`]): at most count + burst of them, however
//! late reserved starts come back.

use std::time::Duration;

use super::envelope::Envelope;

/// A rate: at most `count` starts per `per`, with bursts of up to `burst` starts at once.
///
/// ```
/// use std::time::Duration;
/// use dual_mode_jobs::RateLimit;
///
/// // 50 starts a second, evenly spaced (one every 20 ms).
/// let esi = RateLimit::per_second(50);
/// // 600 a minute, up to 20 of them at once after a quiet spell.
/// let token = RateLimit::new(600, Duration::from_secs(60)).burst(20);
/// # let _ = (esi, token);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts per interval.
    pub count: u32,
    /// The interval.
    pub per: Duration,
    /// Starts allowed at once after a quiet spell (at least 1: evenly spaced).
    pub burst: u32,
}

impl RateLimit {
    /// At most `count` starts per `per`, evenly spaced (a burst of 1).
    #[must_use]
    pub fn new(count: u32, per: Duration) -> Self {
        Self { count, per, burst: 1 }
    }

    /// At most `count` starts a second, evenly spaced.
    #[must_use]
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// Allows `burst` starts at once after a quiet spell; the average rate stays the same.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The time between two starts at the steady rate, in ms.
    fn interval_ms(self) -> f64 {
        self.per.as_secs_f64() * 1000.0 / f64::from(self.count.max(1))
    }

    /// How far ahead of the steady rate a start may be, in ms.
    fn tolerance_ms(self) -> f64 {
        self.interval_ms() * f64::from(self.burst.max(1) - 1)
    }

    pub(crate) fn check(self) -> Result<(), String> {
        if self.count == 0 || self.per.is_zero() || self.burst == 0 {
            return Err(format!("a rate limit needs a count, an interval and a burst above zero, not {self:?}"));
        }
        Ok(())
    }
}

/// What a [`RateLimit`] applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateScope {
    /// Every job of the queue, together.
    Queue,
    /// Jobs of this type name, together.
    Type(String),
    /// Jobs whose [rate key](super::PushOptions::rate_key) starts with this prefix, one bucket
    /// per rate key: `Key("region:".into())` gives each region its own budget. When several
    /// prefixes match, the longest wins; `Key(String::new())` matches every rate key.
    Key(String),
}

/// One bucket a job draws from: its name, the spacing of its reserved starts (GCRA: interval
/// and tolerance in ms), and the window its actual starts are counted in.
///
/// Reservations space starts out; the window bounds them whatever the workers did meanwhile.
/// A reserved start may come late (its worker had no free slot, the delayed set is polled),
/// and starts that fell due together must not then go at once: every start, reserved or not,
/// also needs room among the starts of the last `window_ms`, at most `window_max` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// The bucket's name within its queue (scope and key).
    pub name: String,
    /// The time between starts the limit allows, in ms.
    pub interval_ms: f64,
    /// How far ahead of its time a start may be (the burst), in ms.
    pub tolerance_ms: f64,
    /// The limit's period, in ms: the window actual starts are counted in.
    pub window_ms: f64,
    /// The most starts in any window: the limit's count plus its burst.
    pub window_max: u32,
}

impl Bucket {
    /// The bucket `name` of `limit`.
    #[must_use]
    pub fn new(name: String, limit: RateLimit) -> Self {
        Self {
            name,
            interval_ms: limit.interval_ms(),
            tolerance_ms: limit.tolerance_ms(),
            window_ms: limit.per.as_secs_f64() * 1000.0,
            window_max: limit.count.saturating_add(limit.burst),
        }
    }
}

/// The buckets `env` draws from under `limits`.
pub(crate) fn buckets(limits: &[(RateScope, RateLimit)], env: &Envelope) -> Vec<Bucket> {
    let mut out = Vec::new();
    let mut key: Option<(&str, RateLimit)> = None;
    for (scope, limit) in limits {
        match scope {
            RateScope::Queue => out.push(Bucket::new("queue".to_owned(), *limit)),
            RateScope::Type(t) if *t == env.type_name => out.push(Bucket::new(format!("type:{t}"), *limit)),
            RateScope::Key(prefix) => {
                let matches = env.rate_key.as_deref().is_some_and(|k| k.starts_with(prefix.as_str()));
                if matches && key.is_none_or(|(p, _)| prefix.len() > p.len()) {
                    key = Some((prefix, *limit));
                }
            }
            RateScope::Type(_) => {}
        }
    }
    if let (Some((_, limit)), Some(k)) = (key, env.rate_key.as_deref()) {
        out.push(Bucket::new(format!("key:{k}"), limit));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(type_name: &str, rate_key: Option<&str>) -> Envelope {
        Envelope {
            id: "1".into(),
            idempotency_key: "1".into(),
            type_name: type_name.into(),
            version: 1,
            attempt: 1,
            max_attempts: None,
            unique: None,
            timeout_ms: None,
            rate_key: rate_key.map(Into::into),
            reserved: false,
            lane: crate::Lane::Normal,
            traceparent: None,
            keep_ms: None,
            enqueued_at_ms: 0,
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_job_draws_from_the_queue_its_type_and_the_longest_matching_key_prefix() {
        let limits = vec![
            (RateScope::Queue, RateLimit::per_second(100)),
            (RateScope::Type("Fetch".into()), RateLimit::per_second(20).burst(5)),
            (RateScope::Key("region:".into()), RateLimit::per_second(10)),
            (RateScope::Key("region:1000".into()), RateLimit::per_second(4)),
        ];
        let names = |e: &Envelope| buckets(&limits, e).into_iter().map(|b| b.name).collect::<Vec<_>>();
        assert_eq!(names(&env("Fetch", Some("region:10000002"))), ["queue", "type:Fetch", "key:region:10000002"]);
        assert_eq!(names(&env("Other", Some("token:a"))), ["queue"]);
        assert_eq!(names(&env("Other", None)), ["queue"]);
        let b = buckets(&limits, &env("Fetch", Some("region:10000002")));
        assert!((b[1].interval_ms - 50.0).abs() < 1e-9 && (b[1].tolerance_ms - 200.0).abs() < 1e-9);
        assert!((b[2].interval_ms - 250.0).abs() < 1e-9, "the longest prefix wins: {b:?}");
        assert!(buckets(&limits[2..], &env("Fetch", Some("region:2"))).iter().all(|b| b.interval_ms > 99.0));
    }

    #[test]
    fn limits_without_a_count_an_interval_or_a_burst_are_refused() {
        assert!(RateLimit::per_second(0).check().is_err());
        assert!(RateLimit::new(1, Duration::ZERO).check().is_err());
        assert!(RateLimit::per_second(1).burst(0).check().is_err());
        assert!(RateLimit::per_second(1).check().is_ok());
    }
}
