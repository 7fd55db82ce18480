//! The queue: pushes, delayed pushes, stats, parked entries and re-drive.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::envelope::{Envelope, RawFields, unique_id, unix_ms};
use super::error::{EnvelopeError, ParkReason, QueueError};
use super::lane::Lane;
use super::limit::{RateLimit, RateScope};
use super::metrics::JobMetrics;
use super::partition;
use super::record::{CancelOutcome, JobOutcome, JobRecord, JobState, WaitError};
use super::store::{self, Entry, RedisTarget, Store};
use super::trace::TraceParent;
use super::worker::Job;
use dual_mode_runtime::Spec;

/// Prefix of the original fields inside a parked entry.
pub(crate) const RAW_PREFIX: &str = "raw:";
/// How many entries one pipeline round trip carries in a bulk push.
const BULK_CHUNK: usize = 1000;
/// How many delayed entries one promote script moves at most.
pub(crate) const PROMOTE_BATCH: usize = 500;
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
    /// How long a job's record is kept after the job ended (done, parked or cancelled).
    pub record_ttl: Duration,
    /// The most entries the parked stream keeps (each partition's, when the queue has
    /// several): parking one more drops the oldest, and [`QueueStats::parked_dropped`] counts
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
    /// of ended jobs kept for a day, at most 100,000 parked entries.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            group: "workers".to_owned(),
            max_attempts: 5,
            response_timeout: Duration::from_secs(10),
            record_ttl: Duration::from_secs(24 * 3600),
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
    /// stats and listings sum and merge them, and [`Queue::job`], [`Queue::cancel`] and
    /// [`Queue::redrive`] go to the partition an id names.
    ///
    /// What is per partition: [`parked_max_len`](Self::parked_max_len) caps each partition's
    /// parked stream, and lanes order the reads of each partition (a worker reads its
    /// partitions in turn, so a high-lane job waits at most a read of each other partition).
    ///
    /// Every process must open a queue with the same number of partitions: the first one to
    /// open it writes the number to Redis ([`QueueKeys::partitions`]), and
    /// [`Queue::connect`] refuses another number with [`QueueError::Config`]. To change it,
    /// drain the queue and delete that key.
    #[must_use]
    pub fn partitions(mut self, n: u16) -> Self {
        self.partitions = n;
        self
    }

    /// At most `max` jobs of one [rate key](PushOptions::rate_key) starting with `prefix` run
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
    /// [`JobError::RetryAfter`](super::JobError::RetryAfter) also pauses the job's
    /// [rate key](PushOptions::rate_key) for every worker for that long.
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

    /// Sets how long records of ended jobs are kept.
    #[must_use]
    pub fn record_ttl(mut self, ttl: Duration) -> Self {
        self.record_ttl = ttl;
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

/// The Redis keys of one queue, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// The stream of ready entries (`dm:{name}:stream`).
    pub stream: String,
    /// The sorted set of delayed entries by due time in ms (`dm:{name}:delayed`).
    pub delayed: String,
    /// The dead-letter stream of parked entries (`dm:{name}:parked`).
    pub parked: String,
    /// How many parked entries the length cap dropped (`dm:{name}:parked-dropped`).
    pub parked_dropped: String,
    /// Prefix of the hashes that hold delayed entries' fields.
    pub delayed_entry_prefix: String,
    /// Prefix of the schedules' keys.
    pub schedule_prefix: String,
    /// Prefix of the job records (hashes keyed by job id).
    pub record_prefix: String,
    /// Prefix of the state sets (`<prefix>running`: job ids by the time they got there).
    pub state_prefix: String,
    /// Prefix of the unique keys (each holds the id of the job that claimed it).
    pub unique_prefix: String,
    /// The Pub/Sub channel on which ended jobs' ids are published.
    pub finished_channel: String,
    /// Prefix of the rate limits' buckets (`<prefix>queue`, `<prefix>type:<type>`,
    /// `<prefix>key:<rate key>`).
    pub rate_prefix: String,
    /// Prefix of the rate keys' pauses (`<prefix><rate key>`).
    pub rate_pause_prefix: String,
    /// Prefix of the sets of jobs holding a slot of a rate key (`<prefix><rate key>`, job
    /// ids by lease expiry).
    pub slot_prefix: String,
    /// Prefix of the sets of jobs waiting for a slot of a rate key.
    pub slot_wait_prefix: String,
    /// Present while the queue is paused: workers start nothing new (`dm:{name}:jobs:paused`).
    pub paused: String,
    /// The queue's number of partitions, written by the first process that opens it
    /// (`dm:{name}:partitions`).
    pub partitions: String,
}

impl QueueKeys {
    /// The ready stream of `lane`: [`stream`](Self::stream) for [`Lane::Normal`], with the
    /// lane's name appended for the others (`dm:{name}:stream:high`).
    #[must_use]
    pub fn lane_stream(&self, lane: Lane) -> String {
        lane.stream(&self.stream)
    }
}

impl QueueKeys {
    pub(crate) fn new(name: &str) -> Self {
        Self::based(&format!("dm:{{{name}}}"))
    }

