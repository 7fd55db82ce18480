//! [`EsiError`]: why a call to ESI failed, and what the caller can do about it.

use std::fmt;
use std::time::Duration;

/// Why a call to ESI failed.
#[derive(Debug)]
pub enum EsiError {
    /// `404` for page 1: no such region.
    NotFound {
        /// The request.
        url: String,
        /// ESI's `error` text.
        message: String,
    },
    /// `420`, or an error-limit back-off longer than [`Settings::max_backoff_secs`](crate::settings::Settings::max_backoff_secs).
    ErrorLimited {
        /// The request.
        url: String,
        /// Seconds until the error-limit window resets.
        reset_secs: u64,
        /// ESI's `error` text, or why the client did not send the request.
        message: String,
    },
    /// `429`, or a pause of the route longer than [`Settings::max_backoff_secs`](crate::settings::Settings::max_backoff_secs).
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
    Inconsistent {
        /// The region.
        region_id: i32,
        /// What changed.
        detail: String,
        /// When a new walk can start, if known.
        retry_after: Option<Duration>,
    },
    /// A `5xx`, still failing after the retries.
    Server {
        /// The request.
        url: String,
        /// The status code.
        status: u16,
        /// ESI's `error` text.
        message: String,
    },
    /// Any other unexpected status (`400`, `403`, ...).
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
    BadBody {
        /// The request.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The settings must not be used against this ESI (a placeholder contact for the real one).
    Refused {
        /// What to set.
        reason: String,
    },
    /// The request did not get a response (connect, timeout, TLS).
    Http {
        /// The request.
        url: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// The page cache failed.
    Cache {
        /// What was being done.
        op: &'static str,
        /// Redis's error.
        source: redis::RedisError,
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

impl fmt::Display for EsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { url, message } => write!(f, "ESI 404 for {url}: {message}"),
            Self::ErrorLimited { url, reset_secs, message } => {
                write!(f, "ESI error limit reached for {url} (resets in {reset_secs} s): {message}")
            }
            Self::RateLimited { url, retry_after, message } => {
                write!(f, "ESI rate limit reached for {url} (retry after {} s): {message}", ceil_secs(*retry_after))
            }
            Self::Inconsistent { region_id, detail, .. } => {
                write!(f, "ESI pages of region {region_id} changed during the walk: {detail}")
            }
            Self::Server { url, status, message } => write!(f, "ESI server error {status} for {url}: {message}"),
            Self::Status { url, status, message } => write!(f, "ESI answered {status} for {url}: {message}"),
            Self::BadBody { url, detail } => write!(f, "bad ESI response for {url}: {detail}"),
            Self::Refused { reason } => f.write_str(reason),
            Self::Http { url, source } => write!(f, "request to {url} failed: {source}"),
            Self::Cache { op, source } => write!(f, "ESI page cache ({op}) failed: {source}"),
        }
    }
}

impl std::error::Error for EsiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Http { source, .. } => Some(source),
            Self::Cache { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Whole seconds, rounded up: what a `Retry-After` header says.
#[must_use]
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
