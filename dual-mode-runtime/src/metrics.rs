//! Metrics of guards and jobs through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`, off by default): install any exporter's recorder (Prometheus,
//! OpenTelemetry, ...) and these appear in it.
//!
//! Install the recorder before the first guard is entered and the first job pushed or run:
//! each series' handle is registered once, on first use, and kept, so that recording a job
//! costs a few atomic operations and no allocation. A handle registered before any recorder
//! was installed records nothing (as with every `metrics` handle).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `dual_mode_jobs_pushed_total` | counter | `queue`, `type` | jobs added by `Queue`'s pushes and schedule ticks (a duplicate of a unique job, or a tick another scheduler enqueued, adds none) |
//! | `dual_mode_jobs_started_total` | counter | `queue`, `type` | attempts whose handler was started |
//! | `dual_mode_jobs_ended_total` | counter | `queue`, `type`, `outcome` | runs by how they ended: `succeeded`, `retried`, `parked`, `cancelled`, `waiting` (a handler's `RetryAfter`), `rate_limited`, `handed_back` (shutdown), `lease_lost`, `unfinished` (the outcome could not be written); a queued job that `Queue::cancel` removed never ran and is not counted |
//! | `dual_mode_jobs_parked_total` | counter | `queue`, `type`, `reason` | parked entries by `ParkReason` code (`exhausted`, `rejected`, `not_json`, ...) |
//! | `dual_mode_jobs_timed_out_total` | counter | `queue`, `type` | attempts stopped at their time limit (each also ends `retried` or `parked`) |
//! | `dual_mode_jobs_run_seconds` | histogram | `queue`, `type` | how long handlers ran, each attempt |
//! | `dual_mode_jobs_wait_seconds` | histogram | `queue`, `type` | from the push to the first attempt's start (a delayed push's delay included) |
//! | `dual_mode_jobs_depth` | gauge | `queue`, `state` | entries `ready` (in the stream, not delivered), `running` (delivered, not acknowledged), `delayed` (delays and retries) and `parked`, as of the last `record_depth` |
//! | `dual_mode_guard_entered_total` | counter | `service` | guards entered |
//! | `dual_mode_guard_enter_failed_total` | counter | `service` | enters that failed (what they had opened was closed) |
//! | `dual_mode_guard_exited_total` | counter | `service` | guards exited with `exit()` (and so by `run`) |
//! | `dual_mode_guard_dropped_total` | counter | `service` | guards dropped without `exit()` while holding clients they opened (closed in a background task) |
//! | `dual_mode_guard_clients_opened_total` | counter | `service`, `resource` | temporary clients opened by guards |
//! | `dual_mode_guard_clients_closed_total` | counter | `service`, `resource` | closes run, failed ones included |
//! | `dual_mode_guard_close_failures_total` | counter | `service`, `resource` | closes that failed or panicked |
//!
//! `type` is the job's type name (for a service, its spec type's name); entries of a type the
//! worker has no handler for, and entries without an envelope, count under `type="unknown"`,
//! so a producer's mistake cannot add series without bound. `service` is the service type's
//! name (for a nested service, its own), `resource` the field's type as written.
//!
//! Queue depth is a property of the queue in its store, not of one worker: it is sampled when
//! someone looks, by the job layer's `record_depth` (`dual_mode::metrics::record_depth`), which
//! an exporter's scrape handler calls before rendering.

#[cfg(feature = "metrics")]
pub use names::*;

/// The metric names, as in the [module docs](self). Without the feature only the guard's are
/// used (by calls that do nothing).
#[cfg_attr(not(feature = "metrics"), allow(dead_code, reason = "exported with the feature"))]
mod names {
    /// Jobs added by pushes.
    pub const JOBS_PUSHED: &str = "dual_mode_jobs_pushed_total";
    /// Attempts whose handler was started.
    pub const JOBS_STARTED: &str = "dual_mode_jobs_started_total";
    /// Runs by outcome.
    pub const JOBS_ENDED: &str = "dual_mode_jobs_ended_total";
    /// Parked entries by reason.
    pub const JOBS_PARKED: &str = "dual_mode_jobs_parked_total";
    /// Attempts stopped at their time limit.
    pub const JOBS_TIMED_OUT: &str = "dual_mode_jobs_timed_out_total";
    /// Handler run time, in seconds.
    pub const JOBS_RUN_SECONDS: &str = "dual_mode_jobs_run_seconds";
    /// Queue wait before the first attempt, in seconds.
    pub const JOBS_WAIT_SECONDS: &str = "dual_mode_jobs_wait_seconds";
    /// Entries by state.
    pub const JOBS_DEPTH: &str = "dual_mode_jobs_depth";
    /// Guards entered.
    pub const GUARD_ENTERED: &str = "dual_mode_guard_entered_total";
    /// Enters that failed.
    pub const GUARD_ENTER_FAILED: &str = "dual_mode_guard_enter_failed_total";
    /// Guards exited.
    pub const GUARD_EXITED: &str = "dual_mode_guard_exited_total";
    /// Guards dropped without exit while holding clients.
    pub const GUARD_DROPPED: &str = "dual_mode_guard_dropped_total";
    /// Temporary clients opened.
    pub const GUARD_CLIENTS_OPENED: &str = "dual_mode_guard_clients_opened_total";
    /// Closes run.
    pub const GUARD_CLIENTS_CLOSED: &str = "dual_mode_guard_clients_closed_total";
    /// Closes that failed.
    pub const GUARD_CLOSE_FAILURES: &str = "dual_mode_guard_close_failures_total";
}

