//! [`Scope`]: the resources one guard opened, closed in reverse on every path.

use std::any::{Any, TypeId};
use std::future::Future;
use std::mem;
use std::pin::Pin;

use crate::Resource;
use crate::error::{BoxError, CloseError, EnterError, ExitError, Site};
use crate::unwind::{catch_unwind, panic_message};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A handle the scope keeps so that it can close it later.
trait Held: Send + Sync {
    fn value(&self) -> &(dyn Any + Send + Sync);
    fn close(self: Box<Self>) -> BoxFuture<Result<(), BoxError>>;
}

struct ByResource<T>(T);

impl<T: Resource> Held for ByResource<T> {
    fn value(&self) -> &(dyn Any + Send + Sync) {
        &self.0
    }

    fn close(self: Box<Self>) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move { self.0.close().await.map_err(Into::into) })
    }
}

/// A close function given by `#[dual_mode(shared, open = ..., close = path)]`.
pub type CloseFn<T> = fn(T) -> BoxFuture<Result<(), BoxError>>;

struct ByFn<T> {
    value: T,
    close: CloseFn<T>,
}

impl<T: Send + Sync + 'static> Held for ByFn<T> {
    fn value(&self) -> &(dyn Any + Send + Sync) {
        &self.value
    }

    fn close(self: Box<Self>) -> BoxFuture<Result<(), BoxError>> {
        (self.close)(self.value)
    }
}

struct Opened {
    site: Site,
    key: Option<&'static str>,
    type_id: TypeId,
    /// [`Resource::share_key`] of the config it was opened with (0 for `open = path`).
    share: u64,
    held: Box<dyn Held>,
}

/// The resources opened while entering one service (nested services included).
///
/// Within one scope, one temporary client is opened per type, key and
/// [share key](Resource::share_key) of its config: a nested service that needs a client the
/// scope already opened with an equal config gets a clone of it. Closing runs in
/// reverse order of opening, in a task spawned on the current tokio runtime, so cancelling
/// the future that asked for the close cannot interrupt it. Dropping a scope that still holds
/// resources spawns their close and warns.
#[derive(Default)]
pub struct Scope {
    opened: Vec<Opened>,
}

impl Scope {
    /// An empty scope. It allocates nothing until something is opened.
    #[must_use]
    pub const fn new() -> Self {
        Self { opened: Vec::new() }
    }

    /// How many resources this scope opened and will close.
    #[must_use]
    pub fn len(&self) -> usize {
        self.opened.len()
    }

