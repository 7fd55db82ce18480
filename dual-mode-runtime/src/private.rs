//! What generated code needs. Not public API: no semver guarantees.

pub use core;
pub use serde;
pub use std;

pub use crate::context::slot;
pub use crate::error::{BoxError, EnterError, Site};
pub use crate::scope::{CloseFn, Scope};
pub use crate::secret::SecretSource;
pub use crate::unwind::{catch_unwind, panic_message};

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
