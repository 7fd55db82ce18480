//! The worker's loops: reading new entries, claiming expired ones, promoting due ones,
//! renewing leases and acknowledging successful runs in batches.
//!
//! Over 600 lines on purpose: seven loops of 40 to 120 lines each, over the one `Shared`
//! state, read side by side (a claim and a renewal follow the same fencing rules).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::outcome::run_job;
use super::queues::ReadOrder;
use super::{CancelReason, Shared, WorkerStats};
use crate::backend::{Backend, DoneRun, Entry, Gate, MarkRun, Marked, Passed, Read, Reader, Renewed, Written};
use crate::envelope::RawFields;
use crate::error::{QueueError, chain, failed};
use crate::lane::Lane;
use crate::lane::LaneOrder;

/// At most this many successful runs are acknowledged by one script.
const ACK_BATCH_MAX: usize = 64;

/// An acknowledgement batch smaller than this waits the store's
/// [`ack_gather`](crate::backend::Backend::ack_gather) for more runs to end.
const ACK_GATHER_BELOW: usize = 4;

/// At most this many running jobs' leases are renewed by one script.
const RENEW_BATCH_MAX: usize = 256;

/// Leases are renewed at least this often (a renewal also carries cancellations).
const RENEW_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// A run is marked `running` in its record once it has run this long: a shorter job goes from
/// queued to done directly, which spares the hot path a script per job.
pub(super) const MARK_AFTER: Duration = Duration::from_millis(100);

/// A job at its gate, waiting for the answer of [`gate_loop`]'s batch.
pub(super) struct GateRequest {
    pub(super) gate: Gate,
    pub(super) done: oneshot::Sender<Result<Passed, String>>,
}

/// A successful run's request to acknowledge its entry; answered with what was written, or
/// `None` when the script failed (the ack loop logs why).
pub(super) struct AckRequest {
    pub(super) run: DoneRun,
    pub(super) done: oneshot::Sender<Option<Written>>,
}

/// One entry received by this consumer, with its fencing token and its concurrency permit.
pub(super) struct Delivery {
    /// Its stream in [`Shared::streams`].
    pub(super) stream: usize,
    pub(super) entry_id: String,
    pub(super) fields: RawFields,
    pub(super) token: u64,
    pub(super) permit: OwnedSemaphorePermit,
    /// Keeps the entry in [`Shared::held`] until the run ends.
    pub(super) held: Held,
    /// What its gate answered, when its read passed it through (see
    /// [`Reader::gate_reads`](crate::backend::Reader::gate_reads)).
    pub(super) gated: Option<Passed>,
}

/// An entry's place in [`Shared::held`], removed when dropped.
pub(super) struct Held {
    shared: Arc<Shared>,
    key: (usize, String),
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.held().remove(&self.key);
    }
}

impl Delivery {
    /// A delivery of a read, claimed or reclaimed entry, held by this process from now on;
    /// `None` when this process already holds the entry (a read whose reply came late and a
    /// reconciliation raced for it): one entry never runs twice in one process.
    fn new(
        shared: &Arc<Shared>,
        stream: usize,
        entry_id: String,
        fields: RawFields,
        token: u64,
        permit: OwnedSemaphorePermit,
    ) -> Option<Self> {
        let key = (stream, entry_id.clone());
        if !shared.held().insert(key.clone()) {
            tracing::info!(entry = %entry_id, token, "entry already held by a run of this process; skipped");
            return None;
        }
        let held = Held { shared: shared.clone(), key };
        Some(Self { stream, entry_id, fields, token, permit, held, gated: None })
    }

    /// The delivery with what its read's gate answered.
    fn gated(self, gated: Option<Passed>) -> Self {
        Self { gated, ..self }
    }
}

/// Aborts the task when dropped: the ack and renewal loops end with the worker's run, however
/// it ends.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn spawn_all(shared: &Arc<Shared>, jobs: &mut JoinSet<()>, batch: Vec<Delivery>) {
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
    // A stop wins over a permit freed at the same moment: a stopping worker reads nothing.
    let first = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return None,
        p = sem.clone().acquire_owned() => p.ok()?,
    };
    if *stop.borrow() {
        return None;
    }
    let mut out = vec![first];
    while out.len() < max {
        match sem.clone().try_acquire_owned() {
            Ok(p) => out.push(p),
            Err(_) => break,
        }
    }
    Some(out)
}

