//! The derive's output is clean under strict lints, public items included, and uses only
//! fully qualified paths: `Result`, `Ok`, `Option`, `Some`, `Box` and friends are shadowed here.
#![deny(warnings, unused_qualifications, missing_docs, clippy::pedantic)]

use dual_mode::{DualMode, Secret};
use serde::{Deserialize, Serialize};

/// Shadows `core::result::Result`.
#[allow(dead_code, reason = "shadowing only")]
struct Result;
/// Shadows `Ok`.
#[allow(dead_code, reason = "shadowing only")]
struct Ok;
/// Shadows `Err`.
#[allow(dead_code, reason = "shadowing only")]
struct Err;
/// Shadows `Option`.
#[allow(dead_code, reason = "shadowing only")]
struct Option;
/// Shadows `Some`.
#[allow(dead_code, reason = "shadowing only")]
struct Some;
/// Shadows `None`.
#[allow(dead_code, reason = "shadowing only")]
struct None;
/// Shadows `Box`.
#[allow(dead_code, reason = "shadowing only")]
struct Box;
/// Shadows `Clone`, `Debug`, `Default`, `Send`, `From`.
#[allow(dead_code, reason = "shadowing only")]
trait Clone {}
#[allow(dead_code, reason = "shadowing only")]
trait Debug {}
#[allow(dead_code, reason = "shadowing only")]
trait Send {}
#[allow(dead_code, reason = "shadowing only")]
trait From {}
/// Shadows the crate names generated code must not rely on.
#[allow(dead_code, reason = "shadowing only")]
mod serde_json {}
#[allow(dead_code, reason = "shadowing only")]
mod core {}
#[allow(dead_code, reason = "shadowing only")]
mod std {}

/// Settings of the linted service.
#[derive(::core::clone::Clone, ::core::fmt::Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Settings {
    /// Where Redis is.
    pub redis_url: String,
}

/// A public service with every kind of field.
#[derive(DualMode)]
pub struct Linted {
    /// Spec field.
    pub settings: Settings,
    /// Secret field.
    #[dual_mode(secret, env = "CARGO_PKG_NAME")]
    pub token: Secret<String>,
    /// Shared field with the default config.
    #[dual_mode(shared)]
    pub http: reqwest::Client,
    /// Shared field with a config path.
    #[dual_mode(shared, config = settings.redis_url)]
    pub redis: redis::aio::MultiplexedConnection,
    /// Nested service.
    #[dual_mode(nested)]
    pub inner: Inner,
}

/// A nested public service.
#[derive(DualMode)]
pub struct Inner {
    /// Spec field.
    pub label: String,
}

#[test]
fn the_linted_service_works() {
    let spec = LintedSpec {
        settings: Settings { redis_url: "redis://127.0.0.1:1/".into() },
        inner: InnerSpec { label: "x".into() },
    };
    let parts: LintedParts = spec.clone().into();
    assert!(parts.http.is_none() && parts.redis.is_none() && parts.token.is_none());
    assert_eq!(parts.inner.label, "x");
    assert_eq!(
        <LintedSpec as dual_mode::Spec>::from_json(&dual_mode::Spec::to_json(&spec).unwrap()).unwrap().settings,
        spec.settings
    );
}

/// A backend chosen by type.
pub trait Backend {
    /// Its config, which goes into the spec.
    type Config: ::core::clone::Clone
        + ::core::fmt::Debug
        + Serialize
        + for<'de> Deserialize<'de>
        + ::core::marker::Send
        + ::core::marker::Sync
        + 'static;
}

/// A backend that is only a marker: no derives.
pub struct Memory;

impl Backend for Memory {
    type Config = Settings;
}

/// A generic public service with a file secret, a config read from it, and its own opener.
#[derive(DualMode)]
pub struct Generic<B: Backend> {
    /// Spec field of a parameter's type.
    pub backend: B::Config,
    /// A secret from a file, wiped on drop.
    #[dual_mode(secret, file = "/run/secrets/redis-url")]
    pub redis_url: secrecy::SecretString,
    /// Shared field whose config is that secret.
    #[dual_mode(shared, config = redis_url)]
    pub redis: redis::aio::ConnectionManager,
    /// Shared field with its own open and close.
    #[dual_mode(shared, key = "custom", open = open_http, close = close_http)]
    pub custom: reqwest::Client,
}

#[allow(clippy::unused_async, reason = "`open = path` names an async fn")]
async fn open_http<B: Backend>(_: &GenericSpec<B>) -> ::core::result::Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().build()
}

#[allow(clippy::unused_async, reason = "`close = path` names an async fn")]
async fn close_http(client: reqwest::Client) -> ::core::result::Result<(), reqwest::Error> {
    drop(client);
    ::core::result::Result::Ok(())
}

#[test]
fn the_linted_generic_service_works() {
    let spec = GenericSpec::<Memory> { backend: Settings { redis_url: "unused".into() } };
    let parts: GenericParts<Memory> = spec.clone().into();
    assert!(parts.redis_url.is_none() && parts.redis.is_none() && parts.custom.is_none());
    assert_eq!(format!("{spec:?}"), r#"GenericSpec { backend: Settings { redis_url: "unused" } }"#);
}
