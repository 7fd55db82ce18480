//! The worker: a consumer in the queue's group that runs handlers, one task per job.
//!
//! Its parts, along their seams: [`config`] (settings and backoff), [`job`] (the job as its
//! handler sees it), [`handler`] and [`service`] (what runs), `loops` (reading, claiming,
//! promoting, renewing and acknowledging), `outcome` (what one run writes back) and [`stats`].

mod config;
mod handle;
mod handler;
mod loops;
mod outcome;
mod queues;
mod service;
mod stats;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use crate::job::{CancelReason, Job, JobInfo, Lease};
pub use config::WorkerConfig;
pub use handle::WorkerHandle;
pub use handler::{Handler, HandlerFn, Typed, handler_fn, typed};
pub use queues::Queues;
pub use service::{Clients, ServiceHandler, decode_spec};
pub use stats::{RunReport, WorkerCounts, WorkerStats};

use super::backend::Backend;
use super::envelope::random_u64;
use super::error::QueueError;
use super::lane::Lane;
use super::queue::Queue;
use dual_mode_runtime::Spec;
use handler::ErasedHandler;
use loops::{AbortOnDrop, AckRequest, Delivery, GateRequest};

/// A consumer in its queues' groups that runs the handlers registered for type names.
///
/// A worker reads one queue, or several ([`Queues`]: in strict order or by weight) with one
/// concurrency budget; of each queue it reads the high lane first (see [`Lane`]).
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
    queues: Queues,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<dyn ErasedHandler>>,
    consumer: String,
    stats: Arc<WorkerStats>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.queues.names().collect::<Vec<_>>())
            .field("consumer", &self.consumer)
            .field("types", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker of `queues` (a [`Queue`], or several as [`Queues`]) with no handlers yet.
    #[must_use]
    pub fn new(queues: impl Into<Queues>, config: WorkerConfig) -> Self {
        let suffix = random_u64() & 0xffff_ffff_ffff;
        let consumer = format!("{}-{}-{suffix:012x}", config.consumer_prefix, std::process::id());
        Self { queues: queues.into(), config, handlers: HashMap::new(), consumer, stats: Arc::default() }
    }

    /// Registers `handler` for entries whose type name is `type_name` (replacing any
    /// earlier one); entries of unregistered type names are parked as
    /// [`ParkReason::UnknownType`](crate::ParkReason::UnknownType).
    #[must_use]
    pub fn handle(mut self, type_name: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(type_name.into(), Arc::new(handler));
        self
    }

    /// Registers the service `S` under its spec type's name: each job decodes an
    /// `S::Spec`, enters it with `clients`, runs [`Job::run`] and exits.
    #[must_use]
    pub fn service<S: Job>(self, clients: Clients) -> Self {
        self.handle(<S::Spec as Spec>::NAME, ServiceHandler::<S>::new(clients))
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
        self.queues.validate()?;
        let names = self.queues.names().collect::<Vec<_>>().join(",");
        let mut readers = Vec::new();
        for (queue, _) in &self.queues.list {
            // The partitions of a queue at once: a round trip or two each, not one after another.
            let (lease, block, timeout) = (self.config.lease, self.config.block, queue.config().response_timeout);
            let mut opened = queue
                .on_each(|store| async move {
                    store.ensure_group(lease).await?;
                    store.reader(block, timeout).await
                })
                .await?;
            // Where a reader can, its reads pass the jobs through their gates too, saving each
            // job at a gate a round trip between its read and its start.
            if let Some(rules) = crate::backend::GateRules::of(queue.config(), lease) {
                for reader in &mut opened {
                    reader.gate_reads(&rules);
                }
            }
            readers.extend(opened);
        }
        let order = queues::ReadOrder::new(&self.queues);
        let (queues, streams, batchers) = batchers(self.queues, &self.consumer, self.config.lease);
        let concurrency = self.config.concurrency;
        let shared = Arc::new(Shared {
            queues,
            streams,
            config: self.config,
            handlers: self.handlers,
            consumer: self.consumer,
            stats: self.stats,
            running: Mutex::default(),
            next_run: AtomicU64::new(0),
            stopping: watch::Sender::new(None),
            writing: Arc::new(Semaphore::new(concurrency)),
            held: Mutex::default(),
            reconcile: tokio::sync::Notify::new(),
        });
        // The acks and renewals go on until the last job finished, through the shutdown.
        let renewer = AbortOnDrop(tokio::spawn(loops::renew_loop(shared.clone())));
        tracing::info!(queues = %names, consumer = %shared.consumer, "worker started");
        service::warn_missing_secrets(&shared.handlers);
        let sem = Arc::new(Semaphore::new(shared.config.concurrency));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::channel::<Vec<Delivery>>(8);
        let loops = [
            tokio::spawn(loops::read_loop(shared.clone(), readers, order, sem.clone(), tx.clone(), stop_rx.clone())),
            tokio::spawn(loops::claim_loop(shared.clone(), sem.clone(), tx.clone(), stop_rx.clone())),
            tokio::spawn(loops::promote_loop(shared.clone(), stop_rx.clone())),
            tokio::spawn(loops::sweep_loop(shared.clone(), stop_rx)),
        ];
        drop(tx);
        let mut jobs = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                batch = rx.recv() => match batch {
                    Some(batch) => loops::spawn_all(&shared, &mut jobs, batch),
                    None => break,
                },
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            }
        }
        tracing::info!(queues = %names, consumer = %shared.consumer, running = jobs.len(), "worker stopping");
        let _ = stop_tx.send(true);
        let deadline = Instant::now() + shared.config.shutdown_deadline;
        // Running jobs are told now; entries the loops already received are handed back.
        shared.stopping.send_replace(Some(deadline));
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => loops::spawn_all(&shared, &mut jobs, batch),
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
        drop((renewer, batchers));
        for source in &shared.streams {
            if let Err(e) = source.store.remove_consumer_if_idle(source.lane, &shared.consumer).await {
                tracing::warn!(error = %super::error::chain(&e), "could not remove the consumer from the group");
            }
        }
        let report = RunReport { consumer: shared.consumer.clone(), counts: shared.stats.snapshot(), abandoned };
        tracing::info!(queues = %names, consumer = %shared.consumer, abandoned, "worker stopped");
        Ok(report)
    }
}

