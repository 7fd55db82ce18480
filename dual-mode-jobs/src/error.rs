//! Typed errors of the job layer.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

pub use dual_mode_runtime::BoxError;

/// An operation of the queue, worker or scheduler that failed.
///
/// `Display` says what failed at this level; the cause is in [`source`](StdError::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The store refused a command or script (on Redis: a command's error reply).
    #[error("the store failed during {op}")]
    Store {
        /// What the layer was doing, e.g. `"push"` or `"read group"`.
        op: &'static str,
        /// The error the store's client returned (on Redis a `redis::RedisError`).
        source: BoxError,
    },
    /// The store could not be reached (down, restarting, failing over, or the network cut):
    /// the command was not answered within the response timeout or its connection failed.
    /// Nothing was lost that the store had; try again later. Workers and schedulers do so by
    /// themselves.
    #[error("the store is unreachable during {op}")]
    Unavailable {
        /// What the layer was doing.
        op: &'static str,
        /// The error the store's client returned (on Redis a `redis::RedisError`).
        source: BoxError,
    },
    /// The queue's consumer group does not exist (an operator destroyed it, or the stream was
    /// deleted); workers create it again.
    #[error("the consumer group `{group}` of stream `{stream}` does not exist")]
    MissingGroup {
        /// The stream.
        stream: String,
        /// The group.
        group: String,
    },
    /// A payload (a spec, or any value pushed) could not be serialized to JSON.
    #[error("cannot serialize a `{type_name}` payload to JSON")]
    Encode {
        /// The type name the payload was pushed under.
        type_name: String,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// Redis answered with a reply the layer cannot read (of another shape than expected, or
    /// holding a value that does not decode), or gave none in time.
    #[error("unexpected redis reply during {op}")]
    Protocol {
        /// What the layer was doing.
        op: &'static str,
        /// What was wrong with the reply.
        #[source]
        detail: ReplyError,
    },
    /// A configuration value is out of range.
    #[error("invalid job layer configuration: {0}")]
    Config(String),
    /// A cursor (a parked id, or a page's `next`) that names no place in the queue's lists:
    /// the caller's mistake, not the queue's.
    #[error("{cursor:?} is not a cursor of this queue")]
    BadCursor {
        /// The cursor as given.
        cursor: String,
    },
    /// An argument the call refuses, whatever the queue holds (a bulk push's options that set
    /// a key each job needs its own of).
    #[error("{what} refused: {reason}")]
    BadArgument {
        /// The argument, e.g. `"push_bulk options"`.
        what: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A parked entry kept only part of its fields (it had too many); re-driving it would push
    /// half an entry.
    #[error("parked entry {parked_id} kept only part of its {fields} fields and cannot be re-driven")]
    Truncated {
        /// The parked entry.
        parked_id: String,
        /// How many fields the original entry had.
        fields: usize,
    },
    /// A cron expression did not parse.
    #[error(transparent)]
    Cron(#[from] CronError),
    /// A spawned worker's task was aborted before it reported (its runtime shut down).
    #[error("the worker's task was aborted before it reported")]
    WorkerAborted,
}

impl QueueError {
    /// Whether Redis could not be reached ([`QueueError::Unavailable`]): the operation may
    /// succeed when tried again later.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// A store's answer of a shape the layer does not expect, during `op`.
    #[must_use]
    pub fn protocol(op: &'static str, detail: ReplyError) -> Self {
        Self::Protocol { op, detail }
    }
}

/// What was wrong with a reply of Redis (or a value it stored) that the layer could not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A value is of another type than its place holds (a number where a list belongs, bytes
    /// that are not UTF-8 where text belongs).
    #[error("{what} is not {expected}")]
    WrongType {
        /// The value, e.g. `"entry id"`.
        what: &'static str,
        /// What it should have been, e.g. `"text"`.
        expected: &'static str,
    },
    /// A list is shorter than its layout.
    #[error("{what} has fewer than {needs} items")]
    TooShort {
        /// The list.
        what: &'static str,
        /// How many items it needs.
        needs: usize,
    },
    /// A list of field-value items has an odd length.
    #[error("{what} has an odd number of field items")]
    OddFields {
        /// The list.
        what: &'static str,
    },
    /// A number out of range, or text that is not a number.
    #[error("{what} is not a number in range: {value:?}")]
    BadNumber {
        /// The value.
        what: &'static str,
        /// Its text.
        value: String,
    },
    /// A batch got another number of answers than it asked questions.
    #[error("{got} answers for {expected} requests")]
    AnswerCount {
        /// How many answers came.
        got: usize,
        /// How many were asked for.
        expected: usize,
    },
    /// An answer that a script never gives.
    #[error("unknown answer {0:?}")]
    UnknownAnswer(String),
    /// A packed reply (msgpack) that ends before its last value.
    #[error("packed reply ends early")]
    PackedShort,
    /// A packed reply with a value of another kind than its place holds.
    #[error("packed reply has {tag:#04x} where {expected} was expected")]
    PackedTag {
        /// The msgpack type byte found.
        tag: u8,
        /// What the place holds, e.g. `"a list"`.
        expected: &'static str,
    },
    /// A packed reply with bytes after its last value.
    #[error("packed reply has bytes after its lists")]
    PackedTrailing,
    /// No answer came within the time allowed.
    #[error("no answer within {within:?}")]
    NoAnswer {
        /// The time allowed.
        within: Duration,
    },
    /// A stored JSON value does not decode.
    #[error("{what} does not decode")]
    BadJson {
        /// The value, e.g. ``"schedule `nightly`"``.
        what: String,
        /// The decoder's error.
        source: serde_json::Error,
    },
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
    /// The service could not be entered for want of a secret or a config that no retry can
    /// bring: a secret that is missing or does not parse, a client config that is invalid (a
    /// malformed Redis URL). Re-drive it once the worker's environment is fixed.
    Misconfigured,
}

impl ParkReason {
    /// Every reason, for listings and tests.
    pub const ALL: [Self; 13] = [
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
        Self::Misconfigured,
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
            Self::Misconfigured => "misconfigured",
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode a `{type_name}` payload ({reason}){}: {message}", at_path(.path.as_deref()))]
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

fn at_path(path: Option<&str>) -> String {
    path.map(|p| format!(" at `{p}`")).unwrap_or_default()
}

/// What a job handler returns on failure; the variant decides what the worker does next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The payload did not decode: parked at once with the decode reason, never retried.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A failure that may pass: retried with backoff until the attempts run out, then parked
    /// as [`ParkReason::Exhausted`] with this error as the last error.
    #[error("job failed")]
    Failed(#[source] BoxError),
    /// A failure that retrying cannot fix: parked at once as [`ParkReason::Rejected`].
    #[error("job failed permanently")]
    Permanent(#[source] BoxError),
    /// The service cannot be entered for want of a secret or a valid config (a missing
    /// environment variable, a malformed URL): parked at once as
    /// [`ParkReason::Misconfigured`], to be re-driven once the worker's environment is fixed.
    /// A failed enter converts to it when no retry can help.
    #[error("job cannot run: the service is misconfigured")]
    Misconfigured(#[source] BoxError),
    /// The job cannot run yet, and knows for how long (a remote answered HTTP 429 with
    /// `Retry-After`): it is delayed that long and runs again with the same attempt number.
    /// No attempt is burnt, so a job can be told to wait any number of times.
    #[error("job must wait {after:?}")]
    RetryAfter {
        /// How long to wait before the next try.
        after: Duration,
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
    pub fn retry_after(after: Duration, e: impl Into<BoxError>) -> Self {
        Self::RetryAfter { after, source: e.into() }
    }
}

impl From<dual_mode_runtime::Error> for JobError {
    /// A failed enter is sorted: a secret that is missing or invalid, or a client config that
    /// is invalid (a malformed Redis URL), is [`JobError::Misconfigured`] (parked at once: no
    /// retry brings the secret); any other failed open (a server not reachable yet, a refused
    /// connection) and a failed exit are [`JobError::Failed`] (retried).
    fn from(e: dual_mode_runtime::Error) -> Self {
        if misconfigured(&e) { Self::Misconfigured(e.into()) } else { Self::failed(e) }
    }
}

/// Whether a failed enter is one that no retry can fix (see
/// [`EnterError::is_misconfigured`](dual_mode_runtime::EnterError::is_misconfigured)).
fn misconfigured(e: &dual_mode_runtime::Error) -> bool {
    matches!(e, dual_mode_runtime::Error::Enter(enter) if enter.is_misconfigured())
}

/// Logs a failed operation of a loop with its error's chain: at `warn`, or at `debug` when Redis
/// is unreachable, since the connection logs an outage once as it begins and once as it ends.
macro_rules! failed {
    ($e:expr, $($rest:tt)+) => {{
        let e: &$crate::QueueError = $e;
        if e.is_unavailable() {
            ::tracing::debug!(error = %$crate::error::chain(e), $($rest)+);
        } else {
            ::tracing::warn!(error = %$crate::error::chain(e), $($rest)+);
        }
    }};
}
pub(crate) use error_chain as chain;
pub(crate) use failed;

/// An error and its causes (its [`source`](StdError::source) chain), `": "`-joined: what parked
/// entries and job records keep, and what a program shows a person. Each error's `Display`
/// says only what failed at its own level; a cause that an error prints anyway (a transparent
/// wrapper, a foreign type's habit) is not repeated.
#[must_use]
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        // An error that prints its cause (transparent wrappers, foreign types) is not repeated.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// A cron expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression `{expr}`: {detail}")]
pub struct CronError {
    /// The expression as given.
    pub expr: String,
    /// What is wrong with it.
    pub detail: String,
}

/// A stream entry that is not an envelope: a field is missing or bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// A required field is absent.
    #[error("entry has no `{0}` field")]
    Missing(&'static str),
    /// A text field holds bytes that are not UTF-8.
    #[error("field `{0}` is not UTF-8")]
    NotUtf8(&'static str),
    /// A field that must be non-empty is empty.
    #[error("field `{0}` is empty")]
    Empty(&'static str),
    /// A numeric field does not hold a number in range.
    #[error("field `{field}` is not a number in range: {value:?}")]
    NotNumber {
        /// The field.
        field: &'static str,
        /// Its text.
        value: String,
    },
    /// The attempt is 0; attempts count from 1.
    #[error("field `attempt` is 0; attempts count from 1")]
    ZeroAttempt,
    /// The `lane` field names no lane.
    #[error("field `lane` names no lane: {0:?} (expected high or low; normal is the absent field)")]
    UnknownLane(String),
}

#[cfg(test)]
mod tests {
    use super::{QueueError, ReplyError, chain};

    #[test]
    fn a_bad_reply_says_the_operation_then_what_was_wrong_once() {
        let e = QueueError::protocol("push", ReplyError::TooShort { what: "push reply", needs: 2 });
        assert_eq!(chain(&e), "unexpected redis reply during push: push reply has fewer than 2 items");
        let e = QueueError::protocol("stats", ReplyError::AnswerCount { got: 8, expected: 9 });
        assert_eq!(chain(&e), "unexpected redis reply during stats: 8 answers for 9 requests");
        let e = QueueError::BadCursor { cursor: "soon".to_owned() };
        assert_eq!(chain(&e), "\"soon\" is not a cursor of this queue");
    }
}