/// The back-off after `failures` consecutive failures: 200 ms doubling up to 1.6 s. A failed
/// read costs Redis nothing while it is down, and a short ceiling lets workers resume within
/// about a second and a half of a failover or a restart.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(4)))
}

/// Reads new entries while the worker has free slots: each read takes up to one entry per
/// free slot, queue after queue in the order of [`ReadOrder`], each queue's lanes in the order
/// of its [`LaneOrder`]. A read that finds nothing waits for the next push to any of the
/// queues (or the block time), holding no slot meanwhile.
pub(super) async fn read_loop(
    shared: Arc<Shared>,
    mut readers: Vec<Box<dyn Reader>>,
    mut order: ReadOrder,
    sem: Arc<Semaphore>,
    tx: mpsc::Sender<Vec<Delivery>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut lanes: Vec<LaneOrder> = readers.iter().map(|_| LaneOrder::new(shared.config.lane_shares)).collect();
    // Each queue's partitions, read in turn from a place that moves on by one each read.
    let mut parts: Vec<Vec<usize>> = Vec::new();
    for (q, wq) in shared.queues.iter().enumerate() {
        if parts.len() <= wq.group {
            parts.resize_with(wq.group + 1, Vec::new);
        }
        parts[wq.group].push(q);
    }
    let mut turn = 0usize;
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(mut permits) = permits(&sem, shared.config.concurrency, &mut stop).await else {
            return;
        };
        let mut batch = Vec::new();
        let mut failed = false;
        turn = turn.wrapping_add(1);
        let next = order.next().into_iter().flat_map(|g| {
            let p = &parts[g];
            (0..p.len()).map(move |i| p[(turn + i) % p.len()])
        });
        for q in next {
            if permits.is_empty() {
                break;
            }
            let wq = &shared.queues[q];
            let entries: Vec<(Lane, Entry, Option<Passed>)> =
                match readers[q].read(&shared.consumer, permits.len(), lanes[q].next()).await {
                    Ok(Read::Paused) => {
                        if !wq.paused.swap(true, Ordering::Relaxed) {
                            tracing::info!(queue = %wq.queue.name(), "queue paused: starting nothing new");
                        }
                        continue;
                    }
                    Ok(Read::Entries(entries)) => entries,
                    Err(e) => {
                        failed = true;
                        failed!(&e, queue = %wq.queue.name(), "read failed; retrying");
                        // A read whose reply was lost still delivered its entries to this consumer.
                        shared.reconcile.notify_one();
                        if matches!(e, QueueError::MissingGroup { .. }) {
                            recreate_group(&shared, q).await;
                        }
                        continue;
                    }
                };
            if wq.paused.swap(false, Ordering::Relaxed) {
                tracing::info!(queue = %wq.queue.name(), "queue resumed");
            }
            for (lane, (entry_id, fields), gated) in entries {
                let Some(permit) = permits.pop() else { break };
                let stream = 3 * q + lane.index();
                // An entry this process holds already is skipped with its gate's answer: a slot
                // that answer took expires with the lease.
                batch.extend(Delivery::new(&shared, stream, entry_id, fields, 1, permit).map(|d| d.gated(gated)));
            }
        }
        drop(permits);
        let read_some = !batch.is_empty();
        if read_some && tx.send(batch).await.is_err() {
            return;
        }
        if failed {
            failures = failures.saturating_add(1);
            if pause(&mut stop, backoff(failures)).await {
                return;
            }
            continue;
        }
        failures = 0;
        if !read_some && wait_for_entries(&shared, &mut readers, &mut stop).await {
            return;
        }
    }
}

/// Recreates the group of queue `q` after a read found it missing.
async fn recreate_group(shared: &Shared, q: usize) {
    let queue = &shared.queues[q].queue;
    match queue.store().ensure_group(shared.config.lease).await {
        Ok(Some(moved)) => tracing::warn!(
            moved,
            queue = %queue.name(),
            "the consumer group was gone: recreated, its entries delayed by a lease and queued again"
        ),
        Ok(None) => {}
        Err(e) => failed!(&e, "recreating the consumer group failed"),
    }
}

