//! The binding of services (`#[derive(DualMode)]`) to the job layer: push spec types only,
//! run a service's job with a worker's warm clients or temporary ones, exit on every path.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Handler, JobInfo};
use crate::envelope::decode_json;
use crate::error::{DecodeError, JobError, ParkReason};
use dual_mode_runtime::{Context, DualMode, Parts, SecretSource, Site, Spec};

/// A service that runs as a job: the worker decodes its spec, enters it (see [`Clients`]),
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

/// Where a worker's service jobs get their clients.
#[derive(Debug, Clone)]
pub enum Clients {
    /// Borrow the warm clients (and secrets, under their source's name) of this context
    /// (`Parts::from_context`); open only what it lacks, per job.
    Context(Arc<Context>),
    /// Open temporary clients for each job (`Parts::from(spec)`), closed when it ends.
    Temporary,
}

/// The handler that runs a service's jobs; registered by [`Worker::service`](super::Worker::service).
pub struct ServiceHandler<S> {
    clients: Clients,
    _service: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for ServiceHandler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandler")
            .field("service", &std::any::type_name::<S>())
            .field("clients", &self.clients)
            .finish()
    }
}

impl<S: Job> ServiceHandler<S> {
    /// A handler entering each job's service with `clients`.
    #[must_use]
    pub fn new(clients: Clients) -> Self {
        Self { clients, _service: PhantomData }
    }
}

/// Decodes a spec payload in one pass, classifying a failure into a [`DecodeError`].
///
/// # Errors
/// A [`DecodeError`] naming the spec type, the field path and the kind of bad payload.
pub fn decode_spec<T: Spec>(payload: &[u8]) -> Result<T, DecodeError> {
    decode_json(payload, T::NAME)
}

impl<S: Job> Handler for ServiceHandler<S> {
    type Output = S::Output;

    fn timeout(&self) -> Option<Duration> {
        S::TIMEOUT
    }

    /// The secrets of `S` (and of the services nested in it) that the context does not lend
    /// and whose source has no value now.
    fn missing_secrets(&self) -> Vec<(Site, SecretSource)> {
        let ctx = match &self.clients {
            Clients::Context(ctx) => Some(&**ctx),
            Clients::Temporary => None,
        };
        S::secret_sources(ctx).into_iter().filter(|(_, source)| !source.is_available()).collect()
    }

    async fn handle(&self, job: JobInfo) -> Result<S::Output, JobError> {
        let known = <S::Spec as Spec>::VERSION;
        if job.version() > known {
            return Err(DecodeError {
                reason: ParkReason::NewerVersion,
                type_name: <S::Spec as Spec>::NAME.to_owned(),
                path: None,
                message: format!(
                    "the entry has schema version {}, this worker knows up to {known}: re-drive it once the workers are upgraded",
                    job.version()
                ),
            }
            .into());
        }
        let spec = decode_spec::<S::Spec>(job.payload())?;
        let parts = match &self.clients {
            Clients::Context(ctx) => S::Parts::from_context(spec, ctx),
            Clients::Temporary => S::Parts::from(spec),
        };
        // `run` exits on every path: `Ok`, `Err`, a panic (caught, exited, resumed: the worker
        // retries the job) and this task being aborted (the guard's drop closes its clients).
        // An enter failure converts to a retry (a server not reachable yet) or parks at once
        // (a secret or config missing or invalid: see `From<Error> for JobError`).
        dual_mode_runtime::run(parts, async |service: &S| service.run(&job).await).await
    }
}

/// One warning per secret that a registered service's jobs need and that is not available as
/// the worker starts: its jobs would park as
/// [`ParkReason::Misconfigured`](crate::ParkReason::Misconfigured) until it is.
pub(super) fn warn_missing_secrets(handlers: &std::collections::HashMap<String, Arc<dyn super::ErasedHandler>>) {
    let mut names: Vec<&String> = handlers.keys().collect();
    names.sort();
    for name in names {
        for (site, source) in handlers[name].missing_secrets() {
            let why = match source {
                SecretSource::File(_) => "does not exist",
                _ => "is not set",
            };
            tracing::warn!(
                job_type = %name,
                "secret {site} is missing: {source} {why}; its jobs park as misconfigured until it is set"
            );
        }
    }
}
