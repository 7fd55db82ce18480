//! The worker: a consumer in the queue's group that runs handlers, one task per job.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::Value;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument as _;

use super::envelope::{Envelope, RawFields, random_u64, unique_id, unix_ms};
use super::error::{DecodeError, JobError, ParkReason, QueueError};
use super::queue::{Queue, RAW_PREFIX};
use super::{reply, scripts};
use crate::unwind::{catch_unwind, panic_message};

/// At most this many original field pairs are copied into a parked entry.
const MAX_PARKED_FIELDS: usize = 1000;

/// At most this many successful runs are acknowledged by one script.
const ACK_BATCH_MAX: usize = 64;

/// At most this many running jobs' leases are renewed by one script.
const RENEW_BATCH_MAX: usize = 256;

/// Settings of a worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Jobs run at once (at least 1).
    pub concurrency: usize,
    /// A running job's entry whose lease was not renewed for this long may be claimed by
    /// another worker (it is then considered crashed).
    pub lease: Duration,
    /// How often the leases of running jobs are renewed (well under `lease`); one script renews
    /// all of a worker's running jobs.
    pub renew_every: Duration,
    /// How often the worker looks for entries of crashed consumers to claim.
    pub claim_every: Duration,
    /// How long one `XREADGROUP` blocks waiting for new entries; also bounds how late a
    /// shutdown request is seen by the reader.
    pub block: Duration,
    /// How often due delayed entries and retries are moved into the stream.
    pub poll_delayed_every: Duration,
    /// The backoff before the 2nd attempt; it doubles per attempt (with jitter in its upper
    /// half) up to `backoff_max`.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// How long a graceful shutdown waits for running jobs before aborting them (their
    /// entries stay pending and are claimed by another worker after the lease).
    pub shutdown_deadline: Duration,
    /// After a job learns it lost its lease, how long it may go on before it is aborted.
    pub lost_lease_grace: Duration,
    /// An entry delivered more often than this is parked as
    /// [`ParkReason::TooManyDeliveries`] (it kills the workers that run it).
    pub max_deliveries: u32,
    /// The start of the consumer name; the process id and a random suffix follow.
    pub consumer_prefix: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerConfig {
    /// 16 jobs at once, a 30 s lease renewed every 10 s, claims every 15 s, 1 s blocking
    /// reads, delayed entries polled every 250 ms, backoff from 1 s to 5 min, 30 s shutdown
    /// deadline, 20 deliveries at most, the host name as consumer prefix.
    #[must_use]
    pub fn new() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_owned());
        Self {
            concurrency: 16,
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            claim_every: Duration::from_secs(15),
            block: Duration::from_secs(1),
            poll_delayed_every: Duration::from_millis(250),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            shutdown_deadline: Duration::from_secs(30),
            lost_lease_grace: Duration::from_secs(5),
            max_deliveries: 20,
            consumer_prefix: host,
        }
    }

    /// Sets the concurrency.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the lease, renewal every third of it and claims every half of it.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.renew_every = lease / 3;
        self.claim_every = lease / 2;
        self
    }

    /// Sets the renewal interval.
    #[must_use]
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = every;
        self
    }

    /// Sets the claim interval.
    #[must_use]
    pub fn claim_every(mut self, every: Duration) -> Self {
        self.claim_every = every;
        self
    }

    /// Sets the blocking read time.
    #[must_use]
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Sets the delayed-entry poll interval.
    #[must_use]
    pub fn poll_delayed_every(mut self, every: Duration) -> Self {
        self.poll_delayed_every = every;
        self
    }

    /// Sets the backoff range.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Sets the shutdown deadline.
    #[must_use]
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Sets the grace after a lost lease.
    #[must_use]
    pub fn lost_lease_grace(mut self, grace: Duration) -> Self {
        self.lost_lease_grace = grace;
        self
    }

    /// Sets the maximum deliveries of one entry.
    #[must_use]
    pub fn max_deliveries(mut self, max: u32) -> Self {
        self.max_deliveries = max;
        self
    }

    /// Sets the consumer name prefix.
    #[must_use]
    pub fn consumer_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.consumer_prefix = prefix.into();
        self
    }

    /// The backoff before attempt `attempt + 1`: `base * 2^(attempt-1)` capped at the
    /// maximum, then a random point in its upper half (so delays never shrink).
    #[must_use]
    pub fn backoff_for(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let full = self.backoff_base.saturating_mul(factor).min(self.backoff_max);
        let half = full / 2;
        let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(if half_ms == 0 { 0 } else { random_u64() % (half_ms + 1) })
    }

    fn validate(&self) -> Result<(), QueueError> {
        let bad = |what: &str| Err(QueueError::Config(what.to_owned()));
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.lease.is_zero() || self.renew_every.is_zero() || self.renew_every >= self.lease {
            return bad("renew_every must be non-zero and shorter than the lease");
        }
        if self.claim_every.is_zero() || self.poll_delayed_every.is_zero() {
            return bad("claim_every and poll_delayed_every must be non-zero");
        }
        if self.block.is_zero() {
            return bad("block must be non-zero (zero blocks forever in Redis)");
        }
        Ok(())
    }
}

