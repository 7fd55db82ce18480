//! The example's settings and its two secrets.
//!
//! [`Settings`] is a spec field of both services, so it travels in every queued job: it holds
//! nothing secret. The ESI token and the Redis URL (which can carry a password,
//! `redis://:pw@host`) are [`Secret`](dual_mode::Secret) fields of the services instead, read
//! from `ESI_TOKEN` and `REDIS_URL`, never serialized.
//!
//! The secrets are newtypes rather than `Secret<String>`: in API mode every secret comes from
//! the app state through `FromRef`, by type, so two `Secret<String>` fields would get the same
//! value (the token would be the Redis URL). Distinct types keep them apart.

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use dual_mode::HttpConfig;
use serde::{Deserialize, Serialize};

/// The real ESI, for `--esi-url`.
pub const REAL_ESI: &str = "https://esi.evetech.net/latest";

/// What the services need to know, the same in API mode and in job mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// ESI's base URL, without a trailing slash: `https://esi.evetech.net/latest`, or the
    /// stand-in's `http://127.0.0.1:PORT/latest`.
    pub esi_url: String,
    /// How temporary HTTP clients are built. Its `user_agent` is also sent on every request,
    /// so a shared client built elsewhere identifies the example the same way (ESI asks for a
    /// descriptive `User-Agent` with contact information).
    pub http: HttpConfig,
    /// The regions the schedule re-aggregates.
    pub regions: Vec<i32>,
    /// How long a cached page (body and `ETag`) is kept in Redis after it was last stored.
    /// It is served without a request until its `Expires`, then revalidated with
    /// `If-None-Match` as long as it is kept.
    pub cache_ttl_secs: u64,
    /// Back off when `X-ESI-Error-Limit-Remain` is at or below this, until the window resets.
    pub error_limit_floor: u32,
    /// The longest back-off waited inside a request; a longer one fails the call with
    /// [`EsiError::ErrorLimited`](crate::esi::EsiError) (a job is then retried later).
    pub max_backoff_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let http = HttpConfig {
            user_agent: Some(format!(
                "dual-mode-esi-example/{} (+https://example.invalid/dual-mode; ops@example.invalid)",
                env!("CARGO_PKG_VERSION")
            )),
            timeout_ms: Some(30_000),
            connect_timeout_ms: Some(5_000),
            ..HttpConfig::default()
        };
        Self {
            esi_url: REAL_ESI.to_owned(),
            http,
            regions: vec![10_000_002, 10_000_043, 10_000_032],
            cache_ttl_secs: 24 * 60 * 60,
            error_limit_floor: 10,
            max_backoff_secs: 70,
        }
    }
}

impl Settings {
    /// Default settings against the ESI at `esi_url` (a trailing `/` is dropped).
    #[must_use]
    pub fn for_esi(esi_url: &str) -> Self {
        Self { esi_url: esi_url.trim_end_matches('/').to_owned(), ..Self::default() }
    }

    /// The `User-Agent` sent with every request.
    #[must_use]
    pub fn user_agent(&self) -> &str {
        self.http.user_agent.as_deref().unwrap_or("dual-mode-esi-example")
    }
}

/// The ESI access token. Public contracts need none: an empty token sends no
/// `Authorization` header.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EsiToken(String);

impl EsiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token, `None` when empty.
    #[must_use]
    pub fn bearer(&self) -> Option<&str> {
        Some(self.0.trim()).filter(|t| !t.is_empty())
    }
}

impl FromStr for EsiToken {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for EsiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EsiToken(***)")
    }
}

/// A Redis connection URL, which may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
}

impl FromStr for RedisUrl {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl Deref for RedisUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl(***)")
    }
}
