//! The example's settings and its secrets.
//!
//! [`Settings`] is a spec field of both services, so it travels in every queued job: it holds
//! nothing secret. The ESI token and the database URL (which can carry a password,
//! `postgres://user:pw@host/db`) are [`Secret`](dual_mode::Secret) fields of the services
//! instead, read from `ESI_TOKEN` and `DATABASE_URL`, never serialized. The queue's Redis URL
//! (`REDIS_URL`, when the queue is on Redis) is the process's, not a service's.
//!
//! The secrets are newtypes rather than `Secret<String>`: in API mode every secret comes from
//! the app state through `FromRef`, by type, so two `Secret<String>` fields would get the same
//! value (the token would be the database URL). Distinct types keep them apart.

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use dual_mode::HttpConfig;
use serde::{Deserialize, Serialize};

/// The real ESI's base URL, the default. `https://esi.evetech.net/latest` works too.
pub const REAL_ESI: &str = "https://esi.evetech.net";

/// The real ESI's host: calls to it need a `User-Agent` with a real contact.
pub const REAL_ESI_HOST: &str = "esi.evetech.net";

/// The `User-Agent` the settings start with. Its contact is a placeholder: the real ESI is
/// refused with it ([`Settings::check_contact`]); set `--user-agent` or `ESI_USER_AGENT`.
pub const PLACEHOLDER_USER_AGENT: &str = concat!(
    "dual-mode-esi-example/",
    env!("CARGO_PKG_VERSION"),
    " (+https://example.invalid/dual-mode; ops@example.invalid)"
);

/// What the services need to know, the same in API mode and in job mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// ESI's base URL, without a trailing slash: `https://esi.evetech.net` (or its versioned
    /// form, `https://esi.evetech.net/latest`), or the stand-in's `http://127.0.0.1:PORT`.
    pub esi_url: String,
    /// How temporary HTTP clients are built. Its `user_agent` is also sent on every request,
    /// so a shared client built elsewhere identifies the example the same way (ESI asks for a
    /// `User-Agent` naming the application and a contact, an email preferably).
    pub http: HttpConfig,
    /// The regions the schedule re-aggregates.
    pub regions: Vec<i32>,
    /// How long a cached page (body and `ETag`) is kept in the database after it was last stored.
    /// It is served without a request until its `Expires`, then revalidated with
    /// `If-None-Match` as long as it is kept.
    pub cache_ttl_secs: u64,
    /// Back off when `X-ESI-Error-Limit-Remain` is at or below this, until the window resets
    /// (routes without a rate-limit group).
    pub error_limit_floor: u32,
    /// Pace the route to its refill rate when `X-Ratelimit-Remaining` is at or below this many
    /// tokens (a `2xx` costs 2).
    pub rate_limit_floor: u64,
    /// The longest pause waited inside a call (a rate-limit or error-limit pause, a `5xx`
    /// retry's delay, the wait for page 1 to turn over); a longer one fails the call at once
    /// with the time to wait. 0: never wait (the API).
    pub max_backoff_secs: u64,
    /// How many times a walk over the pages starts again when the cache turns over under it.
    pub walk_restarts: u32,
    /// A walk does not start when page 1 expires within this many seconds.
    pub walk_margin_secs: u64,
    /// How many times a `5xx` is retried.
    pub server_retries: u32,
    /// The delay before the first `5xx` retry, doubling with each one.
    pub server_retry_base_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let http = HttpConfig {
            user_agent: Some(PLACEHOLDER_USER_AGENT.to_owned()),
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
            rate_limit_floor: 10,
            max_backoff_secs: 70,
            walk_restarts: 3,
            walk_margin_secs: 10,
            server_retries: 3,
            server_retry_base_ms: 500,
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
        self.http.user_agent.as_deref().unwrap_or(PLACEHOLDER_USER_AGENT)
    }

    /// Whether the base URL ends in a version segment (`/latest`, `/dev`, `/legacy`, `/v1`,
    /// ...), which takes ESI's versioned paths.
    #[must_use]
    pub fn is_versioned_url(&self) -> bool {
        let last = self.esi_url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        matches!(last, "latest" | "dev" | "legacy")
            || last.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Refuses the real ESI with a `User-Agent` whose contact is missing or a placeholder.
    ///
    /// # Errors
    /// A [`ContactError`], which says what to set.
    pub fn check_contact(&self) -> Result<(), ContactError> {
        let host = reqwest::Url::parse(&self.esi_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        if host.as_deref() != Some(REAL_ESI_HOST) {
            return Ok(());
        }
        let agent = self.user_agent().to_ascii_lowercase();
        let placeholder = ["example.invalid", "example.com", "example.org", "example.net"]
            .iter()
            .any(|domain| agent.contains(domain));
        if placeholder || !agent.contains('@') {
            return Err(ContactError { user_agent: self.user_agent().to_owned() });
        }
        Ok(())
    }
}

/// The settings would call the real ESI with a `User-Agent` whose contact is missing or a
/// placeholder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to call {REAL_ESI_HOST} with the User-Agent {user_agent:?}: ESI needs one that names the \
     application and a real contact, an email preferably; set --user-agent or ESI_USER_AGENT, \
     e.g. \"my-app/1.0 (me@my.domain)\""
)]
pub struct ContactError {
    /// The `User-Agent` refused.
    pub user_agent: String,
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

/// A database URL (`sqlite://...` or `postgres://...`), which may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
}

impl FromStr for DatabaseUrl {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(***)")
    }
}