/// The lease of a running job: the job's way to learn that it lost ownership of its entry
/// (another worker claimed it after the lease expired, e.g. because this process was paused).
///
/// After that, whatever the handler does, the worker will not acknowledge the entry: the
/// other worker's run is the one that counts. A handler with side effects checks
/// [`is_lost`](Self::is_lost) before committing them, or selects on [`lost`](Self::lost).
#[derive(Debug, Clone)]
pub struct Lease {
    lost: watch::Receiver<bool>,
    token: u64,
}

impl Lease {
    /// Whether the lease is known to be lost.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is lost; never, if it is not.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        if rx.wait_for(|lost| *lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The fencing token: the entry's delivery count when this run got it. A claim by
    /// anyone increments it, so it orders the runs of one entry.
    #[must_use]
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// A job as its handler sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobInfo {
    inner: Arc<JobInner>,
}

#[derive(Debug)]
struct JobInner {
    envelope: Envelope,
    entry_id: String,
    queue: String,
    consumer: String,
    max_attempts: u32,
    lease: Lease,
}

impl JobInfo {
    /// The envelope: ids, type name, version, attempt, payload.
    #[must_use]
    pub fn envelope(&self) -> &Envelope {
        &self.inner.envelope
    }

    /// The job id (kept across attempts).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.inner.envelope.id
    }

    /// The idempotency key: key side effects by it to make the handler safe to run twice.
    #[must_use]
    pub fn idempotency_key(&self) -> &str {
        &self.inner.envelope.idempotency_key
    }

    /// This attempt, from 1.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.inner.envelope.attempt
    }

    /// The attempts this job gets (the job's override, else the queue's maximum).
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// Whether a failure of this attempt parks the job.
    #[must_use]
    pub fn is_last_attempt(&self) -> bool {
        self.attempt() >= self.max_attempts()
    }

    /// The payload's type name.
    #[must_use]
    pub fn type_name(&self) -> &str {
        &self.inner.envelope.type_name
    }

    /// The payload's schema version.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.inner.envelope.version
    }

    /// The raw payload bytes.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.inner.envelope.payload
    }

    /// The stream entry id of this delivery.
    #[must_use]
    pub fn entry_id(&self) -> &str {
        &self.inner.entry_id
    }

    /// The queue's name.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// The consumer running it.
    #[must_use]
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The lease, to learn whether this run lost ownership.
    #[must_use]
    pub fn lease(&self) -> &Lease {
        &self.inner.lease
    }

    /// Decodes the JSON payload into `T`, the error classified (return it with `?`: a
    /// [`JobError::Decode`] parks the entry with its reason).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the type, the field path and the kind of bad payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        super::envelope::decode_json(self.payload(), self.type_name())
    }
}

/// Runs jobs of one type name. The future runs in its job's task, its panics caught: a panic
/// fails that job only.
pub trait Handler: Send + Sync + 'static {
    /// Runs one job; `Err` retries or parks it, see [`JobError`].
    fn handle(&self, job: JobInfo) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// A handler from a closure over the raw [`JobInfo`]; see [`handler_fn`].
#[derive(Debug, Clone, Copy)]
pub struct HandlerFn<F>(F);

/// A handler from `async |job: JobInfo| -> Result<(), JobError>`-like closures.
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    fn handle(&self, job: JobInfo) -> impl Future<Output = Result<(), JobError>> + Send {
        (self.0)(job)
    }
}

/// A handler that decodes the payload into `T` (inside the job task) and calls a closure
/// with it; see [`typed`].
pub struct Typed<T, F> {
    f: F,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T, F> std::fmt::Debug for Typed<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed").field("type", &std::any::type_name::<T>()).finish_non_exhaustive()
    }
}

/// A handler that decodes each payload into `T` and calls `f(value, job)`; a payload that does
/// not decode is parked with its reason.
pub fn typed<T, F, Fut>(f: F) -> Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    Typed { f, _t: std::marker::PhantomData }
}

