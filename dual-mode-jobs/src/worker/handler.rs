//! Handlers: the code a worker runs for a type name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::JobInfo;
use crate::error::JobError;
use dual_mode_runtime::{SecretSource, Site};

/// Runs jobs of one type name. The future runs in its job's task, its panics caught: a panic
/// fails that job only.
pub trait Handler: Send + Sync + 'static {
    /// What a successful run returns; it is stored as JSON in the job's record, where
    /// [`Queue::wait_for_output`](crate::Queue::wait_for_output) reads it. `()` for none.
    type Output: Serialize + Send;

    /// Runs one job; `Err` retries or parks it, see [`JobError`].
    fn handle(&self, job: JobInfo) -> impl Future<Output = Result<Self::Output, JobError>> + Send;

    /// The time limit of one attempt, unless the push set one; `None` (the default): no limit.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// The secrets the jobs need that are not available now (an environment variable not
    /// set, a file that does not exist), with the field that reads each: a worker warns about
    /// each when it starts. None by default; a service's handler lists its own.
    fn missing_secrets(&self) -> Vec<(Site, SecretSource)> {
        Vec::new()
    }
}

/// A handler from a closure over the raw [`JobInfo`]; see [`handler_fn`].
#[derive(Debug, Clone, Copy)]
pub struct HandlerFn<F>(F);

/// A handler from `async |job: JobInfo| -> Result<O, JobError>`-like closures.
pub fn handler_fn<F, Fut, O>(f: F) -> HandlerFn<F>
where
    F: Fn(JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    O: Serialize + Send,
{
    HandlerFn(f)
}

impl<F, Fut, O> Handler for HandlerFn<F>
where
    F: Fn(JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    O: Serialize + Send,
{
    type Output = O;

    fn handle(&self, job: JobInfo) -> impl Future<Output = Result<O, JobError>> + Send {
        (self.0)(job)
    }
}

/// A handler that decodes the payload into `T` (inside the job task) and calls a closure
/// with it; see [`typed`].
pub struct Typed<T, F> {
    f: F,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T, F> std::fmt::Debug for Typed<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed").field("type", &std::any::type_name::<T>()).finish_non_exhaustive()
    }
}

/// A handler that decodes each payload into `T` and calls `f(value, job)`; a payload that does
/// not decode is parked with its reason.
pub fn typed<T, F, Fut, O>(f: F) -> Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    O: Serialize + Send,
{
    Typed { f, _t: std::marker::PhantomData }
}

impl<T, F, Fut, O> Handler for Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    O: Serialize + Send,
{
    type Output = O;

    async fn handle(&self, job: JobInfo) -> Result<O, JobError> {
        let value = job.decode::<T>()?;
        (self.f)(value, job).await
    }
}

/// A run's result as JSON bytes.
type BoxFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, JobError>> + Send>>;

/// A handler behind a pointer, so one worker holds handlers of many types; the output is
/// encoded as JSON in the job's task.
pub(super) trait ErasedHandler: Send + Sync {
    fn call(self: Arc<Self>, job: JobInfo) -> BoxFuture;
    fn time_limit(&self) -> Option<Duration>;
    fn missing_secrets(&self) -> Vec<(Site, SecretSource)>;
}

impl<H: Handler> ErasedHandler for H {
    fn call(self: Arc<Self>, job: JobInfo) -> BoxFuture {
        Box::pin(async move {
            let output = self.handle(job).await?;
            serde_json::to_vec(&output).map_err(|e| JobError::permanent(ResultError(e)))
        })
    }

    fn time_limit(&self) -> Option<Duration> {
        self.timeout()
    }

    fn missing_secrets(&self) -> Vec<(Site, SecretSource)> {
        Handler::missing_secrets(self)
    }
}

/// A handler's output that does not serialize to JSON (a map with non-string keys).
#[derive(Debug, thiserror::Error)]
#[error("the job's result does not serialize to JSON")]
struct ResultError(#[source] serde_json::Error);