    /// The keys of partition `i` of a queue of `n`: `dm:{<tag>}:p:...`, with the partition's
    /// tag (see [`partition::tag_of`]) and a `p` that no key of a queue named like the tag has.
    /// The keys that stay the queue's (rate limits, rate-key pauses, slots, the partition
    /// count and the channel of ended jobs) are the queue's own.
    pub(crate) fn partition(name: &str, i: usize, n: usize) -> Self {
        let home = Self::new(name);
        Self {
            rate_prefix: home.rate_prefix,
            rate_pause_prefix: home.rate_pause_prefix,
            slot_prefix: home.slot_prefix,
            slot_wait_prefix: home.slot_wait_prefix,
            finished_channel: home.finished_channel,
            partitions: home.partitions,
            ..Self::based(&format!("dm:{{{}}}:p", partition::tag_of(name, i, n)))
        }
    }

    fn based(base: &str) -> Self {
        Self {
            stream: format!("{base}:stream"),
            delayed: format!("{base}:delayed"),
            parked: format!("{base}:parked"),
            parked_dropped: format!("{base}:parked-dropped"),
            delayed_entry_prefix: format!("{base}:delayed:"),
            schedule_prefix: format!("{base}:sched:"),
            record_prefix: format!("{base}:job:"),
            state_prefix: format!("{base}:jobs:"),
            unique_prefix: format!("{base}:unique:"),
            finished_channel: format!("{base}:finished"),
            partitions: format!("{base}:partitions"),
            rate_prefix: format!("{base}:rate:"),
            rate_pause_prefix: format!("{base}:rate-pause:"),
            slot_prefix: format!("{base}:slots:"),
            slot_wait_prefix: format!("{base}:slot-wait:"),
            paused: format!("{base}:jobs:paused"),
        }
    }
}

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
    /// [`Handler::timeout`](super::Handler::timeout).
    pub timeout: Option<Duration>,
    /// The rate key: the bucket of [`RateScope::Key`] limits this job draws from.
    pub rate_key: Option<String>,
    /// The priority lane ([`Lane::Normal`] by default).
    pub lane: Lane,
    /// The producer's trace context, continued by the job's span; see
    /// [`PushOptions::traceparent`].
    pub traceparent: Option<TraceParent>,
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
    /// draws from that key's bucket of the queue's [`RateScope::Key`] limits, and a
    /// [`JobError::RetryAfter`](super::JobError::RetryAfter) from it pauses that key for every
    /// worker.
    #[must_use]
    pub fn rate_key(mut self, key: impl Into<String>) -> Self {
        self.rate_key = Some(key.into());
        self
    }

    /// Puts the job in `lane`: workers read [`Lane::High`] first (see [`Lane`]).
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

    fn is_delayed(&self) -> bool {
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

/// Counts of a queue at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Entries in the stream (waiting or running).
    pub length: u64,
    /// Entries delivered to a consumer and not yet acknowledged (running, or of a crashed
    /// worker until their lease expires).
    pub pending: u64,
    /// Entries waiting for their due time (delayed pushes and retries).
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub parked: u64,
    /// Parked entries dropped, oldest first, to keep the dead-letter stream within
    /// [`QueueConfig::parked_max_len`] (since the queue was created).
    pub parked_dropped: u64,
}

impl QueueStats {
    /// The counts of two partitions together.
    fn plus(self, other: Self) -> Self {
        Self {
            length: self.length + other.length,
            pending: self.pending + other.pending,
            delayed: self.delayed + other.delayed,
            parked: self.parked + other.parked,
            parked_dropped: self.parked_dropped + other.parked_dropped,
        }
    }

    /// Whether nothing is waiting, running or delayed (parked entries do not count).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.length == 0 && self.pending == 0 && self.delayed == 0
    }
}

/// An entry of the dead-letter stream, with why it was parked and its original bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEntry {
    /// Its id in the parked stream; pass it to [`Queue::redrive`].
    pub parked_id: String,
    /// The id the entry had in the queue's stream.
    pub source_entry_id: String,
    /// The typed reason, if the stored code is one this version knows.
    pub reason: Option<ParkReason>,
    /// The stored reason code.
    pub reason_code: String,
    /// The detail: the decode error, the missing field, or the handler's last error.
    pub detail: String,
    /// When it was parked, in ms since the Unix epoch.
    pub parked_at_ms: u64,
    /// The consumer that parked it.
    pub consumer: String,
    /// The original entry's fields, bytes as they were (the first 1,000 at most).
    pub fields: RawFields,
    /// How many fields the original entry had, when it had more than were kept: such an
    /// entry cannot be re-driven.
    pub truncated_from: Option<usize>,
}