impl<T, F, Fut> Handler for Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    async fn handle(&self, job: JobInfo) -> Result<(), JobError> {
        let value = job.decode::<T>()?;
        (self.f)(value, job).await
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

trait ErasedHandler: Send + Sync {
    fn call(self: Arc<Self>, job: JobInfo) -> BoxFuture;
}

impl<H: Handler> ErasedHandler for H {
    fn call(self: Arc<Self>, job: JobInfo) -> BoxFuture {
        Box::pin(async move { self.handle(job).await })
    }
}

/// Counters of one worker, live.
#[derive(Debug, Default)]
pub struct WorkerStats {
    received: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    waited: AtomicU64,
    parked: AtomicU64,
    panicked: AtomicU64,
    lease_lost: AtomicU64,
    unfinished: AtomicU64,
}

/// A snapshot of [`WorkerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerCounts {
    /// Entries received (read or claimed).
    pub received: u64,
    /// Jobs that succeeded and were acknowledged by this worker.
    pub succeeded: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Runs delayed by [`JobError::RetryAfter`], without counting an attempt.
    pub waited: u64,
    /// Entries parked.
    pub parked: u64,
    /// Handler runs that panicked.
    pub panicked: u64,
    /// Runs that lost their lease (renewal or acknowledgement refused).
    pub lease_lost: u64,
    /// Runs whose outcome could not be written (Redis down); their entries are claimed again.
    pub unfinished: u64,
}

impl WorkerStats {
    /// The counters now.
    #[must_use]
    pub fn snapshot(&self) -> WorkerCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerCounts {
            received: g(&self.received),
            succeeded: g(&self.succeeded),
            retried: g(&self.retried),
            waited: g(&self.waited),
            parked: g(&self.parked),
            panicked: g(&self.panicked),
            lease_lost: g(&self.lease_lost),
            unfinished: g(&self.unfinished),
        }
    }

    fn bump(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`Worker::run`] reports after a shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The consumer name the worker used.
    pub consumer: String,
    /// Its counters.
    pub counts: WorkerCounts,
    /// Jobs still running at the shutdown deadline, aborted (their entries are claimed by
    /// another worker after the lease).
    pub abandoned: usize,
}

