//! The runtime of [`dual-mode`](https://docs.rs/dual-mode): resources, guards, contexts,
//! secrets and typed errors. Depend on the `dual-mode` facade crate, which
//! re-exports all of this together with `#[derive(DualMode)]`.

mod bounds;
mod builtin;
mod context;
mod error;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
#[doc(hidden)]
pub mod private;
mod resource;
mod scope;
mod secret;
mod service;
mod unwind;

pub use bounds::{DefaultConfig, SecretField, SecretValue, SharedField, SpecField};
#[doc(hidden)]
pub use bounds::{IsService, IsSpecField};
#[cfg(feature = "axum")]
pub use bounds::{OneFieldPerType, Provides};
pub use context::Context;
pub use error::{BoxError, CloseError, EnterError, EnterErrorKind, Error, ExitError, Site, SpecError};
pub use resource::Resource;
pub use secret::{Secret, SecretSource, SerializeSecret};
#[cfg(feature = "axum")]
pub use service::FromState;
pub use service::{DualMode, Guard, Parts, Spec, run};

#[cfg(feature = "deadpool-postgres")]
pub use builtin::deadpool::DeadpoolError;
#[cfg(feature = "reqwest")]
pub use builtin::http::HttpConfig;

#[doc(hidden)]
pub use private as __private;
