//! The job as the layer's API sees it: a service that runs as a job ([`Job`]), and what a
//! running job sees of itself ([`JobInfo`], its [`Lease`], [`CancelReason`]). It imports
//! nothing of the queue, the worker or the stores.

mod info;

pub(crate) use info::JobInner;
pub use info::{CancelReason, JobInfo, Lease};

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::JobError;
use dual_mode_runtime::DualMode;

/// A service that runs as a job: the worker decodes its spec, enters it (see [`Clients`](crate::Clients)),
/// calls [`run`](Job::run) with the complete service, then exits the guard on every path
/// (`Ok`, `Err`, a panic, and the job being aborted).
///
/// Delivery is at-least-once: key side effects by [`JobInfo::idempotency_key`], see the
/// [module docs](crate#at-least-once-delivery).
///
/// ```ignore
/// impl Job for Report {
///     type Output = ReportSummary;               // `()` when the job returns nothing
///     const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
///
///     async fn run(&self, job: &JobInfo) -> Result<ReportSummary, JobError> {
///         self.build().await.map_err(JobError::failed)
///     }
/// }
/// // elsewhere: queue.wait_for::<Report>(&job_id, timeout).await? is a JobOutcome<ReportSummary>
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Job`, so a worker cannot run it",
    label = "no `Job` impl for `{Self}`",
    note = "implement it: `impl dual_mode::jobs::Job for {Self} {{ type Output = (); async fn run(&self, job: &JobInfo) -> Result<(), JobError> {{ ... }} }}`"
)]
pub trait Job: DualMode {
    /// What a successful run returns, stored with the job's record and typed again by
    /// [`Queue::wait_for`](crate::Queue::wait_for); `()` for nothing.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The time limit of one attempt (a push's
    /// [`PushOptions::timeout`](crate::PushOptions::timeout) wins); `None`: no limit. At
    /// the deadline the run is dropped, its guard closes the clients it opened, and the
    /// attempt fails with a `timeout` error.
    const TIMEOUT: Option<Duration> = None;

    /// Runs the job; the attempt, ids, lease and cancellation are in `job`.
    fn run(&self, job: &JobInfo) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}
