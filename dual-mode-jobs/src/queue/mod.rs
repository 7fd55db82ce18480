//! The queue: a handle on a queue's partitions in a store (Redis or in process), opened by
//! [`Queue::connect`](crate::Queue::connect) or [`Queue::in_process`]. Its pushes, parked entries and waits are in
//! the files beside this one; the operator reads in `crate::admin`.

mod config;
mod options;
mod parked;
mod push;
mod wait;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::backend::{Backend, Connect, Opened};
use crate::error::QueueError;
use crate::memory::MemoryPartition;
use crate::partition;
use crate::record::{CancelOutcome, JobRecord, JobState};

pub use crate::backend::QueueStats;
pub use crate::keys::QueueKeys;
pub use config::QueueConfig;
pub use options::{PushOptions, Pushed};
pub use parked::ParkedEntry;
pub(crate) use parked::RAW_PREFIX;
pub(crate) use push::{AfterPush, encode, new_envelope, unique_of};
use wait::Finished;
/// How many delayed entries one promote script moves at most.
pub(crate) const PROMOTE_BATCH: usize = 500;

/// A job queue on Redis streams (one per [lane](crate::Lane), in each of its
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
    /// What a push of a ready job awaits after it stored the job (a test queue's inline
    /// run), with the job's id.
    after_push: Option<AfterPush>,
}

struct Inner {
    /// The partitions' stores.
    parts: Vec<Arc<dyn Backend>>,
    /// The partitions' key names (a Redis store's keys; names only elsewhere).
    keys: Vec<QueueKeys>,
    /// Where rate limits' buckets, rate-key pauses, key-concurrency slots and the index of
    /// schedules live: the only partition's store, or with several the queue's own tag
    /// (`dm:{name}`), so that they hold across partitions.
    home: Arc<dyn Backend>,
    config: QueueConfig,
    /// The next partition of a job placed round-robin.
    next: AtomicUsize,
    /// Ended jobs' ids from the Pub/Sub listener, started by the first wait.
    finished: Mutex<Option<Finished>>,
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
    /// Opens the queue in a store: on Redis (with the crate `dual-mode-redis`, the facade's
    /// default) one server (a `redis::Client`, `redis://` or `rediss://`), a Redis Cluster or a
    /// Sentinel-managed primary (a `RedisTarget`), through a connection that reconnects by
    /// itself. For a queue in this process's memory see [`Queue::in_process`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use dual_mode::jobs::{Queue, QueueConfig};
    ///
    /// let queue = Queue::connect(redis::Client::open("redis://127.0.0.1/")?, QueueConfig::new("mail")).await?;
    /// # let _ = queue; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A configuration out of range, a number of [partitions](QueueConfig::partitions) other
    /// than the one the queue has in its store, or the store unreachable.
    pub async fn connect<B>(target: impl Connect<B>, config: QueueConfig) -> Result<Self, QueueError> {
        config.validate()?;
        let Opened { home, parts } = target.open(&config).await?;
        let n = usize::from(config.partitions);
        if parts.len() != n {
            return Err(QueueError::Config(format!(
                "the store opened {} partitions of queue {:?}, not {n}",
                parts.len(),
                config.name
            )));
        }
        let keys = if n == 1 {
            vec![QueueKeys::new(&config.name)]
        } else {
            (0..n).map(|i| QueueKeys::partition(&config.name, i, n)).collect()
        };
        Ok(Self::open(config, home, parts, keys))
    }

