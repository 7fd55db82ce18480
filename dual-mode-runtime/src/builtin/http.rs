//! `reqwest::Client` as a [`Resource`].

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::Resource;

/// How a temporary `reqwest::Client` is built. Every field is optional; the `Default` is
/// reqwest's own defaults, so a `#[dual_mode(shared)] http: reqwest::Client` field needs no
/// `config`.
///
/// ```
/// let config = dual_mode::HttpConfig {
///     user_agent: Some("my-app/1.0 (ops@example.com)".into()),
///     timeout_ms: Some(10_000),
///     ..Default::default()
/// };
/// assert_eq!(config.connect_timeout_ms, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// Total timeout of one request, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Timeout of the TCP (and TLS) connect, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: Option<usize>,
}

/// `builder` with `config`'s fields applied: one place for reqwest 0.13's and 0.12's builders
/// (the same methods on two types), so that a field added to [`HttpConfig`] reaches both.
macro_rules! apply_config {
    ($config:expr, $builder:expr) => {{
        let (config, mut b) = ($config, $builder);
        if let Some(ua) = &config.user_agent {
            b = b.user_agent(ua.clone());
        }
        if let Some(ms) = config.timeout_ms {
            b = b.timeout(::std::time::Duration::from_millis(ms));
        }
        if let Some(ms) = config.connect_timeout_ms {
            b = b.connect_timeout(::std::time::Duration::from_millis(ms));
        }
        if let Some(n) = config.pool_max_idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        b
    }};
}
#[cfg_attr(not(feature = "reqwest-0-12"), allow(unused_imports, reason = "used by the 0.12 builder"))]
pub(crate) use apply_config;

impl HttpConfig {
    /// A `reqwest::ClientBuilder` with this config on the process-wide TLS configuration.
    ///
    /// Building a client on it costs microseconds, where `reqwest::Client::new()` re-reads the
    /// system's CA store each time (milliseconds).
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder();
        if let Some(tls) = tls_config() {
            b = b.tls_backend_preconfigured(tls.as_ref().clone());
        }
        apply_config!(self, b)
    }
}

/// The process-wide rustls configuration (aws-lc-rs provider, as reqwest's own default, and the platform's verifier), built once.
/// `None` when the platform's verifier cannot be set up; reqwest then builds its own.
pub(super) fn tls_config() -> Option<&'static Arc<rustls::ClientConfig>> {
    static TLS: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    TLS.get_or_init(|| {
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let built = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(BuilderVerifierExt::with_platform_verifier)
            .map(|b| Arc::new(b.with_no_client_auth()));
        match built {
            Ok(config) => Some(config),
            Err(e) => {
                tracing::warn!(error = %e, "no process-wide TLS configuration; each client builds its own");
                None
            }
        }
    })
    .as_ref()
}

impl Resource for reqwest::Client {
    type Config = HttpConfig;
    type Error = reqwest::Error;

    async fn open(config: &HttpConfig) -> Result<Self, reqwest::Error> {
        config.builder().build()
    }

    /// Fields with equal HTTP configs share one client within an enter.
    fn share_key(config: &HttpConfig) -> u64 {
        let mut h = DefaultHasher::new();
        config.hash(&mut h);
        h.finish()
    }
}
