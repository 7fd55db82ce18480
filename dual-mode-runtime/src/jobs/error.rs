//! Typed errors of the job layer.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error a handler returns; any `std::error::Error` converts into it.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An operation of the queue, worker or scheduler that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum QueueError {
    /// A Redis command or script failed.
    Redis {
        /// What the layer was doing, e.g. `"push"` or `"read group"`.
        op: &'static str,
        /// The error the redis client returned.
        source: redis::RedisError,
    },
    /// A payload could not be serialized to JSON.
    Encode {
        /// The type name the payload was pushed under.
        type_name: String,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// Redis answered with a reply of a shape the layer does not expect.
    Protocol {
        /// What the layer was doing.
        op: &'static str,
        /// What was wrong with the reply.
        detail: String,
    },
    /// A configuration value is out of range.
    Config(String),
    /// A cron expression did not parse.
    Cron(CronError),
    /// A spec could not be serialized.
    Spec(crate::SpecError),
}

impl QueueError {
    pub(crate) fn redis(op: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| Self::Redis { op, source }
    }

    pub(crate) fn protocol(op: &'static str, detail: impl Into<String>) -> Self {
        Self::Protocol { op, detail: detail.into() }
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis { op, source } => write!(f, "redis error during {op}: {source}"),
            Self::Encode { type_name, source } => {
                write!(f, "cannot serialize a `{type_name}` payload to JSON: {source}")
            }
            Self::Protocol { op, detail } => {
                write!(f, "unexpected redis reply during {op}: {detail}")
            }
            Self::Config(detail) => write!(f, "invalid job layer configuration: {detail}"),
            Self::Cron(e) => write!(f, "{e}"),
            Self::Spec(e) => write!(f, "cannot serialize the spec: {e}"),
        }
    }
}

impl StdError for QueueError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Redis { source, .. } => Some(source),
            Self::Encode { source, .. } => Some(source),
            Self::Cron(e) => Some(e),
            Self::Spec(e) => Some(e),
            Self::Protocol { .. } | Self::Config(_) => None,
        }
    }
}

impl From<CronError> for QueueError {
    fn from(e: CronError) -> Self {
        Self::Cron(e)
    }
}

/// Why an entry was moved to the dead-letter (parked) stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParkReason {
    /// The stream entry lacks a field of the envelope, or a field is not valid (e.g. an attempt
    /// that is not a number, a type name that is not UTF-8).
    MalformedEntry,
    /// No handler of this worker is registered for the entry's type name.
    UnknownType,
    /// The payload bytes are not UTF-8.
    NotUtf8,
    /// The payload is not JSON (a syntax error or truncated input).
    NotJson,
    /// The payload is JSON of the wrong shape (a wrong type somewhere).
    WrongShape,
    /// The payload names an enum variant the type does not have.
    UnknownVariant,
    /// The payload lacks a required field.
    MissingField,
    /// The payload has a field the type refuses (`deny_unknown_fields`).
    UnknownField,
    /// The handler failed on every allowed attempt; the last error is kept.
    Exhausted,
    /// The handler returned a permanent error ([`JobError::Permanent`]); not retried.
    Rejected,
    /// The entry was delivered more often than the worker allows (a poison entry that kills
    /// the worker process that runs it, so its attempts are never counted).
    TooManyDeliveries,
    /// The entry's schema version is newer than the worker's spec type: it was pushed by a
    /// newer release. Re-drive it once the workers run that release.
    NewerVersion,
}

impl ParkReason {
    /// Every reason, for listings and tests.
    pub const ALL: [Self; 12] = [
        Self::MalformedEntry,
        Self::UnknownType,
        Self::NotUtf8,
        Self::NotJson,
        Self::WrongShape,
        Self::UnknownVariant,
        Self::MissingField,
        Self::UnknownField,
        Self::Exhausted,
        Self::Rejected,
        Self::TooManyDeliveries,
        Self::NewerVersion,
    ];

    /// The stable code stored in the parked entry, e.g. `"missing_field"`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::MalformedEntry => "malformed_entry",
            Self::UnknownType => "unknown_type",
            Self::NotUtf8 => "not_utf8",
            Self::NotJson => "not_json",
            Self::WrongShape => "wrong_shape",
            Self::UnknownVariant => "unknown_variant",
            Self::MissingField => "missing_field",
            Self::UnknownField => "unknown_field",
            Self::Exhausted => "exhausted",
            Self::Rejected => "rejected",
            Self::TooManyDeliveries => "too_many_deliveries",
            Self::NewerVersion => "newer_version",
        }
    }

    /// The reason whose [`code`](Self::code) is `code`.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Whether the payload itself is bad (re-driving it unchanged parks it again).
    #[must_use]
    pub const fn is_decode(self) -> bool {
        matches!(
            self,
            Self::NotUtf8
                | Self::NotJson
                | Self::WrongShape
                | Self::UnknownVariant
                | Self::MissingField
                | Self::UnknownField
        )
    }
}

impl fmt::Display for ParkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A payload that could not be decoded into the handler's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Which kind of bad payload this is (one of the decode reasons of [`ParkReason`]).
    pub reason: ParkReason,
    /// The type the payload was decoded into.
    pub type_name: String,
    /// The path of the offending field (`"items[2].price"`), when known.
    pub path: Option<String>,
    /// The decoder's message.
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode a `{}` payload ({})", self.type_name, self.reason)?;
        if let Some(path) = &self.path {
            write!(f, " at `{path}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl StdError for DecodeError {}

/// What a job handler returns on failure; the variant decides what the worker does next.
#[derive(Debug)]
#[non_exhaustive]
pub enum JobError {
    /// The payload did not decode: parked at once with the decode reason, never retried.
    Decode(DecodeError),
    /// A failure that may pass: retried with backoff until the attempts run out, then parked
    /// as [`ParkReason::Exhausted`] with this error as the last error.
    Failed(BoxError),
    /// A failure that retrying cannot fix: parked at once as [`ParkReason::Rejected`].
    Permanent(BoxError),
    /// The job cannot run yet, and knows for how long (a remote answered HTTP 429 with
    /// `Retry-After`): it is delayed that long and runs again with the same attempt number.
    /// No attempt is burnt, so a job can be told to wait any number of times.
    RetryAfter {
        /// How long to wait before the next try.
        after: std::time::Duration,
        /// Why the job has to wait.
        source: BoxError,
    },
}

impl JobError {
    /// A retryable failure from any error or message.
    pub fn failed(e: impl Into<BoxError>) -> Self {
        Self::Failed(e.into())
    }

    /// A permanent failure from any error or message.
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        Self::Permanent(e.into())
    }

    /// A wait imposed from outside: run again after `after`, without counting an attempt.
    pub fn retry_after(after: std::time::Duration, e: impl Into<BoxError>) -> Self {
        Self::RetryAfter { after, source: e.into() }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "{e}"),
            Self::Failed(e) => write!(f, "job failed: {e}"),
            Self::Permanent(e) => write!(f, "job failed permanently: {e}"),
            Self::RetryAfter { after, source } => write!(f, "job must wait {after:?}: {source}"),
        }
    }
}

impl StdError for JobError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            Self::Failed(e) | Self::Permanent(e) | Self::RetryAfter { source: e, .. } => Some(&**e),
        }
    }
}

impl From<DecodeError> for JobError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// A cron expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    /// The expression as given.
    pub expr: String,
    /// What is wrong with it.
    pub detail: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid cron expression `{}`: {}", self.expr, self.detail)
    }
}

impl StdError for CronError {}
