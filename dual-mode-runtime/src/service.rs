//! The traits `#[derive(DualMode)]` implements, the [`Guard`], and [`run`].

use std::fmt::Debug;
use std::future::{Future, poll_fn};
use std::ops::Deref;
use std::panic::resume_unwind;
use std::pin::pin;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::Context;
use crate::error::{EnterError, Error, ExitError, Site, SpecError};
use crate::scope::Scope;
use crate::secret::SecretSource;
use crate::unwind::catch_unwind;

/// A service: a struct whose shared clients can be injected or opened temporarily.
///
/// Implemented by `#[derive(DualMode)]`; see the [crate docs](crate) for what the derive
/// generates.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dual-mode service",
    label = "no `#[derive(DualMode)]` on this type",
    note = "add `#[derive(DualMode)]` to `{Self}`, or remove `#[dual_mode(nested)]` from the field"
)]
pub trait DualMode: Sized + Send + Sync + 'static {
    /// The serializable job spec: the service's config, never a client or a secret.
    type Spec: Spec;
    /// The `Option`-based form: `Some` clients are used, `None` ones opened on enter.
    type Parts: Parts<Service = Self> + From<Self::Spec>;
    /// The service's type name.
    const NAME: &'static str;

    /// The job spec of this live service, to enqueue work that a worker runs later.
    fn spec(&self) -> Self::Spec;

    /// The secret fields of this service and of the services nested in it that an enter
    /// would read from their source: those `ctx` does not lend (every one without a
    /// context). A worker checks them at start, to warn about each that is not set.
    ///
    /// ```
    /// use dual_mode::{Context, DualMode, Secret, SecretSource};
    ///
    /// #[derive(DualMode)]
    /// struct Weather {
    ///     #[dual_mode(secret, env = "WEATHER_API_KEY")]
    ///     api_key: Secret<String>,
    /// }
    ///
    /// let sources: Vec<SecretSource> = Weather::secret_sources(None).into_iter().map(|(_, s)| s).collect();
    /// assert_eq!(sources, [SecretSource::Env("WEATHER_API_KEY")]);
    /// let ctx = Context::new().with_keyed("WEATHER_API_KEY", Secret::new(String::from("k")));
    /// assert!(Weather::secret_sources(Some(&ctx)).is_empty());
    /// ```
    #[must_use]
    fn secret_sources(ctx: Option<&Context>) -> Vec<(Site, SecretSource)> {
        let _ = ctx;
        Vec::new()
    }
}

/// The job spec of a service: its serializable config.
///
/// Implemented by `#[derive(DualMode)]` on the generated spec type. Queue APIs accept only
/// spec types, so no client and no secret ever reaches a queue.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a job spec: only a spec goes into a queue",
    label = "not a job spec",
    note = "pass the service's spec: `service.spec()` for a live service, `parts.spec()` for its parts, or the generated `...Spec` value itself"
)]
pub trait Spec: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// The spec type's name, e.g. `EsiClientSpec`.
    const NAME: &'static str;
    /// The schema version, `#[dual_mode(version = N)]` on the service (default 1).
    const VERSION: u32;

    /// Decodes a JSON payload.
    ///
    /// # Errors
    ///
    /// A [`SpecError`] naming this spec type and the path of the field that failed.
    fn from_json(bytes: &[u8]) -> Result<Self, SpecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| SpecError::new(Self::NAME, e.path().to_string(), e.into_inner()))?;
        de.end().map_err(|e| SpecError::new(Self::NAME, String::new(), e))?;
        Ok(value)
    }

    /// Encodes this spec as JSON.
    ///
    /// # Errors
    ///
    /// A [`SpecError`] when a field's `Serialize` impl fails (a map with non-string keys).
    fn to_json(&self) -> Result<Vec<u8>, SpecError> {
        serde_json::to_vec(self).map_err(|e| SpecError::new(Self::NAME, String::new(), e))
    }
}

