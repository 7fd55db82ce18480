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

#[doc(hidden)]
pub use bounds::{
    DefaultClientConfig, DefaultPoolConfig, DefaultRedisConfig, IsService, IsSpecField, SharedClient, SharedPool,
    SharedRedisConnection,
};
pub use bounds::{DefaultConfig, SecretField, SecretValue, SharedField, SpecField};
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

/// The reqwest (0.13) whose `Client` is a built-in [`Resource`] (feature `reqwest`): name it
/// as `dual_mode::reqwest::Client` to use exactly the version dual-mode supports.
#[cfg(feature = "reqwest")]
pub use reqwest;

/// reqwest 0.12, whose `Client` is a built-in [`Resource`] too (feature `reqwest-0-12`).
#[cfg(feature = "reqwest-0-12")]
pub use reqwest_0_12;

/// The redis (1.x) connections that are built-in [`Resource`]s (feature `redis`):
/// `dual_mode::redis::aio::ConnectionManager` is exactly the type dual-mode supports. Depend
/// on `redis` for the rest of its API.
// The connection modules only, not the whole crate: its `ValueType::String` would make rustc
// print `String` as `std::string::String` in the diagnostics of every crate that does not use
// redis itself.
#[cfg(feature = "redis")]
pub mod redis {
    pub use ::redis::{AsyncCommands, aio, cluster_async};
}

#[doc(hidden)]
pub use private as __private;
