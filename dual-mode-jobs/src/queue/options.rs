//! What a push takes ([`PushOptions`]) and answers ([`Pushed`]).

use std::time::{Duration, SystemTime};

use crate::backend::PushAnswer;
use crate::envelope::Envelope;
use crate::lane::Lane;
use crate::trace::TraceParent;

/// Options of one push.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PushOptions {
    /// The idempotency key; defaults to the job id.
    pub idempotency_key: Option<String>,
    /// Overrides the queue's maximum attempts for this job.
    pub max_attempts: Option<u32>,
    /// Run no sooner than this long after the push (measured on the Redis server's clock).
    pub delay: Option<Duration>,
    /// Run no sooner than this time; wins over `delay`.
    pub not_before: Option<SystemTime>,
    /// The job is unique under this key: while a job holding it is queued, delayed or
    /// running, a push with the same key returns that job instead of adding one.
    pub unique_key: Option<String>,
    /// The job is unique under a key made of its type name and payload bytes.
    pub unique_by_payload: bool,
    /// How long a unique key is held at most (it is released when the job ends; this bounds
    /// how long a job lost to an operator's mistake can block its key).
    pub unique_ttl: Duration,
    /// A time limit for each attempt, instead of the handler's own; see
    /// [`Handler::timeout`](crate::Handler::timeout).
    pub timeout: Option<Duration>,
    /// The rate key: the bucket of [`RateScope::Key`](crate::RateScope::Key) limits this job draws from.
    pub rate_key: Option<String>,
    /// The priority lane ([`Lane::Normal`] by default).
    pub lane: Lane,
    /// The producer's trace context, continued by the job's span; see
    /// [`PushOptions::traceparent`].
    pub traceparent: Option<TraceParent>,
    /// How long this job's record is kept after it ended, whatever the queue keeps; see
    /// [`PushOptions::keep_for`].
    pub keep_for: Option<Duration>,
}

impl PushOptions {
    /// No options: run now, id as idempotency key, the queue's maximum attempts.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Overrides the maximum attempts of this job.
    #[must_use]
    pub fn max_attempts(mut self, max: u32) -> Self {
        self.max_attempts = Some(max);
        self
    }

    /// Delays the job.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Runs the job no sooner than `at`.
    #[must_use]
    pub fn not_before(mut self, at: SystemTime) -> Self {
        self.not_before = Some(at);
        self
    }

    /// Makes the job unique under `key` for at most `ttl`: while a job holding the key is
    /// queued, delayed or running, pushing another returns the first one's id
    /// ([`Pushed::duplicate`]). The check and the push are one script, so concurrent pushes
    /// from any number of processes add exactly one job.
    #[must_use]
    pub fn unique(mut self, key: impl Into<String>, ttl: Duration) -> Self {
        self.unique_key = Some(key.into());
        self.unique_ttl = ttl;
        self
    }

    /// Makes the job unique under its type name and payload: the same spec pushed twice while
    /// the first is pending is one job.
    #[must_use]
    pub fn unique_by_payload(mut self, ttl: Duration) -> Self {
        self.unique_by_payload = true;
        self.unique_ttl = ttl;
        self
    }

    /// Limits each attempt to `timeout`: at the deadline the attempt is dropped (a service's
    /// guard closes its clients) and counts as failed with a `timeout` error.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Names the job's rate key (e.g. `"region:10000002"`, or an API token's name): the job
    /// draws from that key's bucket of the queue's [`RateScope::Key`](crate::RateScope::Key) limits, and a
    /// [`JobError::RetryAfter`](crate::JobError::RetryAfter) from it pauses that key for every
    /// worker.
    #[must_use]
    pub fn rate_key(mut self, key: impl Into<String>) -> Self {
        self.rate_key = Some(key.into());
        self
    }

    /// Puts the job in `lane`: workers read [`Lane::High`] first (see [`Lane`](crate::Lane)).
    ///
    /// ```
    /// use dual_mode_jobs::{Lane, PushOptions};
    /// let urgent = PushOptions::new().lane(Lane::High);
    /// assert_eq!(urgent.lane, Lane::High);
    /// ```
    #[must_use]
    pub fn lane(mut self, lane: Lane) -> Self {
        self.lane = lane;
        self
    }

    /// Carries the producer's trace context to the job: its span records it as its
    /// `traceparent` field and, with the `otel` feature, continues it as its parent. With
    /// `otel`, a push without one takes the current span's context.
    ///
    /// ```
    /// use dual_mode_jobs::{PushOptions, TraceParent};
    ///
    /// // E.g. the `traceparent` header of the request that asked for the job.
    /// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let options = PushOptions::new().traceparent(header.parse::<TraceParent>()?);
    /// # let _ = options;
    /// # Ok::<(), dual_mode_jobs::TraceParentError>(())
    /// ```
    #[must_use]
    pub fn traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Keeps this job's record for `keep` after it ended, however it ends and whatever the
    /// queue's [retention](crate::Keep) says: for a result someone will ask for later, in a
    /// queue that keeps done jobs not at all or only the newest few. The record outlives the
    /// queue's count of newest records (it leaves listings when they drop it, not the store).
    ///
    /// ```
    /// use std::time::Duration;
    /// use dual_mode_jobs::PushOptions;
    ///
    /// let report = PushOptions::new().keep_for(Duration::from_secs(3600));
    /// assert_eq!(report.keep_for, Some(Duration::from_secs(3600)));
    /// ```
    #[must_use]
    pub fn keep_for(mut self, keep: Duration) -> Self {
        self.keep_for = Some(keep);
        self
    }

    /// Whether the job waits before it can run (a delay or a time not before).
    #[must_use]
    pub fn is_delayed(&self) -> bool {
        self.delay.is_some() || self.not_before.is_some()
    }
}

/// What a push stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The job id.
    pub job_id: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The stream entry id, for an immediate push; `None` for a delayed one or a duplicate.
    pub entry_id: Option<String>,
    /// Whether the push was a duplicate of a unique job: nothing was added, and `job_id` is
    /// the id of the job that holds the key.
    pub duplicate: bool,
}

impl Pushed {
    /// What a push of `env` stored: its entry id (`None` when delayed), or the id of the
    /// job that holds its unique key. For a backend's own push paths (Postgres's push in the
    /// caller's transaction).
    #[must_use]
    pub fn new(env: &Envelope, stored: PushAnswer) -> Self {
        let (job_id, entry_id, duplicate) = match stored {
            PushAnswer::Added { entry_id } => (env.id.clone(), Some(entry_id), false),
            PushAnswer::Delayed => (env.id.clone(), None, false),
            PushAnswer::Held { holder } => (holder, None, true),
        };
        Self { job_id, idempotency_key: env.idempotency_key.clone(), entry_id, duplicate }
    }
}