impl ParkedEntry {
    /// An original field's bytes.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        super::envelope::field_of(&self.fields, name)
    }

    /// The original payload bytes, if the entry had a payload field.
    #[must_use]
    pub fn payload(&self) -> Option<&[u8]> {
        self.field(super::envelope::field::PAYLOAD)
    }

    /// The original envelope, if the entry had one.
    ///
    /// # Errors
    /// An [`EnvelopeError`] naming the field that is missing or bad.
    pub fn envelope(&self) -> Result<Envelope, EnvelopeError> {
        Envelope::from_fields(&self.fields)
    }

    pub(crate) fn from_entry((parked_id, all): Entry) -> Self {
        let mut out = Self {
            parked_id,
            source_entry_id: String::new(),
            reason: None,
            reason_code: String::new(),
            detail: String::new(),
            parked_at_ms: 0,
            consumer: String::new(),
            fields: Vec::new(),
            truncated_from: None,
        };
        for (k, v) in all {
            if let Some(name) = k.strip_prefix(RAW_PREFIX.as_bytes()) {
                out.fields.push((name.to_vec(), v));
                continue;
            }
            let text = String::from_utf8_lossy(&v).into_owned();
            match k.as_slice() {
                b"reason" => {
                    out.reason = ParkReason::from_code(&text);
                    out.reason_code = text;
                }
                b"detail" => out.detail = text,
                b"source_id" => out.source_entry_id = text,
                b"parked_at" => out.parked_at_ms = text.parse().unwrap_or(0),
                b"consumer" => out.consumer = text,
                b"truncated_from" => out.truncated_from = text.parse().ok(),
                _ => {}
            }
        }
        out
    }
}

/// A job queue on Redis streams (one per [lane](Lane), in each of its
/// [partitions](QueueConfig::partitions)). Cheap to clone; clones share one connection.
///
/// Push with [`push`](Self::push) (any serializable payload under a type name and version) or,
/// for a service, with `push_spec` (spec types only). Run jobs with a
/// [`Worker`](super::Worker).
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
    /// The partition this handle's stores are: 0 for the queue users hold; a worker reads each
    /// partition through a handle of its own.
    part: usize,
}

struct Inner {
    /// The partitions' stores, each in [`Lane::ALL`] order.
    parts: Vec<[Store; 3]>,
    /// Where rate limits' buckets, rate-key pauses, key-concurrency slots and the index of
    /// schedules live: the only partition's store, or with several the queue's own tag
    /// (`dm:{name}`), so that they hold across partitions.
    home: Store,
    config: QueueConfig,
    /// The next partition of a job placed round-robin.
    next: AtomicUsize,
    /// Ended jobs' ids from the Pub/Sub listener, started by the first wait.
    finished: Mutex<Option<Finished>>,
}

/// The listener of ended jobs' ids, shared by this queue's waits.
struct Finished {
    tx: broadcast::Sender<Arc<str>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(f) = self.finished.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            f.task.abort();
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to Redis (a connection that reconnects by itself) and opens the queue: one
    /// server (a `redis::Client`, `redis://` or `rediss://`), a Redis Cluster or a
    /// Sentinel-managed primary (see [`RedisTarget`]).
    ///
    /// # Errors
    /// A configuration out of range, a number of [partitions](QueueConfig::partitions) other
    /// than the one the queue has in Redis, or Redis unreachable.
    pub async fn connect(redis: impl Into<RedisTarget>, config: QueueConfig) -> Result<Self, QueueError> {
        if config.name.is_empty() || config.name.contains(['{', '}']) {
            return Err(QueueError::Config(format!(
                "queue name {:?} must be non-empty and without braces",
                config.name
            )));
        }
        if config.max_attempts == 0 {
            return Err(QueueError::Config("max_attempts must be at least 1".to_owned()));
        }
        if !(1..=MAX_PARTITIONS).contains(&config.partitions) {
            return Err(QueueError::Config(format!(
                "partitions is {}; a queue has 1 to {MAX_PARTITIONS}",
                config.partitions
            )));
        }
        if let Some((prefix, _)) = config.key_concurrency.iter().find(|(_, max)| *max == 0) {
            return Err(QueueError::Config(format!("the concurrency of keys {prefix:?} must be at least 1")));
        }
        for (scope, limit) in &config.rate_limits {
            limit.check().map_err(|e| QueueError::Config(format!("{e} (scope {scope:?})")))?;
        }
        let home = Store::connect(redis.into(), QueueKeys::new(&config.name), &config).await?;
        let known = home.claim_partitions(config.partitions).await?;
        if known != config.partitions {
            return Err(QueueError::Config(format!(
                "queue {:?} has {known} partitions in Redis ({}), not {}: every process must open a queue with \
                 its number of partitions (to change it, drain the queue and delete that key)",
                config.name,
                home.keys().partitions,
                config.partitions
            )));
        }
        let parts = if config.partitions == 1 {
            vec![Lane::ALL.map(|lane| home.lane(lane))]
        } else {
            (0..usize::from(config.partitions))
                .map(|i| {
                    let store = home.with_keys(QueueKeys::partition(&config.name, i, usize::from(config.partitions)));
                    Lane::ALL.map(|lane| store.lane(lane))
                })
                .collect()
        };
        let inner = Inner { parts, home, config, next: AtomicUsize::new(0), finished: Mutex::default() };
        Ok(Self { inner: Arc::new(inner), part: 0 })
    }

