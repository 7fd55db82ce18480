//! The binding of services (`#[derive(DualMode)]`) to the job layer: push spec types only,
//! run a service's job with a worker's warm clients or temporary ones, exit on every path.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::{Handler, Job, JobInfo};
use crate::envelope::decode_json;
use crate::error::{DecodeError, JobError, ParkReason};
use dual_mode_runtime::{Context, Parts, SecretSource, Site, Spec};

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