    /// Whether this scope opened nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.opened.is_empty()
    }

    fn find<T: Clone + 'static>(&self, key: Option<&'static str>, share: u64) -> Option<T> {
        let id = TypeId::of::<T>();
        self.opened
            .iter()
            .find(|o| o.type_id == id && o.key == key && o.share == share)
            .and_then(|o| o.held.value().downcast_ref::<T>())
            .cloned()
    }

    /// Returns this scope's client of type `T` under `key`, opening it with `config` first if
    /// the scope has none.
    ///
    /// # Errors
    ///
    /// An [`EnterError`] naming `site` when the open fails.
    pub async fn open<T: Resource + Clone>(
        &mut self,
        site: Site,
        key: Option<&'static str>,
        config: &T::Config,
    ) -> Result<T, EnterError> {
        let share = T::share_key(config);
        if let Some(found) = self.find::<T>(key, share) {
            return Ok(found);
        }
        tracing::debug!(service = site.service, field = site.field, resource = site.resource, "opening");
        let value = opened(site, T::open(config)).await?;
        crate::metrics::guard::opened(site);
        self.opened.push(Opened {
            site,
            key,
            type_id: TypeId::of::<T>(),
            share,
            held: Box::new(ByResource(value.clone())),
        });
        Ok(value)
    }

    /// Like [`open`](Self::open), with the open future and close function given by the
    /// field's `open = path` and `close = path`.
    ///
    /// # Errors
    ///
    /// An [`EnterError`] naming `site` when the open fails.
    pub async fn open_with<T, E, F>(
        &mut self,
        site: Site,
        key: Option<&'static str>,
        open: F,
        close: CloseFn<T>,
    ) -> Result<T, EnterError>
    where
        T: Clone + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Future<Output = Result<T, E>>,
    {
        if let Some(found) = self.find::<T>(key, 0) {
            return Ok(found);
        }
        tracing::debug!(service = site.service, field = site.field, resource = site.resource, "opening");
        let value = opened(site, open).await?;
        crate::metrics::guard::opened(site);
        let held = Box::new(ByFn { value: value.clone(), close });
        self.opened.push(Opened { site, key, type_id: TypeId::of::<T>(), share: 0, held });
        Ok(value)
    }

    /// Closes everything this scope opened, in reverse order, in a spawned task when a tokio
    /// runtime is running. Every resource gets its close; the failures are collected.
    ///
    /// # Errors
    ///
    /// An [`ExitError`] listing every close that failed.
    pub async fn close(mut self, service: &'static str) -> Result<(), ExitError> {
        let opened = mem::take(&mut self.opened);
        if opened.is_empty() {
            return Ok(());
        }
        let errors = match tokio::runtime::Handle::try_current() {
            Ok(handle) => match handle.spawn(close_all(opened)).await {
                Ok(errors) => errors,
                // `close_all` catches each close's panic, so the task ends early only when the
                // runtime shuts down under it.
                Err(join) => match join.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(_) => return Err(ExitError::interrupted(service)),
                },
            },
            Err(_) => close_all(opened).await,
        };
        if errors.is_empty() { Ok(()) } else { Err(ExitError::new(service, errors)) }
    }

    /// Undoes a failed enter: closes what was opened and attaches the close failures.
    pub(crate) async fn undo(self, error: EnterError) -> EnterError {
        match self.close(error.site().service).await {
            Ok(()) => error,
            Err(exit) => error.with_cleanup(exit.into_errors()),
        }
    }
}

/// Awaits one open. An open that panics (a client builder that asserts, a user's `open = path`
/// function that unwraps) is a failed open of this field: the guard then closes what it had
/// opened, and the caller gets an [`EnterError`] instead of an unwinding task.
async fn opened<T, E: Into<BoxError>>(site: Site, open: impl Future<Output = Result<T, E>>) -> Result<T, EnterError> {
    match catch_unwind(open).await {
        Ok(result) => result.map_err(|e| EnterError::open(site, e)),
        Err(panic) => Err(EnterError::open(site, format!("open panicked: {}", panic_message(&*panic)))),
    }
}

async fn close_all(opened: Vec<Opened>) -> Vec<CloseError> {
    let mut errors = Vec::new();
    for o in opened.into_iter().rev() {
        let site = o.site;
        tracing::debug!(service = site.service, field = site.field, resource = site.resource, "closing");
        // A close that panics is a failed close: the ones after it still run.
        let failed = match catch_unwind(o.held.close()).await {
            Ok(Ok(())) => None,
            Ok(Err(cause)) => Some(cause),
            Err(panic) => Some(format!("close panicked: {}", panic_message(&*panic)).into()),
        };
        crate::metrics::guard::closed(site, failed.is_some());
        if let Some(cause) = failed {
            tracing::warn!(service = site.service, field = site.field, error = %cause, "close failed");
            errors.push(CloseError { site, cause });
        }
    }
    errors
}

impl Drop for Scope {
    fn drop(&mut self) {
        let opened = mem::take(&mut self.opened);
        if opened.is_empty() {
            return;
        }
        let fields: Vec<&str> = opened.iter().map(|o| o.site.field).collect();
        let service = opened[0].site.service;
        crate::metrics::guard::dropped(service);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                tracing::warn!(
                    service,
                    ?fields,
                    "guard dropped without exit(): closing its resources in a background task"
                );
                handle.spawn(close_all(opened));
            }
            Err(_) => {
                tracing::warn!(
                    service,
                    ?fields,
                    "guard dropped without exit() outside a tokio runtime: its resources are dropped, not closed"
                );
                drop(opened);
            }
        }
    }
}