    /// The queue's settings.
    #[must_use]
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The queue's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The queue's Redis keys; of its first partition when it has several (see
    /// [`Queue::partition_keys`]).
    #[must_use]
    pub fn keys(&self) -> &QueueKeys {
        self.store().keys()
    }

    /// The Redis keys of partition `i`, if the queue has it.
    #[must_use]
    pub fn partition_keys(&self, i: usize) -> Option<&QueueKeys> {
        self.inner.parts.get(i).map(|lanes| lanes[Lane::Normal.index()].keys())
    }

    /// How many partitions the queue has.
    #[must_use]
    pub fn partitions(&self) -> usize {
        self.inner.parts.len()
    }

    /// A handle on partition `p` of the same queue: its [`store`](Self::store) and
    /// [`lane_store`](Self::lane_store) are that partition's.
    pub(crate) fn partition(&self, p: usize) -> Self {
        Self { inner: self.inner.clone(), part: p }
    }

    /// The normal lane's store of this handle's partition.
    pub(crate) fn store(&self) -> &Store {
        self.lane_store(Lane::Normal)
    }

    /// The store of `lane` in this handle's partition.
    pub(crate) fn lane_store(&self, lane: Lane) -> &Store {
        &self.inner.parts[self.part][lane.index()]
    }

    /// The store of rate limits, rate-key pauses, slots and the schedule index.
    pub(crate) fn home(&self) -> &Store {
        &self.inner.home
    }

    /// The store of `lane` in partition `p`.
    pub(crate) fn part_store(&self, p: usize, lane: Lane) -> &Store {
        &self.inner.parts[p][lane.index()]
    }

    /// The partition that the tagged `id` names, if any.
    pub(crate) fn partition_of(&self, id: &str) -> Option<usize> {
        partition::split(id, self.partitions()).map(|(p, _)| p)
    }

    /// `f` on every partition's store (its normal lane's) at once; the answers in partition
    /// order.
    pub(crate) async fn on_each<'a, T, Fut>(&'a self, f: impl Fn(&'a Store) -> Fut) -> Result<Vec<T>, QueueError>
    where
        Fut: Future<Output = Result<T, QueueError>>,
    {
        futures_util::future::try_join_all(self.stores().map(f)).await
    }

    /// The records of `ids` in their order (`None` for an id without one): one pipeline per
    /// partition, all at once.
    pub(crate) async fn records_of(&self, ids: &[String]) -> Result<Vec<Option<JobRecord>>, QueueError> {
        let mut by_part: Vec<(Vec<usize>, Vec<String>)> = vec![(Vec::new(), Vec::new()); self.partitions()];
        for (i, id) in ids.iter().enumerate() {
            if let Some(p) = self.partition_of(id) {
                by_part[p].0.push(i);
                by_part[p].1.push(id.clone());
            }
        }
        let fetched = self.stores().zip(&by_part).map(|(store, (_, mine))| store.records_of(mine));
        let mut out = vec![None; ids.len()];
        for ((at, _), records) in by_part.iter().zip(futures_util::future::try_join_all(fetched).await?) {
            for (&i, record) in at.iter().zip(records) {
                out[i] = record;
            }
        }
        Ok(out)
    }

    /// The normal lane's store of every partition.
    pub(crate) fn stores(&self) -> impl Iterator<Item = &Store> {
        self.inner.parts.iter().map(|lanes| &lanes[Lane::Normal.index()])
    }

    /// The normal lane's store of the partition that the tagged `id` (a job id or a parked
    /// id) names, with the id within it; `None` when it names none.
    pub(crate) fn store_of<'a>(&self, id: &'a str) -> Option<(usize, &Store, &'a str)> {
        let (p, base) = partition::split(id, self.partitions())?;
        Some((p, &self.inner.parts[p][Lane::Normal.index()], base))
    }

    /// The partition of a job with this unique key, else this key (an idempotency key or a
    /// schedule's name); round-robin without either.
    pub(crate) fn place(&self, unique: Option<&str>, key: Option<&str>) -> usize {
        let n = self.partitions();
        if n == 1 {
            return 0;
        }
        match unique.or(key) {
            Some(key) => partition::of_key(key, n),
            None => self.inner.next.fetch_add(1, AtomicOrdering::Relaxed) % n,
        }
    }

    /// A new job's envelope with its unique key (see [`unique_of`]), placed in partition `p`:
    /// with several partitions its id (and its idempotency key, when that defaults to the id)
    /// carries the partition.
    pub(crate) fn envelope_in(
        &self,
        (p, unique): (usize, Option<String>),
        type_name: &str,
        version: u32,
        payload: Vec<u8>,
        options: &PushOptions,
    ) -> Envelope {
        let id = partition::tag(&unique_id(), p, self.partitions());
        new_envelope(id, type_name, version, payload, options, unique)
    }

    /// Gives back the slot of `rate_key` that job `job_id` holds and wakes the key's oldest
    /// waiter, in one script with one partition; with several, the waiter (taken off the
    /// waiters first) is woken in its own partition, the next one tried when it no longer
    /// waits. A waiter lost between the two steps still wakes by its own due time, a lease
    /// later.
    pub(crate) async fn release_slot(&self, rate_key: &str, job_id: &str) -> Result<(), QueueError> {
        let home = self.home();
        if self.partitions() == 1 {
            return home.release_slot(rate_key, job_id).await;
        }
        for _ in 0..10 {
            let Some(waiter) = home.release_slot_take(rate_key, job_id).await? else { return Ok(()) };
            if let Some((_, store, _)) = self.store_of(&waiter)
                && store.wake(&waiter).await?
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A new job's envelope and its partition.
    fn envelope(&self, type_name: &str, version: u32, payload: Vec<u8>, options: &PushOptions) -> (usize, Envelope) {
        let unique = unique_of(type_name, &payload, options);
        let p = self.place(unique.as_deref(), options.idempotency_key.as_deref());
        (p, self.envelope_in((p, unique), type_name, version, payload, options))
    }

    /// Creates the consumer group (and the stream) if missing. The group starts at the
    /// stream's beginning, so entries pushed before any worker ran are delivered. A group that
    /// existed and was destroyed is recreated at the stream's end, its entries moved to the
    /// delayed set (workers do this themselves, delaying them by a lease so runs still in
    /// flight stop first).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        self.on_each(|store| store.ensure_group(Duration::ZERO)).await.map(drop)
    }

    /// Pushes a payload serialized as JSON under `type_name` and schema `version`.
    ///
    /// # Errors
    /// The payload does not serialize, or Redis fails.
    pub async fn push<T: Serialize + ?Sized>(
        &self,
        type_name: &str,
        version: u32,
        payload: &T,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        let bytes = encode(type_name, payload)?;
        self.push_raw(type_name, version, bytes, options).await
    }

    /// Pushes payload bytes as they are (not checked: a bad payload is parked by the worker).
    ///
    /// # Errors
    /// Redis fails.
    pub async fn push_raw(
        &self,
        type_name: &str,
        version: u32,
        payload: Vec<u8>,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        let (p, env) = self.envelope(type_name, version, payload, &options);
        let store = &self.inner.parts[p][options.lane.index()];
        let stored = if options.is_delayed() {
            let at = options.not_before.map_or(0, unix_ms);
            let delay = options.delay.map_or(0, store::millis);
            store.push_delayed(&env, options.unique_ttl, at, delay).await?.map(|_| None)
        } else {
            store.push(&env, options.unique_ttl).await?.map(Some)
        };
        JobMetrics::of(self.name(), type_name).pushed(usize::from(stored.is_ok()));
        Ok(Pushed::new(&env, stored))
    }

    /// Pushes a spec under its type name and schema version. Only spec types are accepted,
    /// so no client and no secret reaches the queue.
    ///
    /// # Errors
    /// The spec does not serialize, or Redis fails.
    pub fn push_spec<T: Spec>(
        &self,
        spec: &T,
        options: PushOptions,
    ) -> Pin<Box<dyn Future<Output = Result<Pushed, QueueError>> + Send + '_>> {
        // Encoded here, and pushed by a future whose type does not name `T`: a value that is
        // not a spec is then one error, at the argument, not one more for the call and one for
        // the `.await`.
        Box::pin(self.push_encoded(T::NAME, T::VERSION, encode(T::NAME, spec), options))
    }

    async fn push_encoded(
        &self,
        type_name: &'static str,
        version: u32,
        payload: Result<Vec<u8>, QueueError>,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        self.push_raw(type_name, version, payload?, options).await
    }

    /// Pushes many specs in pipelined round trips; see [`Queue::push_bulk`].
    ///
    /// # Errors
    /// A spec does not serialize, or Redis fails.
    pub async fn push_specs<T: Spec>(&self, specs: &[T], options: PushOptions) -> Result<Vec<Pushed>, QueueError> {
        self.push_bulk(T::NAME, T::VERSION, specs, options).await
    }

    /// Pushes many payloads in pipelined round trips (1,000 entries each); all are serialized
    /// before anything is sent. Options apply to each job (an idempotency key or a unique key
    /// is not allowed here, as each job needs its own; uniqueness by payload is).
    ///
    /// # Errors
    /// A payload does not serialize, the options carry an idempotency or unique key, or Redis
    /// fails (the chunks sent before the failure stay pushed).
    pub async fn push_bulk<'a, T, I>(
        &self,
        type_name: &str,
        version: u32,
        payloads: I,
        options: PushOptions,
    ) -> Result<Vec<Pushed>, QueueError>
    where
        T: Serialize + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        if options.idempotency_key.is_some() || options.unique_key.is_some() {
            return Err(QueueError::Config(
                "push_bulk takes no idempotency or unique key: each job needs its own".to_owned(),
            ));
        }
        let envs = payloads
            .into_iter()
            .map(|p| Ok(self.envelope(type_name, version, encode(type_name, p)?, &options)))
            .collect::<Result<Vec<_>, QueueError>>()?;
        let lane = options.lane.index();
        // Each partition's envelopes in pushed order, with their places in the answer.
        let mut parts: Vec<(Vec<usize>, Vec<Envelope>)> = vec![(Vec::new(), Vec::new()); self.partitions()];
        for (i, (p, env)) in envs.into_iter().enumerate() {
            parts[p].0.push(i);
            parts[p].1.push(env);
        }
        let mut out: Vec<Option<Pushed>> = vec![None; parts.iter().map(|(at, _)| at.len()).sum()];
        for (stores, (at, envs)) in self.inner.parts.iter().zip(&parts) {
            if options.is_delayed() {
                let due = (options.not_before.map_or(0, unix_ms), options.delay.map_or(0, store::millis));
                for (&i, env) in at.iter().zip(envs) {
                    let stored = stores[lane].push_delayed(env, options.unique_ttl, due.0, due.1).await?;
                    out[i] = Some(Pushed::new(env, stored.map(|_| None)));
                }
                continue;
            }
            for (at, envs) in at.chunks(BULK_CHUNK).zip(envs.chunks(BULK_CHUNK)) {
                let stored = stores[lane].push_many(envs, options.unique_ttl).await?;
                for ((&i, env), stored) in at.iter().zip(envs).zip(stored) {
                    out[i] = Some(Pushed::new(env, stored.map(Some)));
                }
            }
        }
        let out: Vec<Pushed> = out.into_iter().flatten().collect();
        JobMetrics::of(self.name(), type_name).pushed(out.iter().filter(|p| !p.duplicate).count());
        Ok(out)
    }

    /// Moves due delayed entries (and due retries) into the stream; workers call this on their
    /// own every poll interval. Returns how many moved.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn promote_due(&self) -> Result<usize, QueueError> {
        let mut total = 0;
        for p in 0..self.partitions() {
            total += self.partition(p).promote_partition().await?;
        }
        Ok(total)
    }

    /// [`promote_due`](Self::promote_due) for this handle's partition only.
    pub(crate) async fn promote_partition(&self) -> Result<usize, QueueError> {
        let mut total = 0;
        loop {
            let moved = self.store().promote(PROMOTE_BATCH).await?;
            total += moved;
            if moved < PROMOTE_BATCH {
                return Ok(total);
            }
        }
    }

    /// Counts of the stream, the pending entries of the group, the delayed set and the parked
    /// stream.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let all = self.on_each(Store::stats).await?;
        Ok(all.into_iter().fold(QueueStats::default(), QueueStats::plus))
    }

    /// The oldest `count` parked entries, oldest first.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked(&self, count: usize) -> Result<Vec<ParkedEntry>, QueueError> {
        self.parked_merged(None, count).await
    }

    /// Up to `count` parked entries after the parked id `after` (exclusive), for paging.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked_after(&self, after: &str, count: usize) -> Result<Vec<ParkedEntry>, QueueError> {
        let cursor = partition::Cursor::parse(after, self.partitions())
            .ok_or_else(|| QueueError::Config(format!("{after:?} is not a parked id of queue {:?}", self.name())))?;
        self.parked_merged(Some(cursor), count).await
    }

    /// One parked entry by its parked id.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked_entry(&self, parked_id: &str) -> Result<Option<ParkedEntry>, QueueError> {
        let Some((p, store, id)) = self.store_of(parked_id) else { return Ok(None) };
        Ok(store.parked_range(id, id, 1).await?.pop().map(|e| self.parked_from(p, e)))
    }

    /// Up to `count` parked entries of every partition after `cursor`, oldest first.
    async fn parked_merged(
        &self,
        cursor: Option<partition::Cursor<'_>>,
        count: usize,
    ) -> Result<Vec<ParkedEntry>, QueueError> {
        let pages = self.stores().enumerate().map(|(q, store)| {
            let start = match cursor {
                None => "-".to_owned(),
                Some(c) if c.inclusive(q, false) => c.id.to_owned(),
                Some(c) => format!("({}", c.id),
            };
            async move { store.parked_range(&start, "+", count).await }
        });
        let pages = futures_util::future::try_join_all(pages).await?;
        let merged = partition::merge(pages, count, false, |(id, _): &Entry| id.as_str());
        Ok(merged.into_iter().map(|(p, e)| self.parked_from(p, e)).collect())
    }

    /// A parked entry of partition `p`, its id tagged when the queue has several.
    pub(crate) fn parked_from(&self, p: usize, (id, fields): Entry) -> ParkedEntry {
        ParkedEntry::from_entry((partition::tag(&id, p, self.partitions()), fields))
    }

    /// Puts a parked entry back on the queue with its original fields and the attempt reset
    /// to 1, and removes it from the parked stream, atomically. Returns the new stream entry
    /// id, or `None` if there is no such parked entry.
    ///
    /// # Errors
    /// [`QueueError::Truncated`] for an entry parked with only part of its fields; Redis fails.
    pub async fn redrive(&self, parked_id: &str) -> Result<Option<String>, QueueError> {
        let Some(parked) = self.parked_entry(parked_id).await? else {
            return Ok(None);
        };
        if let Some(fields) = parked.truncated_from {
            return Err(QueueError::Truncated { parked_id: parked_id.to_owned(), fields });
        }
        self.redrive_entry(&parked).await
    }

    /// Re-drives `parked` in its partition.
    async fn redrive_entry(&self, parked: &ParkedEntry) -> Result<Option<String>, QueueError> {
        let Some((_, store, id)) = self.store_of(&parked.parked_id) else { return Ok(None) };
        let job_id = parked.field(super::envelope::field::ID).and_then(|id| std::str::from_utf8(id).ok());
        store.redrive(id, RAW_PREFIX, job_id).await
    }

    /// The record of job `id`: its state, attempts, times, worker, last error and result.
    /// `None` for an id never pushed, or whose job ended longer ago than
    /// [`QueueConfig::record_ttl`].
    ///
    /// # Errors
    /// Redis fails.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, QueueError> {
        match self.store_of(id) {
            Some((_, store, _)) => store.record(id).await,
            None => Ok(None),
        }
    }

    /// Up to `count` records of jobs in `state` from position `start`, oldest first (by when
    /// they entered the state), and how many jobs are in that state. With several partitions
    /// this reads `start + count` records of each and merges them by their times, which the
    /// records keep to the millisecond: for deep pages, or an exact order, page with
    /// [`jobs_page`](Self::jobs_page)'s cursors instead.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn jobs(&self, state: JobState, start: usize, count: usize) -> Result<(Vec<JobRecord>, u64), QueueError> {
        if self.partitions() == 1 {
            return self.store().records(state, start, count).await;
        }
        let window = start.saturating_add(count);
        let all = self.on_each(|s| s.records(state, 0, window)).await?;
        let total = all.iter().map(|(_, n)| n).sum();
        let mut records: Vec<JobRecord> = all.into_iter().flat_map(|(r, _)| r).collect();
        // Each partition's list is in its own order; merged by when the jobs got there.
        records.sort_by_key(|r| match state {
            JobState::Delayed | JobState::Retrying => (0, r.due_at.unwrap_or(r.updated_at)),
            JobState::Queued => (r.lane.index(), r.enqueued_at),
            _ => (0, r.updated_at),
        });
        Ok((records.into_iter().skip(start).take(count).collect(), total))
    }

    /// Cancels job `id`. A queued, delayed or retrying job is removed and never runs; a running
    /// job is told through [`JobInfo::cancelled`](super::JobInfo::cancelled) within a second
    /// (at its next lease renewal) and aborted after [`WorkerConfig::cancel_grace`](super::WorkerConfig) (a
    /// service's guard closes its clients), its entry acknowledged and its record `cancelled`.
    /// An ended or unknown job is an answer, not an error.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, QueueError> {
        match self.store_of(id) {
            Some((_, store, _)) => store.cancel(id).await,
            None => Ok(CancelOutcome::Unknown),
        }
    }

    /// Waits up to `timeout` for the service job `id` to end; its result decodes as
    /// `S::Output`. Woken by the worker's end-of-job notification, not by polling (a re-read
    /// every second covers a notification lost to a reconnect).
    ///
    /// ```no_run
    /// # async fn f<S: dual_mode_jobs::Job>(queue: dual_mode_jobs::Queue, spec: S::Spec)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use dual_mode_jobs::{JobOutcome, PushOptions};
    ///
    /// let pushed = queue.push_spec(&spec, PushOptions::new()).await?;
    /// match queue.wait_for::<S>(&pushed.job_id, Duration::from_secs(30)).await? {
    ///     JobOutcome::Done(output) => { /* S::Output */ }
    ///     JobOutcome::Parked { reason, error } => eprintln!("parked ({reason:?}): {error}"),
    ///     JobOutcome::Cancelled => {}
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`WaitError::Timeout`] when it did not end in time, [`WaitError::Unknown`] for an id
    /// without a record, [`WaitError::Result`] when the result does not decode.
    pub async fn wait_for<S: Job>(&self, id: &str, timeout: Duration) -> Result<JobOutcome<S::Output>, WaitError> {
        self.wait_for_output::<S::Output>(id, timeout).await
    }

    /// [`wait_for`](Self::wait_for) for any handler: the result decodes as `T`.
    ///
    /// # Errors
    /// As [`wait_for`](Self::wait_for).
    pub async fn wait_for_output<T: DeserializeOwned>(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<JobOutcome<T>, WaitError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = self.finished_events();
        loop {
            let record = self.job(id).await?.ok_or_else(|| WaitError::Unknown { id: id.to_owned() })?;
            if record.state.is_final() {
                return outcome(record);
            }
            let woken = async {
                loop {
                    match events.recv().await {
                        // An empty id: the listener (re)subscribed and may have missed some.
                        Ok(ended) if &*ended == id || ended.is_empty() => return,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let record = self.job(id).await?.ok_or_else(|| WaitError::Unknown { id: id.to_owned() })?;
                    if record.state.is_final() {
                        return outcome(record);
                    }
                    return Err(WaitError::Timeout { id: id.to_owned(), timeout, state: record.state });
                }
            }
        }
    }

    /// A receiver of ended jobs' ids; starts the shared listener on first use.
    fn finished_events(&self) -> broadcast::Receiver<Arc<str>> {
        let mut slot = self.inner.finished.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = slot.as_ref().filter(|f| !f.task.is_finished()) {
            return f.tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(1024);
        let task = tokio::spawn(listen(self.inner.home.clone(), tx.clone())).abort_handle();
        *slot = Some(Finished { tx, task });
        rx
    }

    /// Re-drives every parked entry, oldest first (those parked while this runs included, up
    /// to `limit`); entries that kept only part of their fields stay parked (see
    /// [`Queue::redrive`]). Returns how many were re-driven.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn redrive_all(&self, limit: usize) -> Result<usize, QueueError> {
        let mut done = 0;
        let mut after: Option<String> = None;
        while done < limit {
            let want = (limit - done).min(100);
            let batch = match &after {
                Some(after) => self.parked_after(after, want).await?,
                None => self.parked(want).await?,
            };
            let Some(last) = batch.last() else { break };
            after = Some(last.parked_id.clone());
            for p in batch.iter().filter(|p| p.truncated_from.is_none()) {
                if self.redrive_entry(p).await?.is_some() {
                    done += 1;
                }
            }
        }
        Ok(done)
    }
}