/// The `Option`-based form of a service, entered to get a complete service.
///
/// Implemented by `#[derive(DualMode)]` on the generated parts type.
pub trait Parts: Sized + Send + 'static {
    /// The service these parts complete to.
    type Service: DualMode<Parts = Self>;

    /// Parts that borrow every client `ctx` has (by type, and by key for keyed fields) and
    /// leave the others `None`, to be opened on enter.
    fn from_context(spec: <Self::Service as DualMode>::Spec, ctx: &Context) -> Self;

    /// The spec these parts hold.
    fn spec(&self) -> <Self::Service as DualMode>::Spec;

    /// Opens what is missing into `scope` and builds the service. Generated; call
    /// [`enter`](Parts::enter) instead.
    #[doc(hidden)]
    fn enter_in(self, scope: &mut Scope) -> impl Future<Output = Result<Self::Service, EnterError>> + Send;

    /// Opens every `None` client (and resolves every `None` secret) in field order and
    /// returns a guard that derefs to the complete service.
    ///
    /// If an open fails, what was already opened is closed before the error returns.
    ///
    /// # Errors
    ///
    /// An [`EnterError`] naming the service, the field, the resource type and the cause.
    fn enter(self) -> impl Future<Output = Result<Guard<Self::Service>, EnterError>> + Send {
        async move {
            let span = tracing::debug_span!("dual_mode.enter", service = <Self::Service as DualMode>::NAME);
            let mut scope = Scope::new();
            let entered = {
                // The span is entered around each poll, as `Instrument` does, but the opens'
                // (large) future stays in place: wrapping it would copy it on every enter.
                let mut opens = pin!(self.enter_in(&mut scope));
                poll_fn(|cx| span.in_scope(|| opens.as_mut().poll(cx))).await
            };
            match entered {
                Ok(service) => {
                    crate::metrics::guard::entered(<Self::Service as DualMode>::NAME);
                    Ok(Guard { service, scope })
                }
                // Boxed: the undo (closes in a spawned task) is large and only runs on failure.
                Err(error) => {
                    crate::metrics::guard::enter_failed(<Self::Service as DualMode>::NAME);
                    Err(Box::pin(scope.undo(error)).instrument(span).await)
                }
            }
        }
    }
}

/// A complete service and the temporary clients it was entered with.
///
/// Derefs (read-only) to the service. [`exit`](Guard::exit) closes exactly the clients the
/// guard opened, in reverse order, in a spawned task, so that a cancellation landing inside
/// `exit` cannot interrupt it. Dropping a guard without `exit` spawns the close on the
/// current tokio runtime (or drops the clients outside one) and warns through `tracing`.
#[must_use = "a guard holds temporary clients: call `exit().await`"]
pub struct Guard<S: DualMode> {
    // Field order matters: on drop the service's clones go first, then the scope closes.
    service: S,
    scope: Scope,
}

impl<S: DualMode> Guard<S> {
    /// How many clients this guard opened (and will close).
    #[must_use]
    pub fn opened(&self) -> usize {
        self.scope.len()
    }

    /// Closes the clients this guard opened, in reverse order of opening. Injected clients
    /// are untouched. Every client gets its close, even when an earlier one fails.
    ///
    /// # Errors
    ///
    /// An [`ExitError`] listing each close that failed.
    pub async fn exit(self) -> Result<(), ExitError> {
        let Self { service, scope } = self;
        drop(service);
        crate::metrics::guard::exited(S::NAME);
        if scope.is_empty() {
            return Ok(());
        }
        let span = tracing::debug_span!("dual_mode.exit", service = S::NAME, opened = scope.len());
        // Boxed, as the undo in `enter`: the closes are large and run only when something
        // was opened, so an exit with everything injected stays a small future.
        Box::pin(scope.close(S::NAME)).instrument(span).await
    }
}

impl<S: DualMode> Deref for Guard<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.service
    }
}

impl<S: DualMode + Debug> Debug for Guard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("service", &self.service).field("opened", &self.scope.len()).finish()
    }
}

/// Enters `parts`, runs `body` with the complete service, and exits on every path.
///
/// The exit runs after `body` returns `Ok` or `Err`, after it panics (the panic is caught,
/// the exit runs, then the panic resumes), and, if this future is dropped mid-way, in a
/// background task. The generated `Spec::run` and `Parts::run` call this.
///
/// When `body` succeeds but a close fails, the result is that close failure; when `body`
/// fails, its error is returned and close failures are logged.
///
/// # Errors
///
/// `body`'s error, or an [`Error`] from entering or exiting, converted into `E`.
pub async fn run<P, F, T, E>(parts: P, body: F) -> Result<T, E>
where
    P: Parts,
    F: AsyncFnOnce(&P::Service) -> Result<T, E>,
    E: From<Error>,
{
    let guard = parts.enter().await.map_err(|e| E::from(Error::Enter(e)))?;
    let outcome = catch_unwind(body(&guard.service)).await;
    let exit = guard.exit().await;
    match outcome {
        Err(panic) => {
            if let Err(e) = exit {
                tracing::warn!(error = %e, "exit after a panic failed");
            }
            resume_unwind(panic)
        }
        Ok(Ok(value)) => exit.map(|()| value).map_err(|e| E::from(Error::Exit(e))),
        Ok(Err(error)) => {
            if let Err(e) = exit {
                tracing::warn!(error = %e, "exit after a failed body failed");
            }
            Err(error)
        }
    }
}

/// Builds a service from axum app state: every shared client (and secret) is taken from the
/// state through `FromRef`. Synchronous, infallible, no guard.
///
/// Implemented by `#[derive(DualMode)]` (feature `axum`) for services without keyed fields.
#[cfg(feature = "axum")]
pub trait FromState<St>: DualMode {
    /// The service for `spec`, with the state's clients.
    fn from_state(spec: Self::Spec, state: &St) -> Self;
}
