//! Handlers: the code a worker runs for a type name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::JobInfo;
use crate::jobs::error::JobError;

/// Runs jobs of one type name. The future runs in its job's task, its panics caught: a panic
/// fails that job only.
pub trait Handler: Send + Sync + 'static {
    /// Runs one job; `Err` retries or parks it, see [`JobError`].
    fn handle(&self, job: JobInfo) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// A handler from a closure over the raw [`JobInfo`]; see [`handler_fn`].
#[derive(Debug, Clone, Copy)]
pub struct HandlerFn<F>(F);

/// A handler from `async |job: JobInfo| -> Result<(), JobError>`-like closures.
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    fn handle(&self, job: JobInfo) -> impl Future<Output = Result<(), JobError>> + Send {
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
pub fn typed<T, F, Fut>(f: F) -> Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    Typed { f, _t: std::marker::PhantomData }
}

impl<T, F, Fut> Handler for Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(T, JobInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    async fn handle(&self, job: JobInfo) -> Result<(), JobError> {
        let value = job.decode::<T>()?;
        (self.f)(value, job).await
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

/// A handler behind a pointer, so one worker holds handlers of many types.
pub(super) trait ErasedHandler: Send + Sync {
    fn call(self: Arc<Self>, job: JobInfo) -> BoxFuture;
}

impl<H: Handler> ErasedHandler for H {
    fn call(self: Arc<Self>, job: JobInfo) -> BoxFuture {
        Box::pin(async move { self.handle(job).await })
    }
}