    /// Opens a queue in this process's memory, on the in-process backend: **its jobs are lost
    /// when the process exits**. Everything else is as on Redis (records, leases and fencing,
    /// retries, parking, unique keys, rate limits, lanes, pause, schedules, the operator
    /// reads), for tests and for programs that need no second process.
    ///
    /// Each call opens a new queue, whatever its name: share one by cloning the `Queue` (a
    /// worker and a producer of one process hold clones).
    ///
    /// ```
    /// use dual_mode_jobs::{PushOptions, Queue, QueueConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), dual_mode_jobs::QueueError> {
    /// let queue = Queue::in_process(QueueConfig::new("mail"))?;
    /// let pushed = queue.push("Mail", 1, &"hello", PushOptions::new()).await?;
    /// assert!(queue.job(&pushed.job_id).await?.is_some());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A configuration out of range.
    pub fn in_process(config: QueueConfig) -> Result<Self, QueueError> {
        config.validate()?;
        let n = usize::from(config.partitions);
        let home = MemoryPartition::new(config.retention());
        let (parts, keys): (Vec<Arc<dyn Backend>>, Vec<QueueKeys>) = if n == 1 {
            (vec![Arc::new(home.clone())], vec![QueueKeys::new(&config.name)])
        } else {
            (0..n)
                .map(|i| (Arc::new(home.partition()) as Arc<dyn Backend>, QueueKeys::partition(&config.name, i, n)))
                .unzip()
        };
        Ok(Self::open(config, Arc::new(home), parts, keys))
    }

    /// A queue on these stores.
    fn open(config: QueueConfig, home: Arc<dyn Backend>, parts: Vec<Arc<dyn Backend>>, keys: Vec<QueueKeys>) -> Self {
        let inner = Inner { parts, keys, home, config, next: AtomicUsize::new(0), finished: Mutex::default() };
        Self { inner: Arc::new(inner), part: 0, after_push: None }
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
        &self.inner.keys[self.part]
    }

    /// The Redis keys of partition `i`, if the queue has it.
    #[must_use]
    pub fn partition_keys(&self, i: usize) -> Option<&QueueKeys> {
        self.inner.keys.get(i)
    }

    /// How many partitions the queue has.
    #[must_use]
    pub fn partitions(&self) -> usize {
        self.inner.parts.len()
    }

    /// A handle on partition `p` of the same queue: its [`store`](Self::store) and
    /// [`lane_store`](Self::lane_store) are that partition's.
    pub(crate) fn partition(&self, p: usize) -> Self {
        Self { inner: self.inner.clone(), part: p, after_push: None }
    }

    /// The store of this handle's partition.
    pub(crate) fn store(&self) -> &dyn Backend {
        &*self.inner.parts[self.part]
    }

    /// The store of rate limits, rate-key pauses, slots and the schedule index.
    pub(crate) fn home(&self) -> &dyn Backend {
        &*self.inner.home
    }

    /// The shared store of rate limits, rate-key pauses, slots and the schedule index.
    pub(crate) fn home_arc(&self) -> Arc<dyn Backend> {
        self.inner.home.clone()
    }

    /// The store of partition `p`.
    pub(crate) fn part_store(&self, p: usize) -> &dyn Backend {
        &*self.inner.parts[p]
    }

    /// The shared store of partition `p`.
    pub(crate) fn part_arc(&self, p: usize) -> Arc<dyn Backend> {
        self.inner.parts[p].clone()
    }

    /// The partition that the tagged `id` names, if any.
    pub(crate) fn partition_of(&self, id: &str) -> Option<usize> {
        partition::split(id, self.partitions()).map(|(p, _)| p)
    }

    /// `f` on every partition's store at once; the answers in partition order.
    pub(crate) async fn on_each<'a, T, Fut>(&'a self, f: impl Fn(&'a dyn Backend) -> Fut) -> Result<Vec<T>, QueueError>
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

    /// The store of every partition.
    pub(crate) fn stores(&self) -> impl Iterator<Item = &dyn Backend> {
        self.inner.parts.iter().map(|part| &**part)
    }

    /// The store of the partition that the tagged `id` (a job id or a parked id) names, with
    /// the id within it; `None` when it names none.
    pub(crate) fn store_of<'a>(&self, id: &'a str) -> Option<(usize, &dyn Backend, &'a str)> {
        let (p, base) = partition::split(id, self.partitions())?;
        Some((p, &*self.inner.parts[p], base))
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
        let all = self.on_each(Backend::stats).await?;
        Ok(all.into_iter().fold(QueueStats::default(), QueueStats::plus))
    }

    /// The record of job `id`: its state, attempts, times, worker, last error and result.
    /// `None` for an id never pushed, or whose record the queue no longer keeps
    /// ([`Keep`](crate::Keep); [`why_no_record`](Self::why_no_record) says which it may be).
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
}