/// Forwards ended jobs' ids from Redis Pub/Sub, reconnecting with back-off; an empty id after
/// each (re)subscription tells waiters to re-read what they may have missed.
async fn listen(store: Store, tx: broadcast::Sender<Arc<str>>) {
    let mut failures = 0u32;
    loop {
        match store.finished().await {
            Ok(mut stream) => {
                failures = 0;
                let _ = tx.send(Arc::from(""));
                while let Some(msg) = stream.next().await {
                    // One message per script: the ids of the jobs it ended, space-separated.
                    if let Ok(ids) = msg.get_payload::<String>() {
                        for id in ids.split_ascii_whitespace() {
                            let _ = tx.send(Arc::from(id));
                        }
                    }
                }
                tracing::debug!(channel = %store.keys().finished_channel, "job notifications ended; resubscribing");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(error = %super::error::chain(&e), "cannot subscribe to job notifications; retrying");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))).await;
    }
}

/// The outcome of an ended job's record.
fn outcome<T: DeserializeOwned>(record: JobRecord) -> Result<JobOutcome<T>, WaitError> {
    Ok(match record.state {
        JobState::Parked => JobOutcome::Parked { reason: record.park_reason, error: record.error.unwrap_or_default() },
        JobState::Cancelled => JobOutcome::Cancelled,
        _ => {
            let bytes = record.result.as_deref().unwrap_or(b"null");
            let value = super::envelope::decode_json(bytes, super::envelope::short_type_name::<T>())
                .map_err(|source| WaitError::Result { id: record.id.clone(), source })?;
            JobOutcome::Done(value)
        }
    })
}

