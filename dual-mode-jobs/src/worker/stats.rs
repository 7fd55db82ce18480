//! A worker's counters and its final report.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one worker, live.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub(super) received: AtomicU64,
    pub(super) succeeded: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) waited: AtomicU64,
    pub(super) rate_limited: AtomicU64,
    pub(super) parked: AtomicU64,
    pub(super) panicked: AtomicU64,
    pub(super) lease_lost: AtomicU64,
    pub(super) unfinished: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) handed_back: AtomicU64,
    pub(super) orphans_requeued: AtomicU64,
    pub(super) consumers_pruned: AtomicU64,
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
    /// Runs delayed by [`JobError::RetryAfter`](crate::JobError::RetryAfter), without counting an attempt.
    pub waited: u64,
    /// Runs delayed, without counting an attempt, until their rate limits had room (see
    /// [`QueueConfig::rate_limit`](crate::QueueConfig::rate_limit)).
    pub rate_limited: u64,
    /// Entries parked.
    pub parked: u64,
    /// Handler runs that panicked.
    pub panicked: u64,
    /// Runs that lost their lease (renewal or acknowledgement refused).
    pub lease_lost: u64,
    /// Runs whose outcome could not be written (Redis down); their entries are claimed again.
    pub unfinished: u64,
    /// Jobs cancelled (before they started, or while they ran).
    pub cancelled: u64,
    /// Attempts that ran past their time limit (each also counts as retried or parked).
    pub timed_out: u64,
    /// Jobs handed back to the queue, without counting an attempt, at shutdown.
    pub handed_back: u64,
    /// Entries that no consumer held below the group's last delivered id, queued again.
    pub orphans_requeued: u64,
    /// Consumers of other, crashed workers removed from the group.
    pub consumers_pruned: u64,
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
            rate_limited: g(&self.rate_limited),
            parked: g(&self.parked),
            panicked: g(&self.panicked),
            lease_lost: g(&self.lease_lost),
            unfinished: g(&self.unfinished),
            cancelled: g(&self.cancelled),
            timed_out: g(&self.timed_out),
            handed_back: g(&self.handed_back),
            orphans_requeued: g(&self.orphans_requeued),
            consumers_pruned: g(&self.consumers_pruned),
        }
    }

    pub(super) fn bump(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`Worker::run`](super::Worker::run) reports after a shutdown.
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
