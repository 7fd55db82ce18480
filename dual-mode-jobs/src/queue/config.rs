//! A queue's settings: its name, partitions, limits, record lifetime and parked cap.

use std::time::Duration;

use crate::backend::Retention;
use crate::envelope::millis;
use crate::error::QueueError;
use crate::keep::Keep;
use crate::limit::{RateLimit, RateScope};

/// A day, how long records of ended jobs are kept by default.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The most partitions a queue has.
const MAX_PARTITIONS: u16 = 256;

/// Settings of a queue, shared by its producers, workers and schedulers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueConfig {
    /// The queue's name; all its Redis keys start with `dm:{name}:`.
    pub name: String,
    /// The consumer group its workers read in.
    pub group: String,
    /// Attempts a job gets before it is parked, unless the job overrides it (at least 1).
    pub max_attempts: u32,
    /// How long a Redis command may take before it fails.
    pub response_timeout: Duration,
    /// What is kept of jobs that succeeded; see [`QueueConfig::keep_done`].
    pub keep_done: Keep,
    /// What is kept of parked jobs; see [`QueueConfig::keep_parked`].
    pub keep_parked: Keep,
    /// What is kept of cancelled jobs; see [`QueueConfig::keep_cancelled`].
    pub keep_cancelled: Keep,
    /// How long at least the record of a job someone waited for is kept after it ended; see
    /// [`QueueConfig::keep_waited`].
    pub keep_waited: Duration,
    /// The most entries the parked stream keeps (each partition's, when the queue has
    /// several): parking one more drops the oldest, and [`QueueStats::parked_dropped`](crate::QueueStats::parked_dropped) counts
    /// the dropped ones.
    pub parked_max_len: u64,
    /// Rate limits shared by every worker of the queue; see [`QueueConfig::rate_limit`].
    pub rate_limits: Vec<(RateScope, RateLimit)>,
    /// Concurrency per rate key: prefix and slots; see [`QueueConfig::key_concurrency`].
    pub key_concurrency: Vec<(String, u32)>,
    /// How many partitions the queue has; see [`QueueConfig::partitions`].
    pub partitions: u16,
}