pub(crate) fn encode<T: Serialize + ?Sized>(type_name: &str, payload: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(payload).map_err(|source| QueueError::Encode { type_name: type_name.to_owned(), source })
}

/// The unique key of a job pushed with `options`: the key given, or one derived from the
/// payload.
pub(crate) fn unique_of(type_name: &str, payload: &[u8], options: &PushOptions) -> Option<String> {
    match (&options.unique_key, options.unique_by_payload) {
        (Some(key), _) => Some(key.clone()),
        (None, true) => Some(format!("{type_name}:{:032x}", partition::fnv1a_128(payload))),
        (None, false) => None,
    }
}

fn new_envelope(
    id: String,
    type_name: &str,
    version: u32,
    payload: Vec<u8>,
    options: &PushOptions,
    unique: Option<String>,
) -> Envelope {
    Envelope {
        idempotency_key: options.idempotency_key.clone().unwrap_or_else(|| id.clone()),
        id,
        type_name: type_name.to_owned(),
        version,
        attempt: 1,
        max_attempts: options.max_attempts,
        unique,
        timeout_ms: options.timeout.map(store::millis),
        rate_key: options.rate_key.clone(),
        reserved: false,
        lane: options.lane,
        traceparent: options.traceparent.clone().or_else(super::trace::current),
        enqueued_at_ms: unix_ms(SystemTime::now()),
        payload,
    }
}

