//! reqwest-middleware's `ClientWithMiddleware` as a [`Resource`] (feature
//! `reqwest-middleware`), built on the same process-wide TLS configuration as
//! `reqwest::Client`.

use std::hash::{DefaultHasher, Hash, Hasher};

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

use super::http::HttpConfig;
use crate::Resource;

impl HttpConfig {
    /// A reqwest-middleware builder over a client of this config (on the process-wide TLS
    /// configuration): add your middleware and `build()`. Use it in an `open = path` function
    /// of the spec to give a `ClientWithMiddleware` field its stack.
    ///
    /// ```
    /// use dual_mode::{DualMode, HttpConfig};
    /// use reqwest_middleware::ClientWithMiddleware;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Debug, Serialize, Deserialize)]
    /// struct Settings {
    ///     http: HttpConfig,
    /// }
    ///
    /// #[derive(DualMode)]
    /// struct Api {
    ///     settings: Settings,
    ///     #[dual_mode(shared, open = with_stack)]
    ///     http: ClientWithMiddleware,
    /// }
    ///
    /// /// The middleware stack, from the spec.
    /// async fn with_stack(spec: &ApiSpec) -> Result<ClientWithMiddleware, reqwest::Error> {
    ///     let tag = reqwest_middleware::Extension("api");
    ///     Ok(spec.settings.http.middleware()?.with_init(tag).build())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// reqwest's, when the client cannot be built.
    pub fn middleware(&self) -> Result<ClientBuilder, reqwest::Error> {
        Ok(ClientBuilder::new(self.builder().build()?))
    }
}

/// `ClientWithMiddleware` (feature `reqwest-middleware`) without middleware: config, an
/// [`HttpConfig`] (so `config` may be omitted). For a stack, see [`HttpConfig::middleware`].
/// Its close is a drop, as for `reqwest::Client`.
///
/// ```
/// use dual_mode::DualMode;
///
/// #[derive(DualMode)]
/// struct Fetcher {
///     #[dual_mode(shared)]
///     http: reqwest_middleware::ClientWithMiddleware,
/// }
/// ```
impl Resource for ClientWithMiddleware {
    type Config = HttpConfig;
    type Error = reqwest::Error;

    async fn open(config: &HttpConfig) -> Result<Self, reqwest::Error> {
        Ok(config.middleware()?.build())
    }

    /// Fields with equal HTTP configs share one client within an enter.
    fn share_key(config: &HttpConfig) -> u64 {
        let mut h = DefaultHasher::new();
        config.hash(&mut h);
        h.finish()
    }
}