/// Waits until a push to a queue that is not paused, the block time, or the stop flag;
/// returns whether to stop. With every queue paused it waits the block time, at most a second.
async fn wait_for_entries(shared: &Shared, readers: &mut [Box<dyn Reader>], stop: &mut watch::Receiver<bool>) -> bool {
    let waits: Vec<_> = readers
        .iter_mut()
        .enumerate()
        .filter(|(q, _)| !shared.queues[*q].paused.load(Ordering::Relaxed))
        .map(|(_, r)| Box::pin(r.wait()))
        .collect();
    if waits.is_empty() {
        return pause(stop, shared.config.block.min(Duration::from_secs(1))).await;
    }
    let waited = tokio::select! {
        _ = stop.wait_for(|s| *s) => return true,
        (waited, _, _) = futures_util::future::select_all(waits) => waited,
    };
    if let Err(e) = waited {
        tracing::debug!(error = %chain(&e), "waiting for entries failed");
        return pause(stop, Duration::from_millis(100)).await;
    }
    false
}

pub(super) async fn claim_loop(
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    tx: mpsc::Sender<Vec<Delivery>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursors = vec!["0-0".to_owned(); shared.streams.len()];
    loop {
        let woken = tokio::select! {
            stopped = pause(&mut stop, shared.config.claim_every) => if stopped { return } else { false },
            () = shared.reconcile.notified() => true,
        };
        if woken && pause(&mut stop, shared.config.renew_every).await {
            return;
        }
        for stream in 0..shared.streams.len() {
            if !reconcile(&shared, stream, &sem, &tx, &mut stop).await {
                return;
            }
        }
        for (stream, cursor) in cursors.iter_mut().enumerate() {
            // A paused queue starts nothing, not even the entries of crashed workers.
            if shared.queue_of(stream).paused.load(Ordering::Relaxed) {
                continue;
            }
            if !claim(&shared, stream, cursor, &sem, &tx, &mut stop).await {
                return;
            }
        }
    }
}

/// Claims the entries of `stream` whose lease expired, from `cursor` on, while each page comes
/// back full. Returns `false` once stopping.
async fn claim(
    shared: &Arc<Shared>,
    stream: usize,
    cursor: &mut String,
    sem: &Arc<Semaphore>,
    tx: &mpsc::Sender<Vec<Delivery>>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let min_idle = crate::envelope::millis(shared.config.lease);
    let (store, lane) = (&shared.streams[stream].store, shared.streams[stream].lane);
    loop {
        // Wait in the semaphore's fair queue for one permit (the reader holds its permits only
        // while a read is in flight), so claims are not starved by the reader.
        let Some(mut permits) = permits(sem, shared.config.concurrency, stop).await else {
            return false;
        };
        let want = permits.len();
        let (next, claimed) = match store.claim(lane, &shared.consumer, min_idle, cursor, want).await {
            Ok(r) => r,
            Err(e) => {
                let queue = shared.queue_of(stream).queue.name();
                failed!(&e, %queue, "claim failed; retrying later");
                shared.reconcile.notify_one();
                return true;
            }
        };
        let full = claimed.len() >= want;
        let batch: Vec<Delivery> = claimed
            .into_iter()
            .filter_map(|(entry_id, fields, token)| {
                let permit = permits.pop()?;
                tracing::info!(entry = %entry_id, token, "claimed an entry whose lease expired");
                Delivery::new(shared, stream, entry_id, fields, token, permit)
            })
            .collect();
        drop(permits);
        let wrapped = next == "0-0";
        *cursor = next;
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return false;
        }
        if !full || wrapped {
            return true;
        }
    }
}

