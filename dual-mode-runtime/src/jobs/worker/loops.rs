//! The worker's loops: reading new entries, claiming expired ones, promoting due ones,
//! renewing leases and acknowledging successful runs in batches.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::outcome::run_job;
use super::{Shared, WorkerStats};
use crate::jobs::envelope::RawFields;
use crate::jobs::error::QueueError;
use crate::jobs::store::{Reader, Store};

/// At most this many successful runs are acknowledged by one script.
const ACK_BATCH_MAX: usize = 64;

/// At most this many running jobs' leases are renewed by one script.
const RENEW_BATCH_MAX: usize = 256;

/// A successful run's request to acknowledge its entry; answered with whether this run still
/// owned it (`Some(false)`: refused), or `None` when the script failed (the ack loop logs why).
pub(super) struct AckRequest {
    pub(super) entry_id: String,
    pub(super) token: u64,
    pub(super) done: oneshot::Sender<Option<bool>>,
}

/// One entry received by this consumer, with its fencing token and its concurrency permit.
pub(super) struct Delivery {
    pub(super) entry_id: String,
    pub(super) fields: RawFields,
    pub(super) token: u64,
    pub(super) permit: OwnedSemaphorePermit,
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

/// The back-off after `failures` consecutive failures: 200 ms doubling up to 6.4 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
}

pub(super) async fn read_loop(
    shared: Arc<Shared>,
    mut reader: Reader,
    sem: Arc<Semaphore>,
    tx: mpsc::Sender<Vec<Delivery>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(mut permits) = permits(&sem, shared.config.concurrency, &mut stop).await else {
            return;
        };
        let entries = match reader.read(&shared.consumer, permits.len()).await {
            Ok(entries) => {
                failures = 0;
                entries
            }
            Err(e) => {
                drop(permits);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %crate::jobs::error::chain(&e), queue = %shared.queue.name(), "read failed; retrying");
                if matches!(e, QueueError::MissingGroup { .. }) {
                    let _ = shared.queue.ensure_group().await;
                }
                if pause(&mut stop, backoff(failures)).await {
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

pub(super) async fn claim_loop(
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    tx: mpsc::Sender<Vec<Delivery>>,
    mut stop: watch::Receiver<bool>,
) {
    let min_idle = crate::jobs::store::millis(shared.config.lease);
    let mut cursor = "0-0".to_owned();
    loop {
        if pause(&mut stop, shared.config.claim_every).await {
            return;
        }
        loop {
            // Wait in the semaphore's fair queue for one permit (the reader gives its permits
            // back within one blocking read), so claims are not starved by the reader.
            let Some(mut permits) = permits(&sem, 1, &mut stop).await else {
                return;
            };
            while permits.len() < shared.config.concurrency {
                match sem.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let want = permits.len();
            let (next, claimed) = match shared.queue.store().claim(&shared.consumer, min_idle, &cursor, want).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %crate::jobs::error::chain(&e), queue = %shared.queue.name(), "claim failed; retrying later");
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

pub(super) async fn promote_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        match shared.queue.promote_due().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(moved = n, queue = %shared.queue.name(), "moved due entries into the stream");
            }
            Err(e) => tracing::warn!(error = %crate::jobs::error::chain(&e), "moving due entries failed; retrying"),
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
pub(super) async fn ack_loop(store: Store, consumer: String, mut rx: mpsc::UnboundedReceiver<AckRequest>) {
    let mut batch = Vec::with_capacity(ACK_BATCH_MAX);
    while rx.recv_many(&mut batch, ACK_BATCH_MAX).await > 0 {
        let pairs: Vec<(&str, u64)> = batch.iter().map(|r| (r.entry_id.as_str(), r.token)).collect();
        let acked = match store.ack(&consumer, &pairs).await {
            Ok(done) => Some(done),
            Err(e) => {
                tracing::warn!(error = %crate::jobs::error::chain(&e), "acknowledging a batch failed");
                None
            }
        };
        for (i, r) in batch.drain(..).enumerate() {
            let _ = r.done.send(acked.as_ref().map(|done| done[i]));
        }
    }
}

/// Renews the leases of all running jobs every `renew_every`, up to [`RENEW_BATCH_MAX`] per
/// fencing script. A job whose renewal is refused (or fails for a whole lease) learns that its
/// lease is lost.
pub(super) async fn renew_loop(shared: Arc<Shared>) {
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
            let pairs: Vec<(&str, u64)> = chunk.iter().map(|(_, id, token)| (id.as_str(), *token)).collect();
            let renewed = shared.queue.store().renew(&shared.consumer, &pairs).await;
            if let Err(e) = &renewed {
                tracing::warn!(error = %crate::jobs::error::chain(e), queue = %shared.queue.name(), "lease renewal failed");
            }
            let now = Instant::now();
            let mut running = shared.running();
            for (i, (run, entry_id, token)) in chunk.iter().enumerate() {
                // A job that finished meanwhile is gone; its renewal no longer matters.
                let Some(r) = running.get_mut(run) else { continue };
                let lost = match &renewed {
                    Ok(done) if done[i] => {
                        r.renewed = now;
                        false
                    }
                    Ok(_) => {
                        tracing::warn!(entry = %entry_id, token, "lease lost: another consumer owns the entry now");
                        true
                    }
                    Err(_) if r.renewed.elapsed() >= shared.config.lease => {
                        tracing::warn!(entry = %entry_id, token, "lease lost: not renewed for a whole lease");
                        true
                    }
                    Err(_) => false,
                };
                if lost {
                    r.lost.send_replace(true);
                }
            }
        }
    }
}