impl QueueConfig {
    /// A queue named `name`, group `"workers"`, 5 attempts, a 10 s response timeout, records
    /// of ended jobs kept for a day (those someone waited for at least 10 minutes), at most
    /// 100,000 parked entries.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            group: "workers".to_owned(),
            max_attempts: 5,
            response_timeout: Duration::from_secs(10),
            keep_done: Keep::for_time(DAY),
            keep_parked: Keep::for_time(DAY),
            keep_cancelled: Keep::for_time(DAY),
            keep_waited: Duration::from_secs(600),
            parked_max_len: 100_000,
            rate_limits: Vec::new(),
            key_concurrency: Vec::new(),
            partitions: 1,
        }
    }

    /// Splits the queue into `n` partitions (1 to 256; 1, the default, keeps every key under
    /// `dm:{name}:` as an unpartitioned queue has them).
    ///
    /// Partition `i` has keys of its own (`dm:{name:i}:p:stream`, its group, delayed set,
    /// parked stream, records and unique keys) under a hash tag of its own, whose slot lies in
    /// the `i`-th `n`-th of the slot space (the tag gets a suffix, `{name:i.s}`, where needed),
    /// so a Redis Cluster whose primaries hold even shares of the slots serves the partitions
    /// evenly, and the queue's Redis work spreads over their cores. A job goes to the partition
    /// of its unique key (so a key stays unique, and its jobs are read in the order they were
    /// pushed), else of its idempotency key when the push gives one, else round-robin; its id
    /// ends in `.<partition>`. Rate limits, rate-key pauses and key concurrency stay under the
    /// queue's own tag, so they hold across partitions exactly. Workers read every partition,
    /// stats and listings sum and merge them, and [`Queue::job`](crate::Queue::job), [`Queue::cancel`](crate::Queue::cancel) and
    /// [`Queue::redrive`](crate::Queue::redrive) go to the partition an id names.
    ///
    /// What is per partition: [`parked_max_len`](Self::parked_max_len) caps each partition's
    /// parked stream, and lanes order the reads of each partition (a worker reads its
    /// partitions in turn, so a high-lane job waits at most a read of each other partition).
    ///
    /// Every process must open a queue with the same number of partitions: the first one to
    /// open it writes the number to Redis ([`QueueKeys::partitions`](crate::QueueKeys::partitions)), and
    /// [`Queue::connect`](crate::Queue::connect) refuses another number with [`QueueError::Config`]. To change it,
    /// drain the queue and delete that key.
    #[must_use]
    pub fn partitions(mut self, n: u16) -> Self {
        self.partitions = n;
        self
    }

    /// At most `max` jobs of one [rate key](crate::PushOptions::rate_key) starting with `prefix` run
    /// at once, across every worker (e.g. one aggregation per region: `("region:", 1)`); the
    /// longest matching prefix wins.
    ///
    /// A running job holds a slot of its key in Redis, leased like its entry: renewed while it
    /// runs, given back when it ends, and expired when its worker dies. A job with no free slot
    /// waits in the delayed set, holding no worker slot and counting no attempt, until a slot
    /// is given back (the oldest waiter is woken at once) or, at the latest, a lease later.
    #[must_use]
    pub fn key_concurrency(mut self, prefix: impl Into<String>, max: u32) -> Self {
        self.key_concurrency.push((prefix.into(), max));
        self
    }

    /// What a store keeps of these settings.
    #[must_use]
    pub fn retention(&self) -> Retention {
        Retention {
            done: self.keep_done.to_ms(),
            parked: self.keep_parked.to_ms(),
            cancelled: self.keep_cancelled.to_ms(),
            waited_ms: millis(self.keep_waited).max(1),
            parked_max_len: self.parked_max_len,
        }
    }

    /// Whether every ended job's record is kept for a time (no end state keeps only the
    /// newest, or nothing), so that a job without a record was never pushed or ended longer
    /// ago than that.
    #[must_use]
    pub fn keeps_every_ended_job(&self) -> bool {
        [self.keep_done, self.keep_parked, self.keep_cancelled].iter().all(|k| k.max_count().is_none())
    }

    /// What is kept of ended jobs, in words: `done not kept, parked for 7d, cancelled for 1d`.
    ///
    /// ```
    /// use dual_mode_jobs::{Keep, QueueConfig};
    ///
    /// let config = QueueConfig::new("q").keep_done(Keep::newest(100));
    /// assert_eq!(config.kept_of_ended_jobs(), "done newest 100, parked for 1d, cancelled for 1d");
    /// ```
    #[must_use]
    pub fn kept_of_ended_jobs(&self) -> String {
        format!("done {}, parked {}, cancelled {}", self.keep_done, self.keep_parked, self.keep_cancelled)
    }

    /// What is kept of jobs that ended in `state`; `None` for a state that does not end a job.
    #[must_use]
    pub fn keep_of(&self, state: crate::JobState) -> Option<Keep> {
        match state {
            crate::JobState::Done => Some(self.keep_done),
            crate::JobState::Parked => Some(self.keep_parked),
            crate::JobState::Cancelled => Some(self.keep_cancelled),
            _ => None,
        }
    }

    /// Refuses a configuration out of range, naming what is wrong.
    pub(super) fn validate(&self) -> Result<(), QueueError> {
        if self.name.is_empty() || self.name.contains(['{', '}']) {
            return Err(QueueError::Config(format!("queue name {:?} must be non-empty and without braces", self.name)));
        }
        if self.max_attempts == 0 {
            return Err(QueueError::Config("max_attempts must be at least 1".to_owned()));
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(QueueError::Config(format!(
                "partitions is {}; a queue has 1 to {MAX_PARTITIONS}",
                self.partitions
            )));
        }
        if let Some((prefix, _)) = self.key_concurrency.iter().find(|(_, max)| *max == 0) {
            return Err(QueueError::Config(format!("the concurrency of keys {prefix:?} must be at least 1")));
        }
        for (scope, limit) in &self.rate_limits {
            limit.check().map_err(|e| QueueError::Config(format!("{e} (scope {scope:?})")))?;
        }
        Ok(())
    }

    /// The concurrency of `rate_key`, if a prefix of [`QueueConfig::key_concurrency`] matches.
    pub(crate) fn slots_of(&self, rate_key: &str) -> Option<u32> {
        self.key_concurrency
            .iter()
            .filter(|(prefix, _)| rate_key.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|&(_, max)| max)
    }

    /// Adds a rate limit, shared by every worker of the queue (its state lives in Redis).
    ///
    /// A job starts only when every limit it falls under has room; otherwise it goes back to
    /// the delayed set, due when its start is reserved, without counting an attempt (its
    /// record says `delayed`), and the worker goes on with other jobs. A handler's
    /// [`JobError::RetryAfter`](crate::JobError::RetryAfter) also pauses the job's
    /// [rate key](crate::PushOptions::rate_key) for every worker for that long.
    ///
    /// Limits are checked by the workers: give the queue the same limits wherever workers run.
    ///
    /// ```
    /// use dual_mode_jobs::{QueueConfig, RateLimit, RateScope};
    ///
    /// let config = QueueConfig::new("esi")
    ///     .rate_limit(RateScope::Queue, RateLimit::per_second(100))
    ///     .rate_limit(RateScope::Key("region:".into()), RateLimit::per_second(10));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn rate_limit(mut self, scope: RateScope, limit: RateLimit) -> Self {
        self.rate_limits.push((scope, limit));
        self
    }

    /// Sets the most entries the parked stream keeps (at least 1): parking one more drops the
    /// oldest.
    #[must_use]
    pub fn parked_max_len(mut self, max: u64) -> Self {
        self.parked_max_len = max;
        self
    }

    /// Keeps the records of every ended job (done, parked or cancelled) for `ttl` after it
    /// ended: [`Keep::for_time`] for each end state.
    #[must_use]
    pub fn record_ttl(self, ttl: Duration) -> Self {
        let keep = Keep::for_time(ttl);
        self.keep_done(keep).keep_parked(keep).keep_cancelled(keep)
    }

    /// What is kept of jobs that succeeded (for a day by default). With [`Keep::none`] a done
    /// job costs the store nothing once it ended, and its result reaches only those who wait
    /// for it: a [`Queue::wait_for`](crate::Queue::wait_for) that began before the job ended,
    /// or any wait on a job pushed with [`PushOptions::keep_for`](crate::PushOptions::keep_for).
    ///
    /// ```
    /// use dual_mode_jobs::{Keep, QueueConfig};
    ///
    /// let config = QueueConfig::new("thumbnails").keep_done(Keep::newest(1000));
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn keep_done(mut self, keep: Keep) -> Self {
        self.keep_done = keep;
        self
    }

    /// What is kept of parked jobs' records (for a day by default). The parked entries
    /// themselves, which [`Queue::redrive`](crate::Queue::redrive) runs again, are kept apart,
    /// up to [`parked_max_len`](Self::parked_max_len).
    #[must_use]
    pub fn keep_parked(mut self, keep: Keep) -> Self {
        self.keep_parked = keep;
        self
    }

    /// What is kept of cancelled jobs (for a day by default).
    #[must_use]
    pub fn keep_cancelled(mut self, keep: Keep) -> Self {
        self.keep_cancelled = keep;
        self
    }

    /// How long at least the record of a job someone waits for is kept once it ended, however
    /// little its end state keeps (10 minutes by default): a
    /// [`Queue::wait_for`](crate::Queue::wait_for) marks the record before it waits, so that
    /// its own read, and any other waiter's, finds the outcome.
    #[must_use]
    pub fn keep_waited(mut self, keep: Duration) -> Self {
        self.keep_waited = keep;
        self
    }

    /// Sets the consumer group.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Sets the default maximum of attempts.
    #[must_use]
    pub fn max_attempts(mut self, max: u32) -> Self {
        self.max_attempts = max;
        self
    }

    /// Sets the response timeout of Redis commands.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}