/// Runs this consumer's own pending entries of `stream` that no run of this process holds:
/// the entries of a read, claim or start whose reply was lost (they executed on the server all
/// the same). Only entries idle for two renewal intervals are taken, so an entry whose
/// delivery is still on its way is not. Returns `false` once stopping.
async fn reconcile(
    shared: &Arc<Shared>,
    stream: usize,
    sem: &Arc<Semaphore>,
    tx: &mpsc::Sender<Vec<Delivery>>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let (store, lane) = (&shared.streams[stream].store, shared.streams[stream].lane);
    let min_idle = shared.config.renew_every * 2;
    let own = match store.own_pending(lane, &shared.consumer, min_idle, shared.config.concurrency * 4).await {
        Ok(own) => own,
        Err(e) => {
            tracing::debug!(error = %chain(&e), "listing own pending entries failed");
            return true;
        }
    };
    let missing: Vec<String> = {
        let held = shared.held();
        own.into_iter().filter(|id| !held.contains(&(stream, id.clone()))).collect()
    };
    if missing.is_empty() {
        return true;
    }
    let Some(mut permits) = permits(sem, missing.len(), stop).await else {
        return false;
    };
    let ids = &missing[..permits.len().min(missing.len())];
    let claimed = match store.reclaim(lane, &shared.consumer, ids).await {
        Ok(claimed) => claimed,
        Err(e) => {
            failed!(&e, "taking back own entries failed; retrying later");
            shared.reconcile.notify_one();
            return true;
        }
    };
    let queue = shared.queue_of(stream).queue.name();
    tracing::warn!(entries = claimed.len(), %queue, "took back entries delivered to this consumer but never run");
    let batch: Vec<Delivery> = claimed
        .into_iter()
        .filter_map(|(entry_id, fields, token)| Delivery::new(shared, stream, entry_id, fields, token, permits.pop()?))
        .collect();
    drop(permits);
    batch.is_empty() || tx.send(batch).await.is_ok()
}

pub(super) async fn promote_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        // Every partition at once: a round takes one round trip, however many there are.
        let moved = futures_util::future::join_all(shared.queues.iter().map(|wq| wq.queue.promote_partition())).await;
        for (wq, moved) in shared.queues.iter().zip(moved) {
            match moved {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(moved = n, queue = %wq.queue.name(), "moved due entries into the stream");
                }
                Err(e) => failed!(&e, "moving due entries failed; retrying"),
            }
        }
        if pause(&mut stop, shared.config.poll_delayed_every).await {
            return;
        }
    }
}

/// Acknowledges successful runs in batches: one fencing script for all the requests waiting
/// (up to [`ACK_BATCH_MAX`]), sent as soon as the previous one returned, so an idle worker's
/// ack goes out at once and a busy worker's acks share round trips. Each request gets its own
/// entry's answer.
pub(super) async fn ack_loop(
    store: Arc<dyn Backend>,
    lane: Lane,
    consumer: String,
    mut rx: mpsc::UnboundedReceiver<AckRequest>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH_MAX);
    let gather = store.ack_gather();
    while rx.recv_many(&mut batch, ACK_BATCH_MAX).await > 0 {
        // A few runs ending one by one wait for company; a batch already large goes at once.
        if !gather.is_zero() && batch.len() < ACK_GATHER_BELOW {
            tokio::time::sleep(gather).await;
            while batch.len() < ACK_BATCH_MAX {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }
        let runs: Vec<DoneRun> = batch.iter_mut().map(|r| std::mem::take(&mut r.run)).collect();
        let acked = match store.ack(lane, &consumer, &runs).await {
            Ok(done) => Some(done),
            Err(e) => {
                failed!(&e, "acknowledging a batch failed");
                None
            }
        };
        for (i, r) in batch.drain(..).enumerate() {
            let _ = r.done.send(acked.as_ref().map(|done| done[i]));
        }
    }
}

/// Passes jobs through their gates in batches, as [`ack_loop`] acknowledges: one script for
/// all the jobs waiting (up to [`ACK_BATCH_MAX`]), each told its own answer.
pub(super) async fn gate_loop(store: Arc<dyn Backend>, lease: Duration, mut rx: mpsc::UnboundedReceiver<GateRequest>) {
    let mut batch = Vec::with_capacity(ACK_BATCH_MAX);
    while rx.recv_many(&mut batch, ACK_BATCH_MAX).await > 0 {
        let gates: Vec<Gate> = batch.iter_mut().map(|r| std::mem::take(&mut r.gate)).collect();
        let passed = store.gate(&gates, lease).await.map_err(|e| chain(&e));
        for (i, r) in batch.drain(..).enumerate() {
            let _ = r.done.send(passed.as_ref().map(|p| p[i]).map_err(Clone::clone));
        }
    }
}

