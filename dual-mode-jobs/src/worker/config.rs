//! Worker settings and retry backoff.

use std::time::Duration;

use crate::envelope::random_u64;
use crate::error::QueueError;

/// Settings of a worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Jobs run at once (at least 1).
    pub concurrency: usize,
    /// A running job's entry whose lease was not renewed for this long may be claimed by
    /// another worker (it is then considered crashed).
    pub lease: Duration,
    /// How often the leases of running jobs are renewed (well under `lease`; at least every
    /// second, since a renewal also tells a run that it was cancelled); one script renews all
    /// of a worker's running jobs.
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
    /// After a running job is cancelled ([`Queue::cancel`](crate::Queue::cancel)), how
    /// long it may go on before it is aborted.
    pub cancel_grace: Duration,
    /// How often the worker looks for entries that no consumer holds below the group's last
    /// delivered id (left by an operator's `XGROUP DELCONSUMER`), and for consumers of
    /// crashed workers that hold nothing.
    pub sweep_every: Duration,
    /// An entry delivered more often than this is parked as
    /// [`ParkReason::TooManyDeliveries`](crate::ParkReason::TooManyDeliveries) (it kills the workers that run it).
    pub max_deliveries: u32,
    /// The start of the consumer name; the process id and a random suffix follow.
    pub consumer_prefix: String,
    /// The lower lanes' shares of reads, `(normal_every, low_every)`: every `normal_every`-th
    /// read of a queue starts at its normal lane and every `low_every`-th at its low lane
    /// (each at least 2); the other reads start at the high lane. See
    /// [`lane_shares`](Self::lane_shares).
    pub lane_shares: (u32, u32),
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
            cancel_grace: Duration::from_secs(5),
            sweep_every: Duration::from_secs(30),
            max_deliveries: 20,
            consumer_prefix: host,
            lane_shares: (4, 20),
        }
    }

    /// Sets the concurrency.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the lease, renewal every third of it, claims every half of it, and the grace
    /// after a lost lease to an eighth of it (shorter than the [margin](Self::lease_margin)).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.renew_every = lease / 3;
        self.claim_every = lease / 2;
        self.lost_lease_grace = lease / 8;
        self
    }

    /// A quarter of the lease. A run whose last successful renewal was *sent* more than
    /// `lease - margin` ago is lost, by this worker's own clock, whatever Redis answers later:
    /// it is told at once ([`Lease::lost`](super::Lease::lost)) and aborted after
    /// `lost_lease_grace`, which must be shorter than the margin. Another worker can claim the
    /// entry only once it was idle for the whole lease, counted from the server's execution of
    /// that renewal, which happened after it was sent: so while both workers' clocks run at the
    /// same rate, the two runs do not overlap.
    #[must_use]
    pub fn lease_margin(&self) -> Duration {
        self.lease / 4
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

    /// Sets the grace after a cancellation.
    #[must_use]
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Sets the sweep interval.
    #[must_use]
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
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

    /// The lower lanes' shares of reads, so that a backlog in the high lane cannot starve
    /// them: every `normal_every`-th read of a queue starts at the normal lane, every
    /// `low_every`-th at the low lane (which wins when both fall on one read), and the others
    /// at the high lane; a read takes one entry per free slot, from the lane it starts at and
    /// then from the others in priority order. With the default `(4, 20)`, while all three
    /// lanes have a backlog, the normal lane leads at least a fifth of the reads and the low
    /// lane a twentieth; an empty lane costs nothing, its share goes to the others.
    ///
    /// ```
    /// use dual_mode_jobs::WorkerConfig;
    /// // A tenth of the reads start at the normal lane, a fiftieth at the low lane.
    /// let config = WorkerConfig::new().lane_shares(10, 50);
    /// assert_eq!(config.lane_shares, (10, 50));
    /// ```
    #[must_use]
    pub fn lane_shares(mut self, normal_every: u32, low_every: u32) -> Self {
        self.lane_shares = (normal_every, low_every);
        self
    }

    pub(super) fn validate(&self) -> Result<(), QueueError> {
        let bad = |what: &str| Err(QueueError::Config(what.to_owned()));
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.lease.is_zero() || self.renew_every.is_zero() {
            return bad("lease and renew_every must be non-zero");
        }
        let usable = self.lease.saturating_sub(self.lease_margin());
        if self.renew_every.saturating_mul(2) > usable {
            return Err(QueueError::Config(format!(
                "renew_every ({:?}) must fit twice in the lease less its margin ({usable:?}), so one lost renewal does not lose the lease",
                self.renew_every
            )));
        }
        if self.lost_lease_grace >= self.lease_margin() {
            return Err(QueueError::Config(format!(
                "lost_lease_grace ({:?}) must be shorter than the lease margin ({:?}, a quarter of the lease), or a run that lost its lease could overlap the next one",
                self.lost_lease_grace,
                self.lease_margin()
            )));
        }
        if self.claim_every.is_zero() || self.poll_delayed_every.is_zero() || self.sweep_every.is_zero() {
            return bad("claim_every, poll_delayed_every and sweep_every must be non-zero");
        }
        if self.block.is_zero() {
            return bad("block must be non-zero (zero blocks forever in Redis)");
        }
        if self.lane_shares.0 < 2 || self.lane_shares.1 < 2 {
            return Err(QueueError::Config(format!(
                "lane_shares {:?} must be at least 2 each (1 would put a lower lane before the high lane on every read)",
                self.lane_shares
            )));
        }
        Ok(())
    }
}