/// The partitions of the worker's queues and their lanes' streams, with their batchers
/// running: acks per stream, gates per queue.
fn batchers(queues: Queues, consumer: &str, lease: Duration) -> (Vec<WorkerQueue>, Vec<Source>, Vec<AbortOnDrop>) {
    let mut batchers = Vec::new();
    let mut parts = Vec::new();
    let mut streams = Vec::new();
    for (group, (queue, _)) in queues.list.into_iter().enumerate() {
        let (gates, gates_rx) = mpsc::unbounded_channel();
        batchers.push(AbortOnDrop(tokio::spawn(loops::gate_loop(queue.home_arc(), lease, gates_rx))));
        for p in 0..queue.partitions() {
            let queue = queue.partition(p);
            for lane in Lane::ALL {
                let store = queue.part_arc(p);
                let (acks, acks_rx) = mpsc::unbounded_channel();
                let ack = loops::ack_loop(store.clone(), lane, consumer.to_owned(), acks_rx);
                batchers.push(AbortOnDrop(tokio::spawn(ack)));
                streams.push(Source { queue: parts.len(), store, lane, acks });
            }
            parts.push(WorkerQueue { queue, group, gates: gates.clone(), paused: AtomicBool::new(false) });
        }
    }
    (parts, streams, batchers)
}

/// One partition of one of the worker's queues.
struct WorkerQueue {
    /// A handle on the partition.
    queue: Queue,
    /// Its queue's place in the worker's [`Queues`].
    group: usize,
    /// Jobs at their gates (rate limits, key concurrency), checked in batches.
    gates: mpsc::UnboundedSender<GateRequest>,
    /// Whether the last read found the queue paused (its entries are not claimed either).
    paused: AtomicBool,
}

/// One stream the worker reads: a lane of one of its queues.
struct Source {
    /// Its queue's place in [`Shared::queues`].
    queue: usize,
    /// The store of its partition.
    store: Arc<dyn Backend>,
    /// Its lane.
    lane: Lane,
    /// To its ack batcher ([`loops::ack_loop`]).
    acks: mpsc::UnboundedSender<AckRequest>,
}

/// What the worker's loops and job tasks share.
struct Shared {
    /// The partitions of the queues, queue after queue.
    queues: Vec<WorkerQueue>,
    /// The lanes of the partitions: stream `3 * q + lane` is lane `lane` of partition `q`.
    streams: Vec<Source>,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<dyn ErasedHandler>>,
    consumer: String,
    stats: Arc<WorkerStats>,
    /// The jobs whose leases [`loops::renew_loop`] renews, by run number.
    running: Mutex<HashMap<u64, Running>>,
    next_run: AtomicU64,
    /// The shutdown deadline, once the worker is stopping.
    stopping: watch::Sender<Option<Instant>>,
    /// Slots of runs whose handler is done and whose outcome is being written.
    writing: Arc<Semaphore>,
    /// The entries this process holds (stream, entry id), from delivery until their run ended.
    held: Mutex<HashSet<(usize, String)>>,
    /// Wakes the claim loop to reconcile this consumer's pending entries with `held` (after a
    /// read, claim or start whose reply may have been lost).
    reconcile: tokio::sync::Notify,
}

impl Shared {
    /// The queue of stream `stream`.
    fn queue_of(&self, stream: usize) -> &WorkerQueue {
        &self.queues[self.streams[stream].queue]
    }

    fn held(&self) -> MutexGuard<'_, HashSet<(usize, String)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn running(&self) -> MutexGuard<'_, HashMap<u64, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running job, as the renewal loop sees it.
struct Running {
    /// Its entry's stream in [`Shared::streams`].
    stream: usize,
    entry_id: String,
    token: u64,
    /// The job id (the entry id for an entry without one: it has no record).
    job_id: String,
    /// The attempt it runs.
    attempt: u32,
    /// When it started, on this worker's clock and in ms since the epoch.
    started: Instant,
    started_ms: u64,
    /// Whether its record says `running` (see [`loops::MARK_AFTER`]).
    marked: bool,
    lost: Arc<watch::Sender<bool>>,
    cancel: Arc<watch::Sender<Option<CancelReason>>>,
    /// When its lease was last renewed (or the job started).
    renewed: Instant,
    /// The rate key whose slot it holds, when the key has a concurrency.
    slot: Option<String>,
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