/// Describes every metric of this crate (help text and unit) to the installed recorder, so
/// that an exporter can print them (Prometheus: `# HELP`). Call it once, after installing
/// the recorder.
#[cfg(feature = "metrics")]
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(JOBS_PUSHED, "Jobs added by pushes");
    describe_counter!(JOBS_STARTED, "Attempts whose handler was started");
    describe_counter!(JOBS_ENDED, "Runs by how they ended");
    describe_counter!(JOBS_PARKED, "Parked entries by reason");
    describe_counter!(JOBS_TIMED_OUT, "Attempts stopped at their time limit");
    describe_histogram!(JOBS_RUN_SECONDS, Unit::Seconds, "How long handlers ran, each attempt");
    describe_histogram!(JOBS_WAIT_SECONDS, Unit::Seconds, "From the push to the first attempt's start");
    describe_gauge!(JOBS_DEPTH, "Entries by state, as of the last sample");
    describe_counter!(GUARD_ENTERED, "Guards entered");
    describe_counter!(GUARD_ENTER_FAILED, "Guard enters that failed");
    describe_counter!(GUARD_EXITED, "Guards exited");
    describe_counter!(GUARD_DROPPED, "Guards dropped without exit() while holding clients");
    describe_counter!(GUARD_CLIENTS_OPENED, "Temporary clients opened by guards");
    describe_counter!(GUARD_CLIENTS_CLOSED, "Closes of temporary clients run");
    describe_counter!(GUARD_CLOSE_FAILURES, "Closes of temporary clients that failed");
}

/// The guard's counters, registered once per thread and kept by the addresses of the metric
/// name, service and resource (all `&'static str`s): an event is a thread-local look-up with
/// no lock and no hashing of text, so a guard entered with everything injected stays cheap.
#[cfg(feature = "metrics")]
mod cache {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::{BuildHasherDefault, Hasher};

    use metrics::Counter;

    /// Address and length of the name, the service and the resource.
    type Slot = (usize, usize, usize, usize, usize);

    /// One multiply per word, as rustc's `FxHasher`: the keys are addresses, not input.
    #[derive(Default)]
    struct AddressHasher(u64);

    impl Hasher for AddressHasher {
        fn finish(&self) -> u64 {
            self.0
        }

        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.write_u64(u64::from(b));
            }
        }

        fn write_u64(&mut self, n: u64) {
            self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
        }

        fn write_usize(&mut self, n: usize) {
            self.write_u64(n as u64);
        }
    }

    thread_local! {
        static COUNTERS: RefCell<HashMap<Slot, Counter, BuildHasherDefault<AddressHasher>>> =
            RefCell::new(HashMap::default());
    }

    /// Adds one to `name{service, resource}` (`resource` left out when `None`).
    pub(super) fn increment(name: &'static str, service: &'static str, resource: Option<&'static str>) {
        let at = |s: &'static str| s.as_ptr().addr();
        let r = resource.unwrap_or_default();
        let slot = (at(name), at(service), service.len(), at(r), r.len());
        // A guard dropped while its thread's locals are torn down is not counted.
        let _ = COUNTERS.try_with(|counters| {
            counters
                .borrow_mut()
                .entry(slot)
                .or_insert_with(|| match resource {
                    Some(resource) => metrics::counter!(name, "service" => service, "resource" => resource),
                    None => metrics::counter!(name, "service" => service),
                })
                .increment(1);
        });
    }
}

/// The guard's events; each is a no-op without the `metrics` feature.
pub(crate) mod guard {
    use super::names::{
        GUARD_CLIENTS_CLOSED, GUARD_CLIENTS_OPENED, GUARD_CLOSE_FAILURES, GUARD_DROPPED, GUARD_ENTER_FAILED,
        GUARD_ENTERED, GUARD_EXITED,
    };
    use crate::Site;

    #[cfg(feature = "metrics")]
    use super::cache::increment;

    /// Without the `metrics` feature: nothing, inlined away.
    #[cfg(not(feature = "metrics"))]
    #[inline]
    fn increment(_name: &'static str, _service: &'static str, _resource: Option<&'static str>) {}

    /// A guard of `service` was entered.
    #[inline]
    pub(crate) fn entered(service: &'static str) {
        increment(GUARD_ENTERED, service, None);
    }

    /// An enter of `service` failed.
    #[inline]
    pub(crate) fn enter_failed(service: &'static str) {
        increment(GUARD_ENTER_FAILED, service, None);
    }

    /// A guard of `service` was exited.
    #[inline]
    pub(crate) fn exited(service: &'static str) {
        increment(GUARD_EXITED, service, None);
    }

    /// A guard of `service` holding clients was dropped without exit.
    #[inline]
    pub(crate) fn dropped(service: &'static str) {
        increment(GUARD_DROPPED, service, None);
    }

    /// A temporary client was opened for `site`.
    #[inline]
    pub(crate) fn opened(site: Site) {
        increment(GUARD_CLIENTS_OPENED, site.service, Some(site.resource));
    }

    /// The close of `site`'s client ran; `failed` says whether it failed.
    #[inline]
    pub(crate) fn closed(site: Site, failed: bool) {
        increment(GUARD_CLIENTS_CLOSED, site.service, Some(site.resource));
        if failed {
            increment(GUARD_CLOSE_FAILURES, site.service, Some(site.resource));
        }
    }
}
