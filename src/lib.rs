//! Services that run both behind a web API, with shared long-lived clients, and as persisted
//! background jobs, with temporary clients, from one struct.
//!
//! A service holds live clients (`reqwest::Client`, Redis connections) next to its config.
//! Request handlers want the clients shared; a job system must serialize its jobs, and a live
//! client cannot be serialized. `#[derive(DualMode)]` marks the shared fields and generates:
//!
//! * **the job spec**, `ServiceSpec`: the spec fields only (never a client or a secret),
//!   `Serialize + Deserialize + Clone + Debug`, with the fields' `#[serde]` attributes;
//! * **the parts**, `ServiceParts`: the spec fields plus an `Option` per shared and secret field
//!   (`Some`: use this client; `None`: open a temporary one on enter) and the parts of nested
//!   services;
//! * **the guard**: `parts.enter().await?` opens what is missing and returns a [`Guard`] that
//!   derefs to the complete service; `guard.exit().await` closes exactly what it opened. The
//!   scoped `spec.run(async |svc| ...)` exits on every path: `Ok`, `Err`, panic, cancellation;
//! * **API mode**: `Service::from_state(spec, &state)` takes every client from axum app state
//!   through `FromRef` (feature `axum`);
//! * **worker mode**: `ServiceParts::from_context(spec, &ctx)` borrows the warm clients of a
//!   [`Context`] (and the secrets it holds under their source name, such as
//!   `ctx.insert_keyed("ESI_TOKEN", Secret::new(token))`) and opens only what it lacks.
//!
//! ```no_run
//! use dual_mode::{DualMode, Secret};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Settings {
//!     pub base_url: String,
//! }
//!
//! #[derive(DualMode)]
//! pub struct Greeter {
//!     pub settings: Settings,                       // spec field
//!     #[dual_mode(secret, env = "GREETER_TOKEN")]   // never serialized, read on enter
//!     pub token: Secret<String>,
//!     #[dual_mode(shared)]                          // a live client, default config
//!     pub http: reqwest::Client,
//!     #[dual_mode(shared, config = redis_url)]      // its URL is a secret too
//!     pub redis: redis::aio::ConnectionManager,
//!     #[dual_mode(secret, env = "GREETER_REDIS_URL")]
//!     pub redis_url: Secret<String>,
//! }
//!
//! impl Greeter {
//!     // Business methods use plain fields: no Option, no unwrap.
//!     pub async fn greet(&self) -> Result<String, dual_mode::BoxError> {
//!         let url = &self.settings.base_url;
//!         Ok(self.http.get(url).bearer_auth(self.token.expose()).send().await?.text().await?)
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let spec = GreeterSpec { settings: Settings { base_url: "http://127.0.0.1:8080/".into() } };
//! let json = serde_json::to_string(&spec)?; // what a queue stores: no client, no secret
//!
//! // Job mode: temporary clients, closed on every path. The body's error type takes
//! // `dual_mode::Error` too (enter and exit failures); `BoxError` does.
//! let text = spec.clone().run(async |greeter: &Greeter| greeter.greet().await).await?;
//!
//! // Or hold a guard explicitly.
//! let guard = GreeterParts::from(spec).enter().await?;
//! let again = guard.greet().await?;
//! guard.exit().await?;
//! # let _ = (json, text, again);
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! * Secrets are resolved first, then shared clients are opened in field order; a failed open
//!   closes the ones already opened before its [`EnterError`] returns. An open that panics
//!   (a client builder, an `open = path` function) is a failed open of its field, not a panic.
//! * Within one enter, one temporary client is opened per type, key and config: a nested
//!   service shares its parent's temporary Redis connection to the same URL, and gets its own
//!   for another URL or database ([`Resource::share_key`]).
//! * Only what the guard opened is closed; injected and borrowed clients are untouched.
//! * Closes run in reverse order, in a task spawned on the current tokio runtime, so a
//!   cancellation that lands inside `exit` cannot interrupt them. Every client gets its close;
//!   failures are collected in an [`ExitError`]. A guard dropped without `exit` spawns the close
//!   and warns through `tracing`.
//! * `from_state` takes one value per type from the app state; a service with two fields of
//!   one type (two keyed clients, two `Secret<String>`) gets a compile error naming the type
//!   when it calls `from_state`: give the fields distinct (newtype) types.
//! * A shared field's type is a cheap-to-clone handle implementing [`Resource`] (or uses
//!   `open = path`). Built in: `reqwest::Client` of reqwest 0.13 (feature `reqwest`, on one
//!   process-wide TLS configuration) and of reqwest 0.12 (feature `reqwest-0-12`, off by
//!   default, on the same configuration), and redis 1.x's `MultiplexedConnection`,
//!   `ConnectionManager` and the cluster's `ClusterConnection` (feature `redis`). `dual_mode::reqwest`
//!   and `dual_mode::redis` name exactly these versions. Off by default, each behind a feature
//!   named after its crate: sqlx's `PgPool`, `MySqlPool` and `SqlitePool` (`sqlx-postgres`,
//!   `sqlx-mysql`, `sqlx-sqlite`) and `AnyPool` (`sqlx-any`, on the drivers of those features),
//!   deadpool-postgres's `Pool` (`deadpool-postgres`) and
//!   sea-orm's `DatabaseConnection` (`sea-orm`), opened from a database URL and closed, not only
//!   dropped; reqwest-middleware's `ClientWithMiddleware` (`reqwest-middleware`).
//! * The `reqwest` feature turns on reqwest's `rustls` feature, its default TLS with its own
//!   crypto provider: clients that your code builds with `reqwest::Client::builder()` work
//!   whether your crate keeps reqwest's default features or turns them off.
//! * The `redis-tls` feature (on by default) lets redis connections and the job layer take
//!   `rediss://` URLs, with rustls and the same crypto provider (aws-lc-rs); without it such a
//!   URL is refused with a typed error.
//!
//! # Attributes
//!
//! | attribute | on | meaning |
//! |---|---|---|
//! | `#[dual_mode(spec = Name, parts = Name)]` | struct | rename the generated types |
//! | `#[dual_mode(version = N)]` | struct | schema version stored with queued specs (default 1) |
//! | `#[dual_mode(shared)]` | field | a client opened by [`Resource::open`] with its config's `Default` |
//! | `#[dual_mode(shared, config = a.b)]` | field | ... with the config at that path of a spec or secret field |
//! | `#[dual_mode(shared, open = path)]` | field | ... by `async fn(&Spec) -> Result<T, E>`; `close = path` adds an `async fn(T) -> Result<(), E>` |
//! | `#[dual_mode(shared, key = "name")]` | field | tells two fields of one type apart in a [`Context`] |
//! | `#[dual_mode(crate = path)]` | struct | where generated code finds this crate (default `::dual_mode`), for re-exports |
//! | `#[dual_mode(bound = "T: Trait, ...")]` | struct | replaces the bounds inferred from field types, as serde's `bound` |
//! | `#[dual_mode(secret, env = "NAME")]` | field | a secret left out of the spec, read from the environment on enter |
//! | `#[dual_mode(secret, file = "/run/secrets/name")]` | field | ... read from a file (one trailing line break dropped), as Docker and Kubernetes mount secrets |
//! | `#[dual_mode(nested)]` | field | a service inside this one: its spec and parts nest, its clients share this scope |
//! | `#[dual_mode(not_secret)]` | field | a spec field whose name looks like a credential (`token_bucket_size`) but is not one |
//!
//! Every other field is a spec field: `Serialize + Deserialize + Clone + Debug`. A spec field
//! named like a credential (`api_key`, `token`, `password`, `secret`, ...) gets a warning that
//! names `#[dual_mode(secret, ...)]`, because the spec is written into every queued job.
//!
//! A secret field is a [`Secret<T>`], or with the `secrecy` feature (on by default)
//! `secrecy::SecretString` or `secrecy::SecretBox<T>`, whose memory is zeroized on drop.
//! A [`Secret`] is never serialized: inside a type that derives `Serialize` it is a compile
//! error.
//!
//! # Generics
//!
//! The generated impls bound the types of the fields that use a type parameter, as serde
//! does, never the parameter itself: `backend: B::Config` requires `B::Config` to be a spec
//! field type, and a marker `B` needs no derives. The spec keeps only the parameters its
//! fields use.

pub use dual_mode_derive::DualMode;
pub use dual_mode_runtime::*;

/// The job layer (feature `jobs`): queues, workers and schedules of service specs, in process,
/// on Redis (feature `jobs-redis`, on by default) or on Postgres (feature `jobs-postgres`). See
/// [`dual_mode_jobs`], [`dual_mode_redis`] and `dual_mode_postgres`.
#[cfg(feature = "jobs")]
pub mod jobs {
    pub use dual_mode_jobs::*;
    #[cfg(feature = "jobs-postgres")]
    pub use dual_mode_postgres::{MigrateError, Postgres, PostgresTarget};
    #[cfg(feature = "jobs-redis")]
    pub use dual_mode_redis::{Redis, RedisTarget};
}

/// Metrics of guards and jobs (feature `metrics`): see [`dual_mode_runtime::metrics`].
#[cfg(feature = "metrics")]
pub mod metrics {
    #[cfg(feature = "jobs")]
    pub use dual_mode_jobs::record_depth;
    pub use dual_mode_runtime::metrics::*;
}