/// A consumer in the queue's group that runs the handlers registered for type names.
///
/// Each process start gets a unique consumer name (prefix, process id, random suffix).
/// Entries are read with `XREADGROUP`, up to `concurrency` at once; each runs in its own
/// task, where the envelope is parsed and the payload decoded, so a bad entry is parked and
/// a panic fails only its job. Successful runs are acknowledged in batches, one script for
/// all the runs that finished while the previous batch was written, each run learning whether
/// its own entry was still its. While jobs run, their leases are renewed; entries of crashed
/// consumers are claimed with `XAUTOCLAIM` once their lease expired; due retries and delayed
/// entries are moved into the stream every poll interval.
pub struct Worker {
    queue: Queue,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<dyn ErasedHandler>>,
    consumer: String,
    stats: Arc<WorkerStats>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue.name())
            .field("consumer", &self.consumer)
            .field("types", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker of `queue` with no handlers yet.
    #[must_use]
    pub fn new(queue: Queue, config: WorkerConfig) -> Self {
        let consumer = format!("{}-{}-{}", config.consumer_prefix, std::process::id(), &unique_id()[..12]);
        Self { queue, config, handlers: HashMap::new(), consumer, stats: Arc::default() }
    }

    /// Registers `handler` for entries whose type name is `type_name` (replacing any
    /// earlier one); entries of unregistered type names are parked as
    /// [`ParkReason::UnknownType`].
    #[must_use]
    pub fn handle(mut self, type_name: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(type_name.into(), Arc::new(handler));
        self
    }

    /// The consumer name.
    #[must_use]
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The live counters (keep the `Arc` to read them while the worker runs).
    #[must_use]
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` resolves, then stops reading and claiming, waits for running
    /// jobs up to the shutdown deadline (aborting the rest), removes its consumer from the
    /// group if it holds no entry, and reports.
    ///
    /// Redis errors while running are logged and retried; they do not end the worker.
    ///
    /// # Errors
    /// A configuration out of range, or Redis failing at the start.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<RunReport, QueueError> {
        self.config.validate()?;
        self.queue.ensure_group().await?;
        let reader_con =
            Queue::manager(self.queue.client(), self.config.block + self.queue.config().response_timeout).await?;
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let acker = AbortOnDrop(tokio::spawn(ack_loop(self.queue.clone(), self.consumer.clone(), acks_rx)));
        let shared = Arc::new(Shared {
            queue: self.queue,
            config: self.config,
            handlers: self.handlers,
            consumer: self.consumer,
            stats: self.stats,
            acks,
            running: Mutex::default(),
            next_run: AtomicU64::new(0),
        });
        // The acks and renewals go on until the last job finished, through the shutdown.
        let renewer = AbortOnDrop(tokio::spawn(renew_loop(shared.clone())));
        tracing::info!(queue = %shared.queue.name(), consumer = %shared.consumer, "worker started");
        let sem = Arc::new(Semaphore::new(shared.config.concurrency));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::channel::<Vec<Delivery>>(8);
        let loops = [
            tokio::spawn(read_loop(shared.clone(), reader_con, sem.clone(), tx.clone(), stop_rx.clone())),
            tokio::spawn(claim_loop(shared.clone(), sem.clone(), tx.clone(), stop_rx.clone())),
            tokio::spawn(promote_loop(shared.clone(), stop_rx)),
        ];
        drop(tx);
        let mut jobs = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                batch = rx.recv() => match batch {
                    Some(batch) => spawn_all(&shared, &mut jobs, batch),
                    None => break,
                },
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
        tracing::info!(queue = %shared.queue.name(), consumer = %shared.consumer, running = jobs.len(), "worker stopping");
        let _ = stop_tx.send(true);
        let deadline = Instant::now() + shared.config.shutdown_deadline;
        // Entries the loops already received are ours: run them too, within the deadline.
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => spawn_all(&shared, &mut jobs, batch),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        for l in &loops {
            l.abort();
        }
        let mut abandoned = 0;
        loop {
            match tokio::time::timeout_at(deadline, jobs.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    abandoned = jobs.len();
                    jobs.shutdown().await;
                    break;
                }
            }
        }
        drop((renewer, acker));
        let keys = shared.queue.keys();
        let removed: Result<i64, _> = scripts::DEL_CONSUMER
            .key(&keys.stream)
            .arg(&shared.queue.config().group)
            .arg(&shared.consumer)
            .invoke_async(&mut shared.queue.con())
            .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "could not remove the consumer from the group");
        }
        let report = RunReport { consumer: shared.consumer.clone(), counts: shared.stats.snapshot(), abandoned };
        tracing::info!(queue = %shared.queue.name(), consumer = %shared.consumer, abandoned, "worker stopped");
        Ok(report)
    }
}

struct Shared {
    queue: Queue,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<dyn ErasedHandler>>,
    consumer: String,
    stats: Arc<WorkerStats>,
    /// To the ack batcher ([`ack_loop`]).
    acks: mpsc::UnboundedSender<AckRequest>,
    /// The jobs whose leases [`renew_loop`] renews, by run number.
    running: Mutex<HashMap<u64, Running>>,
    next_run: AtomicU64,
}

impl Shared {
    fn running(&self) -> MutexGuard<'_, HashMap<u64, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running job, as the renewal loop sees it.
struct Running {
    entry_id: String,
    token: u64,
    lost: Arc<watch::Sender<bool>>,
    /// When its lease was last renewed (or the job started).
    renewed: Instant,
}

/// A job's place in [`Shared::running`], removed when dropped: from then on its lease is no
/// longer renewed.
struct Registration<'a> {
    shared: &'a Shared,
    run: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.running().remove(&self.run);
    }
}

/// A successful run's request to acknowledge its entry; answered with whether this run still
/// owned it (`Ok(false)`: refused), or the error of the script.
struct AckRequest {
    entry_id: String,
    token: u64,
    done: oneshot::Sender<Result<bool, String>>,
}

/// One entry received by this consumer, with its fencing token and its concurrency permit.
struct Delivery {
    entry_id: String,
    fields: RawFields,
    token: u64,
    permit: OwnedSemaphorePermit,
}

fn spawn_all(shared: &Arc<Shared>, jobs: &mut JoinSet<()>, batch: Vec<Delivery>) {
    for d in batch {
        WorkerStats::bump(&shared.stats.received);
        jobs.spawn(run_job(shared.clone(), d));
    }
}

/// Sleeps `d` unless the stop flag rises first; returns whether to stop.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// Up to `max` permits, waiting for the first one; `None` once stopping.
async fn permits(
    sem: &Arc<Semaphore>,
    max: usize,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = tokio::select! {
        p = sem.clone().acquire_owned() => p.ok()?,
        _ = stop.wait_for(|s| *s) => return None,
    };
    let mut out = vec![first];
    while out.len() < max {
        match sem.clone().try_acquire_owned() {
            Ok(p) => out.push(p),
            Err(_) => break,
        }
    }
    Some(out)
}

async fn read_loop(
    shared: Arc<Shared>,
    mut con: redis::aio::ConnectionManager,
    sem: Arc<Semaphore>,
    tx: mpsc::Sender<Vec<Delivery>>,
    mut stop: watch::Receiver<bool>,
) {
    let keys = shared.queue.keys().clone();
    let group = shared.queue.config().group.clone();
    let block_ms = u64::try_from(shared.config.block.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(mut permits) = permits(&sem, shared.config.concurrency, &mut stop).await else {
            return;
        };
        let res: Result<Value, _> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg(&shared.consumer)
            .arg("COUNT")
            .arg(permits.len())
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&keys.stream)
            .arg(">")
            .query_async(&mut con)
            .await;
        let entries = match res.map_err(|e| e.to_string()).and_then(reply::read_group) {
            Ok(entries) => {
                failures = 0;
                entries
            }
            Err(e) => {
                drop(permits);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, queue = %shared.queue.name(), "read failed; retrying");
                if e.contains("NOGROUP") {
                    let _ = shared.queue.ensure_group().await;
                }
                let wait = Duration::from_millis(100u64.saturating_mul(1 << failures.min(5)));
                if pause(&mut stop, wait).await {
                    return;
                }
                continue;
            }
        };
        let batch: Vec<Delivery> = entries
            .into_iter()
            .filter_map(|(entry_id, fields)| {
                let permit = permits.pop()?;
                Some(Delivery { entry_id, fields, token: 1, permit })
            })
            .collect();
        drop(permits);
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return;
        }
    }
}

async fn claim_loop(
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    tx: mpsc::Sender<Vec<Delivery>>,
    mut stop: watch::Receiver<bool>,
) {
    let min_idle = u64::try_from(shared.config.lease.as_millis()).unwrap_or(u64::MAX);
    let mut cursor = "0-0".to_owned();
    loop {
        if pause(&mut stop, shared.config.claim_every).await {
            return;
        }
        loop {
            // Wait in the semaphore's fair queue for one permit (the reader gives its permits
            // back within one blocking read), so claims are not starved by the reader.
            let Some(first) = permits(&sem, 1, &mut stop).await else {
                return;
            };
            let mut permits = first;
            while permits.len() < shared.config.concurrency {
                match sem.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let want = permits.len();
            let res: Result<Value, _> = scripts::CLAIM
                .key(&shared.queue.keys().stream)
                .arg(&shared.queue.config().group)
                .arg(&shared.consumer)
                .arg(min_idle)
                .arg(&cursor)
                .arg(want)
                .invoke_async(&mut shared.queue.con())
                .await;
            let (next, claimed) = match res.map_err(|e| e.to_string()).and_then(parse_claim) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, queue = %shared.queue.name(), "claim failed; retrying later");
                    break;
                }
            };
            let full = claimed.len() >= want;
            let batch: Vec<Delivery> = claimed
                .into_iter()
                .filter_map(|(entry_id, fields, token)| {
                    let permit = permits.pop()?;
                    tracing::info!(entry = %entry_id, token, "claimed an entry whose lease expired");
                    Some(Delivery { entry_id, fields, token, permit })
                })
                .collect();
            drop(permits);
            let wrapped = next == "0-0";
            cursor = next;
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                return;
            }
            if !full || wrapped {
                break;
            }
        }
    }
}

/// A claimed entry: id, fields, delivery count.
type Claimed = (String, RawFields, u64);

fn parse_claim(v: Value) -> Result<(String, Vec<Claimed>), String> {
    let mut parts = reply::into_items(v).ok_or("claim reply is not a list")?.into_iter();
    let (Some(cursor), Some(list)) = (parts.next(), parts.next()) else {
        return Err("claim reply too short".to_owned());
    };
    let cursor = reply::text(&cursor).ok_or("claim cursor is not text")?;
    let mut out = Vec::new();
    for item in reply::into_items(list).ok_or("claimed entries are not a list")? {
        let mut triple = reply::into_items(item).ok_or("claimed entry is not a list")?.into_iter();
        let (Some(id), Some(fields), Some(count)) = (triple.next(), triple.next(), triple.next()) else {
            return Err("claimed entry too short".to_owned());
        };
        let id = reply::text(&id).ok_or("claimed id is not text")?;
        let count = reply::int(&count).and_then(|c| u64::try_from(c).ok()).ok_or("delivery count")?;
        out.push((id, reply::fields(fields)?, count));
    }
    Ok((cursor, out))
}

async fn promote_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        match shared.queue.promote_due().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(moved = n, queue = %shared.queue.name(), "moved due entries into the stream");
            }
            Err(e) => tracing::warn!(error = %e, "moving due entries failed; retrying"),
        }
        if pause(&mut stop, shared.config.poll_delayed_every).await {
            return;
        }
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Aborts the task when dropped: the ack and renewal loops end with [`Worker::run`], however
/// it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Acknowledges successful runs in batches: one fencing script for all the requests waiting
/// (up to [`ACK_BATCH_MAX`]), sent as soon as the previous one returned, so an idle worker's
/// ack goes out at once and a busy worker's acks share round trips. Each request gets its own
/// entry's answer.
async fn ack_loop(queue: Queue, consumer: String, mut rx: mpsc::UnboundedReceiver<AckRequest>) {
    let mut batch = Vec::with_capacity(ACK_BATCH_MAX);
    while rx.recv_many(&mut batch, ACK_BATCH_MAX).await > 0 {
        let mut inv = scripts::ACK_BATCH.prepare_invoke();
        inv.key(&queue.keys().stream).arg(&queue.config().group).arg(&consumer);
        for r in &batch {
            inv.arg(&r.entry_id).arg(r.token);
        }
        let res: Result<Vec<i64>, _> = inv.invoke_async(&mut queue.con()).await;
        let acked = match res {
            Ok(done) if done.len() == batch.len() => Ok(done),
            Ok(_) => Err("ack reply has the wrong length".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        for (i, r) in batch.drain(..).enumerate() {
            let _ = r.done.send(acked.as_ref().map(|done| done[i] == 1).map_err(Clone::clone));
        }
    }
}

/// Renews the leases of all running jobs every `renew_every`, up to [`RENEW_BATCH_MAX`] per
/// fencing script. A job whose renewal is refused (or fails for a whole lease) learns that its
/// lease is lost.
async fn renew_loop(shared: Arc<Shared>) {
    let every = shared.config.renew_every;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due: Vec<(u64, String, u64)> = shared
            .running()
            .iter()
            .filter(|(_, r)| !*r.lost.borrow())
            .map(|(&run, r)| (run, r.entry_id.clone(), r.token))
            .collect();
        for chunk in due.chunks(RENEW_BATCH_MAX) {
            let mut inv = scripts::RENEW_BATCH.prepare_invoke();
            inv.key(&shared.queue.keys().stream).arg(&shared.queue.config().group).arg(&shared.consumer);
            for (_, entry_id, token) in chunk {
                inv.arg(entry_id).arg(*token);
            }
            let res: Result<Vec<i64>, _> = inv.invoke_async(&mut shared.queue.con()).await;
            let renewed = match res {
                Ok(done) if done.len() == chunk.len() => Ok(done),
                Ok(_) => Err("renewal reply has the wrong length".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &renewed {
                tracing::warn!(error = %e, queue = %shared.queue.name(), "lease renewal failed");
            }
            let now = Instant::now();
            let mut running = shared.running();
            for (i, (run, entry_id, token)) in chunk.iter().enumerate() {
                // A job that finished meanwhile is gone; its renewal no longer matters.
                let Some(r) = running.get_mut(run) else { continue };
                let lost = match &renewed {
                    Ok(done) if done[i] == 1 => {
                        r.renewed = now;
                        false
                    }
                    Ok(_) => true,
                    Err(_) => r.renewed.elapsed() >= shared.config.lease,
                };
                if lost {
                    tracing::warn!(entry = %entry_id, token, "lease lost: another consumer owns the entry now");
                    r.lost.send_replace(true);
                }
            }
        }
    }
}

/// How one run ended, for the span and the logs.
#[derive(Clone, Copy)]
enum Outcome {
    Succeeded,
    Retried,
    Waiting,
    Parked(ParkReason),
    LeaseLost,
    Unfinished,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Waiting => "waiting",
            Self::Parked(_) => "parked",
            Self::LeaseLost => "lease_lost",
            Self::Unfinished => "unfinished",
        }
    }
}

async fn run_job(shared: Arc<Shared>, d: Delivery) {
    let Delivery { entry_id, fields, token, permit } = d;
    let _permit = permit;
    let env = match Envelope::from_fields(&fields) {
        Ok(env) => env,
        Err(detail) => {
            let span = tracing::warn_span!("job", queue = %shared.queue.name(), entry = %entry_id, outcome = "parked");
            let _e = span.enter();
            tracing::warn!(reason = %ParkReason::MalformedEntry, %detail, "parking a malformed entry");
            let run = Run { shared: &shared, entry_id: &entry_id, token, fields: &fields };
            let outcome = run.park(ParkReason::MalformedEntry, &detail).await;
            run.count(outcome);
            return;
        }
    };
    let span = tracing::info_span!(
        "job",
        queue = %shared.queue.name(),
        id = %env.id,
        entry = %entry_id,
        r#type = %env.type_name,
        attempt = env.attempt,
        outcome = tracing::field::Empty,
    );
    async {
        let run = Run { shared: &shared, entry_id: &entry_id, token, fields: &fields };
        let outcome = run.execute(env).await;
        run.count(outcome);
        tracing::Span::current().record("outcome", outcome.as_str());
        match outcome {
            Outcome::Succeeded | Outcome::Retried | Outcome::Waiting => {
                tracing::info!(outcome = outcome.as_str(), "job finished");
            }
            Outcome::Parked(reason) => {
                tracing::warn!(outcome = outcome.as_str(), %reason, "job finished");
            }
            Outcome::LeaseLost | Outcome::Unfinished => {
                tracing::warn!(outcome = outcome.as_str(), "job finished");
            }
        }
    }
    .instrument(span)
    .await;
}

/// One run of one entry by this consumer.
struct Run<'a> {
    shared: &'a Shared,
    entry_id: &'a str,
    token: u64,
    fields: &'a RawFields,
}

impl Run<'_> {
    fn count(&self, outcome: Outcome) {
        let s = &self.shared.stats;
        WorkerStats::bump(match outcome {
            Outcome::Succeeded => &s.succeeded,
            Outcome::Retried => &s.retried,
            Outcome::Waiting => &s.waited,
            Outcome::Parked(_) => &s.parked,
            Outcome::LeaseLost => &s.lease_lost,
            Outcome::Unfinished => &s.unfinished,
        });
    }

    async fn execute(&self, env: Envelope) -> Outcome {
        let shared = self.shared;
        if self.token > u64::from(shared.config.max_deliveries) {
            let detail = format!("delivered {} times (maximum {})", self.token, shared.config.max_deliveries);
            return self.park(ParkReason::TooManyDeliveries, &detail).await;
        }
        let Some(handler) = shared.handlers.get(&env.type_name).cloned() else {
            let detail = format!("no handler for type `{}` in this worker", env.type_name);
            return self.park(ParkReason::UnknownType, &detail).await;
        };
        let max_attempts = env.max_attempts.unwrap_or(shared.queue.config().max_attempts).max(1);
        let (lost_tx, lost_rx) = watch::channel(false);
        let lost_tx = Arc::new(lost_tx);
        let lease = Lease { lost: lost_rx, token: self.token };
        let job = JobInfo {
            inner: Arc::new(JobInner {
                envelope: env,
                entry_id: self.entry_id.to_owned(),
                queue: shared.queue.name().to_owned(),
                consumer: shared.consumer.clone(),
                max_attempts,
                lease: lease.clone(),
            }),
        };
        let registration = self.register(lost_tx.clone());
        let grace = shared.config.lost_lease_grace;
        let result = tokio::select! {
            biased;
            // Polled in this task with its panics caught, so a panic fails this job only;
            // dropping it (lost lease, shutdown deadline) aborts the handler.
            r = catch_unwind(handler.call(job.clone())) => Some(r),
            () = async { lease.lost().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("aborting a job that lost its lease and did not stop");
                None
            }
        };
        // The handler is done (or dropped, which aborts it): no more renewals.
        drop(registration);
        if lease.is_lost() {
            return Outcome::LeaseLost;
        }
        let env = job.envelope();
        let outcome = match result {
            None => return Outcome::LeaseLost,
            Some(Ok(Ok(()))) => self.finish("ack", Outcome::Succeeded, || self.ack()).await,
            Some(Ok(Err(JobError::Decode(e)))) => self.park(e.reason, &e.to_string()).await,
            Some(Ok(Err(JobError::Permanent(e)))) => self.park(ParkReason::Rejected, &e.to_string()).await,
            Some(Ok(Err(JobError::Failed(e)))) => self.retry_or_park(env, max_attempts, &e.to_string()).await,
            Some(Ok(Err(JobError::RetryAfter { after, source }))) => {
                tracing::info!(error = %source, wait_ms = millis(after), "job must wait; delayed without counting an attempt");
                self.delay(env.clone(), after, Outcome::Waiting).await
            }
            Some(Err(payload)) => {
                WorkerStats::bump(&shared.stats.panicked);
                let msg = format!("panicked: {}", panic_message(&*payload));
                tracing::warn!(error = %msg, "job panicked");
                self.retry_or_park(env, max_attempts, &msg).await
            }
        };
        if matches!(outcome, Outcome::LeaseLost) {
            lost_tx.send_replace(true);
        }
        outcome
    }

    /// Puts this run in the jobs whose leases [`renew_loop`] renews.
    fn register(&self, lost: Arc<watch::Sender<bool>>) -> Registration<'_> {
        let run = self.shared.next_run.fetch_add(1, Ordering::Relaxed);
        let entry = Running { entry_id: self.entry_id.to_owned(), token: self.token, lost, renewed: Instant::now() };
        self.shared.running().insert(run, entry);
        Registration { shared: self.shared, run }
    }

    /// Acknowledges this run's entry through the ack batcher ([`ack_loop`]).
    async fn ack(&self) -> Result<bool, String> {
        let (done, answer) = oneshot::channel();
        let request = AckRequest { entry_id: self.entry_id.to_owned(), token: self.token, done };
        self.shared.acks.send(request).map_err(|_| "the ack batcher stopped".to_owned())?;
        answer.await.map_err(|_| "the ack batcher stopped".to_owned())?
    }

    async fn retry_or_park(&self, env: &Envelope, max_attempts: u32, error: &str) -> Outcome {
        if env.attempt >= max_attempts {
            let detail = format!("attempt {}/{max_attempts} failed: {error}", env.attempt);
            return self.park(ParkReason::Exhausted, &detail).await;
        }
        let delay = self.shared.config.backoff_for(env.attempt);
        tracing::info!(error = %error, delay_ms = millis(delay), "job failed; retrying");
        self.delay(Envelope { attempt: env.attempt + 1, ..env.clone() }, delay, Outcome::Retried).await
    }

    /// Replaces this run's entry by `next`, due after `delay`, in one script.
    async fn delay(&self, next: Envelope, delay: Duration, ok: Outcome) -> Outcome {
        let member = unique_id();
        let keys = self.shared.queue.keys();
        let mut args: Vec<Vec<u8>> = vec![millis(delay).to_string().into_bytes(), member.clone().into_bytes()];
        for (k, v) in next.to_fields() {
            args.push(k.as_bytes().to_vec());
            args.push(v);
        }
        let extra_keys = [keys.delayed.clone(), format!("{}{member}", keys.delayed_entry_prefix)];
        self.finish("retry", ok, || self.call(&scripts::RETRY, "retry", &extra_keys, &args)).await
    }

    async fn park(&self, reason: ParkReason, detail: &str) -> Outcome {
        let mut args: Vec<Vec<u8>> = [
            ("reason", reason.code().as_bytes().to_vec()),
            ("detail", detail.as_bytes().to_vec()),
            ("source_id", self.entry_id.as_bytes().to_vec()),
            ("parked_at", unix_ms(std::time::SystemTime::now()).to_string().into_bytes()),
            ("consumer", self.shared.consumer.as_bytes().to_vec()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.as_bytes().to_vec(), v])
        .collect();
        for (k, v) in self.fields.iter().take(MAX_PARKED_FIELDS) {
            let mut name = RAW_PREFIX.as_bytes().to_vec();
            name.extend_from_slice(k);
            args.push(name);
            args.push(v.clone());
        }
        tracing::warn!(reason = %reason, detail, "parking entry");
        let keys = [self.shared.queue.keys().parked.clone()];
        self.finish("park", Outcome::Parked(reason), || self.call(&scripts::PARK, "park", &keys, &args)).await
    }

    /// Writes the outcome with `write` (an ownership-checked script), retrying transport errors
    /// a few times.
    async fn finish<F: Future<Output = Result<bool, String>>>(
        &self,
        op: &'static str,
        ok: Outcome,
        write: impl Fn() -> F,
    ) -> Outcome {
        for attempt in 0..4u32 {
            match write().await {
                Ok(true) => return ok,
                Ok(false) => {
                    tracing::warn!(op, "refused: this run no longer owns the entry");
                    return Outcome::LeaseLost;
                }
                Err(e) => {
                    tracing::warn!(error = %e, op, "writing the job outcome failed");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
                }
            }
        }
        Outcome::Unfinished
    }

    /// Runs a finishing script on this run's entry. KEYS: stream, then `extra_keys`. ARGV:
    /// group, consumer, entry id, token, then `args`.
    async fn call(
        &self,
        script: &redis::Script,
        op: &'static str,
        extra_keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<bool, String> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.shared.queue.keys().stream);
        for k in extra_keys {
            inv.key(k);
        }
        inv.arg(&self.shared.queue.config().group).arg(&self.shared.consumer).arg(self.entry_id).arg(self.token);
        for a in args {
            inv.arg(a.as_slice());
        }
        let v: i64 =
            inv.invoke_async(&mut self.shared.queue.con()).await.map_err(|e| QueueError::redis(op)(e).to_string())?;
        Ok(v == 1)
    }
}
