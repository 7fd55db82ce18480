//! The binding of services (`#[derive(DualMode)]`) to the job layer: push spec types only,
//! run a service's job with a worker's warm clients or temporary ones, exit on every path.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use super::envelope::{classify_message, precheck};
use super::error::{DecodeError, JobError, ParkReason, QueueError};
use super::queue::{PushOptions, Pushed, Queue};
use super::schedule::Schedule;
use super::worker::{Handler, JobInfo, Worker};
use crate::{Context, DualMode, Parts, Spec};

/// A service that runs as a job: the worker decodes its spec, enters it (see [`Clients`]),
/// calls [`run`](Job::run) with the complete service, then exits the guard on every path
/// (`Ok`, `Err`, a panic, and the job being aborted).
///
/// Delivery is at-least-once: key side effects by [`JobInfo::idempotency_key`], see the
/// [module docs](super#at-least-once-delivery).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Job`, so a worker cannot run it",
    label = "no `Job` impl for `{Self}`",
    note = "implement it: `impl dual_mode::jobs::Job for {Self} {{ async fn run(&self, job: &JobInfo) -> Result<(), JobError> {{ ... }} }}`"
)]
pub trait Job: DualMode {
    /// Runs the job; the attempt, ids and lease are in `job`.
    fn run(&self, job: &JobInfo) -> impl Future<Output = Result<(), JobError>> + Send;
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

/// The handler that runs a service's jobs; registered by [`Worker::service`].
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

/// Decodes a spec payload, classifying a failure into a [`DecodeError`].
///
/// # Errors
/// A [`DecodeError`] naming the spec type, the field path and the kind of bad payload.
pub fn decode_spec<T: Spec>(payload: &[u8]) -> Result<T, DecodeError> {
    precheck(payload, T::NAME)?;
    T::from_json(payload).map_err(|e| DecodeError {
        reason: classify_message(&e.cause().to_string()),
        type_name: T::NAME.to_owned(),
        path: Some(e.path().to_owned()).filter(|p| !p.is_empty() && p != "."),
        message: e.to_string(),
    })
}

impl<S: Job> Handler for ServiceHandler<S> {
    async fn handle(&self, job: JobInfo) -> Result<(), JobError> {
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
        // An enter failure (a server not reachable yet) converts to a retry.
        crate::run(parts, async |service: &S| service.run(&job).await).await
    }
}

impl Worker {
    /// Registers the service `S` under its spec type's name: each job decodes an
    /// `S::Spec`, enters it with `clients`, runs [`Job::run`] and exits.
    #[must_use]
    pub fn service<S: Job>(self, clients: Clients) -> Self {
        self.handle(<S::Spec as Spec>::NAME, ServiceHandler::<S>::new(clients))
    }
}

impl Queue {
    /// Pushes a spec under its type name and schema version. Only spec types are accepted,
    /// so no client and no secret reaches the queue.
    ///
    /// # Errors
    /// The spec does not serialize, or Redis fails.
    pub async fn push_spec<T: Spec>(&self, spec: &T, options: PushOptions) -> Result<Pushed, QueueError> {
        let bytes = spec.to_json().map_err(QueueError::Spec)?;
        self.push_raw(T::NAME, T::VERSION, bytes, options).await
    }

    /// Pushes many specs in pipelined round trips; see [`Queue::push_bulk`].
    ///
    /// # Errors
    /// A spec does not serialize, or Redis fails.
    pub async fn push_specs<T: Spec>(&self, specs: &[T], options: PushOptions) -> Result<Vec<Pushed>, QueueError> {
        self.push_bulk(T::NAME, T::VERSION, specs, options).await
    }
}

impl Schedule {
    /// A schedule that enqueues `spec` at each tick of `cron`.
    ///
    /// # Errors
    /// The cron expression does not parse, or the spec does not serialize.
    pub fn for_spec<T: Spec>(name: impl Into<String>, cron: &str, spec: &T) -> Result<Self, QueueError> {
        let bytes = spec.to_json().map_err(QueueError::Spec)?;
        Ok(Self::from_parts(name, super::cron::Cron::parse(cron)?, T::NAME, T::VERSION, bytes))
    }
}

impl From<crate::Error> for JobError {
    fn from(e: crate::Error) -> Self {
        Self::failed(e)
    }
}