/// Renews the leases of all running jobs every `renew_every` (at least every second), up to
/// [`RENEW_BATCH_MAX`] per
/// fencing script. A job whose renewal is refused (or fails for a whole lease) learns that its
/// lease is lost.
pub(super) async fn renew_loop(shared: Arc<Shared>) {
    // At least every second, whatever the lease: a renewal also tells a run that it was
    // cancelled, so a cancellation reaches a running job within a second.
    let every = shared.config.renew_every.min(RENEW_AT_LEAST_EVERY);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut mark_tick = tokio::time::interval(MARK_AFTER.min(every));
    mark_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = mark_tick.tick() => {
                mark(&shared).await;
                continue;
            }
        }
        renew_slots(&shared).await;
        let mut due: Vec<(usize, u64, String, u64, String)> = shared
            .running()
            .iter()
            .filter(|(_, r)| !*r.lost.borrow())
            .map(|(&run, r)| (r.stream, run, r.entry_id.clone(), r.token, r.job_id.clone()))
            .collect();
        due.sort_unstable_by_key(|d| d.0);
        // Every stream's renewals at once: one round trip a tick, however many streams.
        let chunks = due.chunk_by(|a, b| a.0 == b.0).flat_map(|same| same.chunks(RENEW_BATCH_MAX));
        futures_util::future::join_all(chunks.map(|chunk| renew(&shared, chunk, every))).await;
    }
}

/// Renews the leases of one stream's runs (up to [`RENEW_BATCH_MAX`]) in one fencing script,
/// and tells each run what came of it.
async fn renew(shared: &Shared, chunk: &[(usize, u64, String, u64, String)], every: Duration) {
    let stream = chunk[0].0;
    let runs: Vec<(&str, u64, &str)> =
        chunk.iter().map(|(_, _, id, token, job)| (id.as_str(), *token, job.as_str())).collect();
    // A renewal counts from when it was sent: Redis may execute it any time after.
    let sent = Instant::now();
    let (store, lane) = (&shared.streams[stream].store, shared.streams[stream].lane);
    let renewed = match tokio::time::timeout(every, store.renew(lane, &shared.consumer, &runs)).await {
        Ok(renewed) => renewed,
        Err(_) => Err(QueueError::protocol("renew leases", crate::ReplyError::NoAnswer { within: every })),
    };
    if let Err(e) = &renewed {
        let queue = shared.queue_of(stream).queue.name();
        failed!(&e, %queue, "lease renewal failed");
    }
    let mut running = shared.running();
    for (i, (_, run, entry_id, token, _)) in chunk.iter().enumerate() {
        // A job that finished meanwhile is gone; its renewal no longer matters.
        let Some(r) = running.get_mut(run) else { continue };
        let lost = match &renewed {
            Ok(answers) if answers[i] != Renewed::Lost => {
                r.renewed = sent;
                if answers[i] == Renewed::CancelRequested && r.cancel.borrow().is_none() {
                    tracing::info!(entry = %entry_id, "job cancelled while running; telling it");
                    r.cancel.send_replace(Some(CancelReason::Requested));
                }
                false
            }
            Ok(_) => {
                tracing::warn!(entry = %entry_id, token, "lease lost: another consumer owns the entry now");
                true
            }
            // Whether a failed renewal loses the lease is the run's own clock's call.
            Err(_) => false,
        };
        if lost {
            r.lost.send_replace(true);
        }
    }
}

/// Extends the slots of their keys that running jobs hold by a lease.
async fn renew_slots(shared: &Shared) {
    let mut held: Vec<(usize, String, String)> = shared
        .running()
        .values()
        .filter(|r| !*r.lost.borrow())
        .filter_map(|r| Some((shared.queue_of(r.stream).group, r.slot.clone()?, r.job_id.clone())))
        .collect();
    // By queue: every partition's slots live on its queue's own keys.
    held.sort_unstable_by_key(|h| h.0);
    for same in held.chunk_by(|a, b| a.0 == b.0) {
        let Some(queue) = shared.queues.iter().find(|wq| wq.group == same[0].0).map(|wq| &wq.queue) else { continue };
        let keys: Vec<(&str, &str)> = same.iter().map(|(_, k, id)| (k.as_str(), id.as_str())).collect();
        for chunk in keys.chunks(RENEW_BATCH_MAX) {
            if let Err(e) = queue.home().renew_slots(chunk, shared.config.lease).await {
                failed!(&e, queue = %queue.name(), "renewing slots failed");
            }
        }
    }
}