impl Pushed {
    /// What a push of `env` stored: its entry id (`None` when delayed), or the id of the
    /// job that holds its unique key.
    fn new(env: &Envelope, stored: Result<Option<String>, String>) -> Self {
        match stored {
            Ok(entry_id) => Self {
                job_id: env.id.clone(),
                idempotency_key: env.idempotency_key.clone(),
                entry_id,
                duplicate: false,
            },
            Err(holder) => {
                Self { job_id: holder, idempotency_key: env.idempotency_key.clone(), entry_id: None, duplicate: true }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::QueueKeys;

    #[test]
    fn an_unpartitioned_queue_keeps_its_keys() {
        let k = QueueKeys::new("mail");
        let all = [
            (&k.stream, "dm:{mail}:stream"),
            (&k.delayed, "dm:{mail}:delayed"),
            (&k.parked, "dm:{mail}:parked"),
            (&k.parked_dropped, "dm:{mail}:parked-dropped"),
            (&k.delayed_entry_prefix, "dm:{mail}:delayed:"),
            (&k.schedule_prefix, "dm:{mail}:sched:"),
            (&k.record_prefix, "dm:{mail}:job:"),
            (&k.state_prefix, "dm:{mail}:jobs:"),
            (&k.unique_prefix, "dm:{mail}:unique:"),
            (&k.finished_channel, "dm:{mail}:finished"),
            (&k.rate_prefix, "dm:{mail}:rate:"),
            (&k.rate_pause_prefix, "dm:{mail}:rate-pause:"),
            (&k.slot_prefix, "dm:{mail}:slots:"),
            (&k.slot_wait_prefix, "dm:{mail}:slot-wait:"),
            (&k.paused, "dm:{mail}:jobs:paused"),
        ];
        for (key, want) in all {
            assert_eq!(key, want);
        }
    }

    #[test]
    fn a_partition_has_its_own_tag_and_the_queue_keeps_its_limits() {
        let p = QueueKeys::partition("mail", 1, 3);
        assert!(p.stream.starts_with("dm:{mail:1") && p.stream.ends_with("}:p:stream"), "{}", p.stream);
        assert_ne!(p.stream, QueueKeys::new("mail:1").stream, "a queue named like the tag");
        assert_eq!((p.rate_prefix.as_str(), p.slot_prefix.as_str()), ("dm:{mail}:rate:", "dm:{mail}:slots:"));
        assert_eq!(
            (p.finished_channel.as_str(), p.partitions.as_str()),
            ("dm:{mail}:finished", "dm:{mail}:partitions")
        );
    }
}
