//! [`EsiError`]: why a call to ESI failed, and what the caller can do about it.

use std::time::Duration;

use crate::settings::ContactError;

/// Why a call to ESI failed.
///
/// `Display` says what failed at this level; the cause, when there is one, is in
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum EsiError {
    /// `404` for page 1: no such region.
    #[error("ESI 404 for {url}: {message}")]
    NotFound {
        /// The request.
        url: String,
        /// ESI's `error` text.
        message: String,
    },
    /// `420`, or an error-limit back-off longer than [`Settings::max_backoff_secs`](crate::settings::Settings::max_backoff_secs).
    #[error("ESI error limit reached for {url} (resets in {reset_secs} s): {message}")]
    ErrorLimited {
        /// The request.
        url: String,
        /// Seconds until the error-limit window resets.
        reset_secs: u64,
        /// ESI's `error` text, or why the client did not send the request.
        message: String,
    },
    /// `429`, or a pause of the route longer than [`Settings::max_backoff_secs`](crate::settings::Settings::max_backoff_secs).
    #[error("ESI rate limit reached for {url} (retry after {} s): {message}", ceil_secs(*.retry_after))]
    RateLimited {
        /// The request.
        url: String,
        /// How long to wait before the route may be called again.
        retry_after: Duration,
        /// ESI's `error` text, or why the client did not send the request.
        message: String,
    },
    /// The pages did not hold still: the cache turned over during every one of the allowed
    /// walks, or page 1 expires too soon to start one.
    #[error("ESI pages of region {region_id} changed during the walk: {detail}")]
    Inconsistent {
        /// The region.
        region_id: i32,
        /// What changed.
        detail: String,
        /// When a new walk can start, if known.
        retry_after: Option<Duration>,
    },
    /// A `5xx`, still failing after the retries.
    #[error("ESI server error {status} for {url}: {message}")]
    Server {
        /// The request.
        url: String,
        /// The status code.
        status: u16,
        /// ESI's `error` text.
        message: String,
    },
    /// Any other unexpected status (`400`, `403`, ...).
    #[error("ESI answered {status} for {url}: {message}")]
    Status {
        /// The request.
        url: String,
        /// The status code.
        status: u16,
        /// ESI's `error` text.
        message: String,
    },
    /// A `200` whose body is not a contract page, a missing `X-Pages`, or a `304` for a page
    /// that is no longer cached.
    #[error("bad ESI response for {url}: {detail}")]
    BadBody {
        /// The request.
        url: String,
        /// What is wrong.
        detail: &'static str,
        /// Why the body does not decode, when that is what is wrong.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The settings must not be used against this ESI (a placeholder contact for the real one).
    #[error(transparent)]
    Refused(#[from] ContactError),
    /// The request did not get a response (connect, timeout, TLS).
    #[error("request to {url} failed")]
    Http {
        /// The request.
        url: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// The page cache failed.
    #[error("ESI page cache ({op}) failed")]
    Cache {
        /// What was being done.
        op: &'static str,
        /// The database's error.
        source: sqlx::Error,
    },
}

impl EsiError {
    /// Whether trying again cannot help: no such region, an unexpected `4xx` (a `400` or
    /// `403` will be the same next time), or settings refused. A bad body is worth a retry:
    /// ESI serves a truncated page now and then.
    #[must_use]
    pub const fn is_permanent(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::Status { .. } | Self::Refused { .. })
    }

    /// How long to wait before calling again, when ESI (or the shared pause) said so.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::ErrorLimited { reset_secs, .. } => Some(Duration::from_secs((*reset_secs).max(1))),
            Self::Inconsistent { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whole seconds, rounded up: what a `Retry-After` header says.
#[must_use]
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
