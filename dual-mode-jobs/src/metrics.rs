//! The job layer's metrics (feature `metrics`); names, labels and sampling are described in
//! `dual_mode::metrics`. Without the feature every call here is a no-op the compiler removes.

#[cfg(feature = "metrics")]
use std::collections::HashMap;
#[cfg(feature = "metrics")]
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
#[cfg(feature = "metrics")]
use std::time::Duration;

#[cfg(feature = "metrics")]
use metrics::{Counter, Histogram};

#[cfg(feature = "metrics")]
use super::backend::QueueStats;
use super::error::ParkReason;
#[cfg(feature = "metrics")]
use dual_mode_runtime::metrics::{
    JOBS_DEPTH, JOBS_ENDED, JOBS_PARKED, JOBS_PUSHED, JOBS_RUN_SECONDS, JOBS_STARTED, JOBS_TIMED_OUT, JOBS_WAIT_SECONDS,
};

/// The `type` label of entries no handler of the worker knows, and of entries without an
/// envelope.
pub(crate) const UNKNOWN_TYPE: &str = "unknown";

/// When a handler started; nothing without the feature, so that no clock is read.
#[derive(Clone, Copy)]
pub(crate) struct Started(#[cfg(feature = "metrics")] std::time::Instant);

/// The handles of one queue and job type, registered on first use and kept.
#[derive(Clone)]
pub(crate) struct JobMetrics {
    #[cfg(feature = "metrics")]
    handles: Arc<Handles>,
}

#[cfg(feature = "metrics")]
struct Handles {
    queue: String,
    type_name: String,
    pushed: Counter,
    started: Counter,
    succeeded: Counter,
    timed_out: Counter,
    run: Histogram,
    wait: Histogram,
}

/// Handles by queue, then by type.
#[cfg(feature = "metrics")]
type ByQueue = HashMap<String, HashMap<String, Arc<Handles>>>;

#[cfg(feature = "metrics")]
static HANDLES: OnceLock<RwLock<ByQueue>> = OnceLock::new();

#[cfg_attr(
    not(feature = "metrics"),
    allow(unused_variables, clippy::unused_self, reason = "what is recorded is read with the feature only")
)]
impl JobMetrics {
    /// The handles of jobs of `type_name` in `queue`.
    pub(crate) fn of(queue: &str, type_name: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let all = HANDLES.get_or_init(RwLock::default);
            let found =
                all.read().unwrap_or_else(PoisonError::into_inner).get(queue).and_then(|t| t.get(type_name)).cloned();
            let handles = match found {
                Some(handles) => handles,
                None => {
                    let new = Arc::new(Handles::register(queue, type_name));
                    let mut all = all.write().unwrap_or_else(PoisonError::into_inner);
                    let by_type = all.entry(queue.to_owned()).or_default();
                    by_type.entry(type_name.to_owned()).or_insert(new).clone()
                }
            };
            Self { handles }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    /// `n` jobs were added by a push.
    pub(crate) fn pushed(&self, n: usize) {
        #[cfg(feature = "metrics")]
        self.handles.pushed.increment(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// An attempt's handler starts now; the first attempt records how long it waited since
    /// its push. Give what it returns to [`ran`](Self::ran) when the handler is done.
    pub(crate) fn started(&self, attempt: u32, enqueued_at_ms: u64) -> Started {
        #[cfg(feature = "metrics")]
        {
            self.handles.started.increment(1);
            if attempt == 1 {
                let now_ms = super::envelope::unix_ms(std::time::SystemTime::now());
                self.handles.wait.record(Duration::from_millis(now_ms.saturating_sub(enqueued_at_ms)));
            }
            Started(std::time::Instant::now())
        }
        #[cfg(not(feature = "metrics"))]
        Started()
    }

    /// The handler that [`started`](Self::started) is done (it returned or was stopped).
    pub(crate) fn ran(&self, started: Started) {
        #[cfg(feature = "metrics")]
        self.handles.run.record(started.0.elapsed());
    }

    /// An attempt was stopped at its time limit.
    pub(crate) fn timed_out(&self) {
        #[cfg(feature = "metrics")]
        self.handles.timed_out.increment(1);
    }

    /// A run ended with `outcome` (parked for `reason`, when parked).
    pub(crate) fn ended(&self, outcome: &'static str, reason: Option<ParkReason>) {
        #[cfg(feature = "metrics")]
        {
            let h = &self.handles;
            if outcome == "succeeded" {
                h.succeeded.increment(1);
                return;
            }
            // The paths other than success write a script each and log: a registration
            // here costs nothing in comparison.
            let (queue, type_name) = (h.queue.clone(), h.type_name.clone());
            metrics::counter!(JOBS_ENDED, "queue" => queue.clone(), "type" => type_name.clone(), "outcome" => outcome)
                .increment(1);
            if let Some(reason) = reason {
                metrics::counter!(JOBS_PARKED, "queue" => queue, "type" => type_name, "reason" => reason.code())
                    .increment(1);
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Handles {
    fn register(queue: &str, type_name: &str) -> Self {
        let labels = [("queue", queue.to_owned()), ("type", type_name.to_owned())];
        Self {
            queue: queue.to_owned(),
            type_name: type_name.to_owned(),
            pushed: metrics::counter!(JOBS_PUSHED, &labels[..]),
            started: metrics::counter!(JOBS_STARTED, &labels[..]),
            succeeded: metrics::counter!(
                JOBS_ENDED, "queue" => queue.to_owned(), "type" => type_name.to_owned(), "outcome" => "succeeded"
            ),
            timed_out: metrics::counter!(JOBS_TIMED_OUT, &labels[..]),
            run: metrics::histogram!(JOBS_RUN_SECONDS, &labels[..]),
            wait: metrics::histogram!(JOBS_WAIT_SECONDS, &labels[..]),
        }
    }
}

/// Sets `queue`'s depth gauges from `stats`.
#[cfg(feature = "metrics")]
pub(crate) fn depth(queue: &str, stats: &QueueStats) {
    let ready = stats.length.saturating_sub(stats.pending);
    for (state, value) in
        [("ready", ready), ("running", stats.pending), ("delayed", stats.delayed), ("parked", stats.parked)]
    {
        // Exact up to 2^53 entries, far beyond what a stream holds.
        #[expect(clippy::cast_precision_loss, reason = "a count of entries stays below 2^53")]
        let value = value as f64;
        metrics::gauge!(JOBS_DEPTH, "queue" => queue.to_owned(), "state" => state).set(value);
    }
}