/// Every `sweep_every`: re-queues entries no consumer holds below the group's last delivered
/// id (bounded work per tick), forgets ended jobs whose records expired, and removes other
/// consumers that hold nothing and have not read for several leases (crashed or restarted
/// workers).
pub(super) async fn sweep_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    const PER_TICK: usize = 200;
    let mut cursors = vec!["0-0".to_owned(); shared.streams.len()];
    let idle = (shared.config.lease * 4).max(shared.config.block * 10);
    loop {
        if pause(&mut stop, shared.config.sweep_every).await {
            return;
        }
        for (stream, cursor) in cursors.iter_mut().enumerate() {
            let (store, lane) = (&shared.streams[stream].store, shared.streams[stream].lane);
            let queue = shared.queue_of(stream).queue.name();
            match store.sweep(lane, cursor, PER_TICK).await {
                Ok((next, moved)) => {
                    if moved > 0 {
                        tracing::warn!(moved, %queue, %lane, "re-queued entries that no consumer held");
                        shared.stats.orphans_requeued.fetch_add(moved, Ordering::Relaxed);
                    }
                    *cursor = next.unwrap_or_else(|| "0-0".to_owned());
                }
                Err(QueueError::MissingGroup { .. }) => {}
                Err(e) => failed!(&e, %queue, "sweep failed; retrying later"),
            }
            match store.prune_consumers(lane, &shared.consumer, idle).await {
                Ok(0) | Err(QueueError::MissingGroup { .. }) => {}
                Ok(n) => {
                    tracing::info!(removed = n, %queue, %lane, "removed consumers of crashed workers");
                    shared.stats.consumers_pruned.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => failed!(&e, %queue, "pruning consumers failed"),
            }
        }
        for wq in &shared.queues {
            if let Err(e) = wq.queue.store().trim_ended().await {
                failed!(&e, queue = %wq.queue.name(), "trimming ended jobs failed");
            }
        }
    }
}

/// Marks the runs that have run for [`MARK_AFTER`] and are not marked yet as `running` in
/// their records, one fencing script per stream; tells those cancelled meanwhile, and those
/// that lost their entry.
async fn mark(shared: &Shared) {
    let mut due: Vec<(usize, u64, MarkRun)> = shared
        .running()
        .iter()
        .filter(|(_, r)| !r.marked && r.job_id != r.entry_id && r.started.elapsed() >= MARK_AFTER)
        .map(|(&run, r)| {
            let mark = MarkRun {
                entry_id: r.entry_id.clone(),
                token: r.token,
                job_id: r.job_id.clone(),
                attempt: r.attempt,
                started_ms: r.started_ms,
            };
            (r.stream, run, mark)
        })
        .take(RENEW_BATCH_MAX)
        .collect();
    due.sort_unstable_by_key(|d| d.0);
    for same in due.chunk_by(|a, b| a.0 == b.0) {
        let runs: Vec<MarkRun> = same.iter().map(|(_, _, m)| m.clone()).collect();
        let answers =
            match shared.streams[same[0].0].store.mark(shared.streams[same[0].0].lane, &shared.consumer, &runs).await {
                Ok(answers) => answers,
                Err(e) => {
                    tracing::debug!(error = %chain(&e), "marking runs as running failed; trying again");
                    continue;
                }
            };
        let mut running = shared.running();
        for ((_, run, m), answer) in same.iter().zip(answers) {
            let Some(r) = running.get_mut(run) else { continue };
            r.marked = true;
            match answer {
                Marked::Yes => {}
                Marked::CancelRequested => {
                    if r.cancel.borrow().is_none() {
                        tracing::info!(entry = %m.entry_id, "job cancelled as it started; telling it");
                        r.cancel.send_replace(Some(CancelReason::Requested));
                    }
                }
                Marked::NotOwned => {
                    tracing::warn!(entry = %m.entry_id, token = m.token, "lease lost: the entry is not this run's");
                    r.lost.send_replace(true);
                }
            }
        }
    }
}
