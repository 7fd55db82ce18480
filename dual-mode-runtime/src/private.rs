//! What generated code needs. Not public API: no semver guarantees.

pub use core;
pub use serde;
pub use std;

#[cfg(feature = "axum")]
use axum_core::extract::FromRef;

/// An app state that can give a service's client of type `T`, through axum's `FromRef`.
///
/// The bound is on the state (`State: StateHas<T>`), not on the client (`T: FromRef<State>`):
/// with the client first, axum's reflexive `impl FromRef<T> for T` lets the compiler guess the
/// state type from the first client and report a confusing mismatch.
#[cfg(feature = "axum")]
#[diagnostic::on_unimplemented(
    message = "the app state `{Self}` has no `{T}` for this service",
    label = "no `{T}` in this state",
    note = "implement `axum::extract::FromRef<{Self}>` for `{T}`, or derive `FromRef` on the state"
)]
pub trait StateHas<T> {
    /// The state's client.
    fn get(&self) -> T;
}

/// Never implemented: the bound `from_state` gets when two fields share a type, because app
/// state gives one value per type.
#[cfg(feature = "axum")]
#[diagnostic::on_unimplemented(
    message = "`from_state` cannot fill this service: several of its fields have type `{T}`",
    label = "app state gives one `{T}`, and fields of one type would all get it",
    note = "give each field its own type (a newtype), or build the service with its parts and `enter`"
)]
pub trait OneFieldPerType<T> {}

#[cfg(feature = "axum")]
#[diagnostic::do_not_recommend]
impl<S, T: FromRef<S>> StateHas<T> for S {
    fn get(&self) -> T {
        T::from_ref(self)
    }
}

pub use crate::error::{BoxError, EnterError, Site};
pub use crate::scope::{CloseFn, Scope};
pub use crate::secret::{Secret, SecretSource};

/// Expands its input only when the `axum` feature is on.
#[cfg(feature = "axum")]
#[macro_export]
#[doc(hidden)]
macro_rules! __with_axum {
    ($($t:tt)*) => { $($t)* };
}

/// Expands its input only when the `axum` feature is on.
#[cfg(not(feature = "axum"))]
#[macro_export]
#[doc(hidden)]
macro_rules! __with_axum {
    ($($t:tt)*) => {};
}

pub use crate::__with_axum as with_axum;

/// The default config of a resource that has no `config = ...`.
#[diagnostic::on_unimplemented(
    message = "this shared field needs a config: its resource's config `{Self}` has no default",
    label = "add `#[dual_mode(shared, config = spec_field.path)]`",
    note = "a resource's config can be left out only when it implements `Default`"
)]
pub trait DefaultConfig: Sized {
    /// The default.
    fn default_config() -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Default> DefaultConfig for T {
    fn default_config() -> Self {
        T::default()
    }
}

/// An `open = path` function: `async fn(&Spec) -> Result<T, E>`.
#[diagnostic::on_unimplemented(
    message = "`open = ...` must name an `async fn(&{S}) -> Result<{T}, E>`",
    label = "not an `async fn(&{S}) -> Result<{T}, E>`",
    note = "`E` is any error type that converts into `Box<dyn std::error::Error + Send + Sync>`"
)]
pub trait OpenFn<S, T, E>: AsyncFn(&S) -> Result<T, E> {}

#[diagnostic::do_not_recommend]
impl<S, T, E, F: AsyncFn(&S) -> Result<T, E>> OpenFn<S, T, E> for F {}

/// Calls an `open = path` function.
pub async fn call_open<S, T, E, F: OpenFn<S, T, E>>(f: F, spec: &S) -> Result<T, E> {
    f(spec).await
}

/// A `close = path` function: `async fn(T) -> Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`close = ...` must name an `async fn({T}) -> Result<(), E>`",
    label = "not an `async fn({T}) -> Result<(), E>`"
)]
pub trait CloseFnOf<T, E>: AsyncFnOnce(T) -> Result<(), E> {}

#[diagnostic::do_not_recommend]
impl<T, E, F: AsyncFnOnce(T) -> Result<(), E>> CloseFnOf<T, E> for F {}

/// Calls a `close = path` function. Going through the bound (rather than calling the path
/// directly) makes a wrong signature one error, the `CloseFnOf` one.
pub async fn call_close<T, E, F: CloseFnOf<T, E>>(f: F, value: T) -> Result<(), E> {
    f(value).await
}

/// The close of a resource opened with `open = path` and no `close = path`: a drop.
pub fn drop_close<T: Send + 'static>(
    value: T,
) -> core::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> {
    drop(value);
    Box::pin(async { Ok(()) })
}

/// The spec view an `open = path` function receives. It is built before the first open
/// whenever an `open = path` field is `None`.
#[must_use]
pub fn spec_view<S>(spec: Option<&S>) -> &S {
    match spec {
        Some(spec) => spec,
        None => unreachable!("the spec view is built whenever an `open = path` field is None"),
    }
}

/// Marks the type of a `#[dual_mode(secret)]` field.
#[diagnostic::on_unimplemented(
    message = "`#[dual_mode(secret)]` needs a `dual_mode::Secret<T>` field, not `{Self}`",
    label = "not a `dual_mode::Secret<T>`",
    note = "wrap the value: `token: dual_mode::Secret<String>`"
)]
pub trait IsSecret {
    /// The wrapped type.
    type Inner;

    /// Wraps a resolved value.
    fn from_secret(secret: Secret<Self::Inner>) -> Self;
}

impl<T> IsSecret for Secret<T> {
    type Inner = T;

    fn from_secret(secret: Secret<T>) -> Self {
        secret
    }
}

/// What a `Secret<T>` read from a text source holds: a `T` that parses from a string.
#[diagnostic::on_unimplemented(
    message = "a secret read from `env` is parsed from a string, and `{Self}` does not implement `FromStr`",
    label = "no `FromStr` impl for `{Self}`",
    note = "use `Secret<String>` and convert it yourself, or implement `std::str::FromStr` for `{Self}`"
)]
pub trait SecretValue: core::str::FromStr<Err: Into<BoxError>> {}

#[diagnostic::do_not_recommend]
impl<T: core::str::FromStr<Err: Into<BoxError>>> SecretValue for T {}

/// Resolves a `#[dual_mode(secret)]` field of type `S`. Typed by the field (not by its inner
/// type), so that a field that is not a `Secret<T>` is one error, the `IsSecret` one.
///
/// # Errors
///
/// An [`EnterError`] naming `site` and the source when it has no value or the value does
/// not parse.
pub fn read_secret<S>(site: Site, source: SecretSource) -> Result<S, EnterError>
where
    S: IsSecret,
    S::Inner: SecretValue,
{
    source.read::<S::Inner>(site).map(S::from_secret)
}
