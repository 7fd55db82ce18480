//! Job records: what a job is doing or how it ended, written by the same scripts as its
//! transitions; and what waiting for a job or cancelling it answers.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::envelope::{decode_json, short_type_name};
use super::error::{DecodeError, ParkReason, QueueError};
use super::fields::record as field;
use super::lane::Lane;
use super::worker::Job;

/// Where a job is in its life.
///
/// ```text
/// push ──> queued ──> running ──> done
///   │        ^  │        │  └──> retrying ──> queued (next attempt)
///   v        │  │        └─────> parked (bad payload, rejected, attempts exhausted)
/// delayed ───┘  └──────────────> cancelled (also from delayed, retrying and running)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JobState {
    /// In the stream, waiting for a worker.
    Queued,
    /// Waiting for its due time (a delayed push, or a wait a handler asked for).
    Delayed,
    /// A worker runs it.
    Running,
    /// An attempt failed; the next one waits for its backoff.
    Retrying,
    /// Succeeded; the record holds its result.
    Done,
    /// Moved to the dead-letter stream; the record holds the reason and the last error.
    Parked,
    /// Cancelled before it ended.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [Self; 7] =
        [Self::Queued, Self::Delayed, Self::Running, Self::Retrying, Self::Done, Self::Parked, Self::Cancelled];

    /// The name stored in Redis (and its serde form), e.g. `"running"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delayed => "delayed",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Done => "done",
            Self::Parked => "parked",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job has ended (done, parked or cancelled).
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Parked | Self::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`JobState::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// The record of one job, as [`Queue::job`](super::Queue::job) reads it.
///
/// Its `Debug` shows the result as the JSON text it is; [`output`](Self::output) decodes it as
/// the job's `Output` type.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobRecord {
    /// The job id.
    pub id: String,
    /// Its state now.
    pub state: JobState,
    /// The payload's type name.
    pub type_name: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The attempt it is on (or ended on), from 1.
    pub attempt: u32,
    /// Its maximum attempts, if the push set one.
    pub max_attempts: Option<u32>,
    /// When it was pushed.
    pub enqueued_at: SystemTime,
    /// When its current or last attempt started.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
    /// When a delayed or retrying job is due.
    pub due_at: Option<SystemTime>,
    /// When the record last changed.
    pub updated_at: SystemTime,
    /// The consumer that runs or ran it.
    pub worker: Option<String>,
    /// The last error (of a failed attempt, or why it was parked).
    pub error: Option<String>,
    /// Why it was parked.
    pub park_reason: Option<ParkReason>,
    /// Whether a cancellation was requested.
    pub cancel_requested: bool,
    /// Its unique key, if it was pushed with one.
    pub unique_key: Option<String>,
    /// Its priority lane.
    pub lane: Lane,
    /// Its result as JSON, once done.
    pub result: Option<Vec<u8>>,
    /// The id of its entry in the stream (its last one, for a job that waited or ended).
    pub entry_id: Option<String>,
}

impl JobRecord {
    /// The result of a done job, decoded as the `Output` of the service `S` that ran it;
    /// `None` while the job has not succeeded (queued, running, parked, cancelled, ...).
    ///
    /// ```ignore
    /// if let Some(report) = queue.job(&id).await?.and_then(|r| r.output::<WeatherReport>().transpose()) {
    ///     println!("{}", report?.summary);
    /// }
    /// ```
    ///
    /// # Errors
    /// The stored result does not decode as `S::Output` (it was written by another version).
    pub fn output<S: Job>(&self) -> Result<Option<S::Output>, DecodeError> {
        self.output_as::<S::Output>()
    }

    /// [`output`](Self::output) for any handler: the result decoded as `T`.
    ///
    /// # Errors
    /// The stored result does not decode as `T`.
    pub fn output_as<T: DeserializeOwned>(&self) -> Result<Option<T>, DecodeError> {
        if self.state != JobState::Done {
            return Ok(None);
        }
        let bytes = self.result.as_deref().unwrap_or(b"null");
        decode_json(bytes, short_type_name::<T>()).map(Some)
    }

    /// Parses a record's hash; `None` if it has no known state.
    #[must_use]
    pub fn from_hash(id: &str, fields: Vec<(String, Vec<u8>)>) -> Option<Self> {
        let mut state = None;
        let mut r = Self {
            id: id.to_owned(),
            state: JobState::Queued,
            type_name: String::new(),
            idempotency_key: id.to_owned(),
            attempt: 1,
            max_attempts: None,
            enqueued_at: UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            due_at: None,
            updated_at: UNIX_EPOCH,
            worker: None,
            error: None,
            park_reason: None,
            cancel_requested: false,
            unique_key: None,
            lane: Lane::Normal,
            result: None,
            entry_id: None,
        };
        let time = |v: &str| v.parse::<u64>().ok().map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        for (k, v) in fields {
            if k == field::RESULT {
                r.result = Some(v);
                continue;
            }
            let v = String::from_utf8_lossy(&v).into_owned();
            match k.as_str() {
                field::STATE => state = v.parse().ok(),
                field::TYPE => r.type_name = v,
                field::KEY => r.idempotency_key = v,
                field::ATTEMPT => r.attempt = v.parse().unwrap_or(1),
                field::MAX => r.max_attempts = v.parse().ok(),
                field::ENQUEUED => r.enqueued_at = time(&v).unwrap_or(UNIX_EPOCH),
                field::STARTED => r.started_at = time(&v),
                field::FINISHED => r.finished_at = time(&v),
                field::DUE => r.due_at = time(&v),
                field::UPDATED => r.updated_at = time(&v).unwrap_or(UNIX_EPOCH),
                field::WORKER => r.worker = Some(v),
                field::ERROR => r.error = Some(v),
                field::REASON => r.park_reason = ParkReason::from_code(&v),
                field::CANCEL => r.cancel_requested = v == "1",
                field::UNIQUE => r.unique_key = Some(v),
                field::LANE => r.lane = v.parse().unwrap_or_default(),
                field::ENTRY => r.entry_id = Some(v),
                _ => {}
            }
        }
        r.state = state?;
        Some(r)
    }
}

impl fmt::Debug for JobRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRecord")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("type_name", &self.type_name)
            .field("idempotency_key", &self.idempotency_key)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .field("enqueued_at", &self.enqueued_at)
            .field("started_at", &self.started_at)
            .field("finished_at", &self.finished_at)
            .field("due_at", &self.due_at)
            .field("updated_at", &self.updated_at)
            .field("worker", &self.worker)
            .field("error", &self.error)
            .field("park_reason", &self.park_reason)
            .field("cancel_requested", &self.cancel_requested)
            .field("unique_key", &self.unique_key)
            .field("lane", &self.lane)
            // The JSON text, not its bytes as numbers.
            .field("result", &self.result.as_deref().map(String::from_utf8_lossy))
            .field("entry_id", &self.entry_id)
            .finish()
    }
}

/// How a job ended, with its result decoded; what [`Queue::wait_for`](super::Queue::wait_for)
/// returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome<T> {
    /// It succeeded and returned this.
    Done(T),
    /// It was parked.
    Parked {
        /// Why, if the stored code is one this version knows.
        reason: Option<ParkReason>,
        /// The last error.
        error: String,
    },
    /// It was cancelled.
    Cancelled,
}

/// What [`Queue::cancel`](super::Queue::cancel) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The job was queued, delayed or retrying: it is removed and will never run.
    Removed,
    /// The job is running (or was just handed to a worker): its worker tells it within a
    /// second, and aborts it after the grace period.
    Requested,
    /// The job had already ended in this state; nothing changed.
    AlreadyEnded(JobState),
    /// No record of this id (never pushed, or ended and no longer kept: see [`Keep`](crate::Keep)).
    Unknown,
}

/// Why [`Queue::wait_for`](super::Queue::wait_for) returned without an outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// No record of this id.
    #[error("no job `{id}` in this queue")]
    Unknown {
        /// The id waited for.
        id: String,
    },
    /// No record of this id in a queue that does not keep every ended job for a time: the job
    /// may have ended and not been kept. Wait before it ends (a wait keeps the record for
    /// [`QueueConfig::keep_waited`](crate::QueueConfig::keep_waited)), or push it with
    /// [`PushOptions::keep_for`](crate::PushOptions::keep_for).
    #[error(
        "no record of job `{id}`: it was never pushed, or it ended and was not kept (what this queue keeps of \
         ended jobs: {keeps})"
    )]
    NotKept {
        /// The id waited for.
        id: String,
        /// What the queue keeps ([`QueueConfig::kept_of_ended_jobs`](crate::QueueConfig::kept_of_ended_jobs)),
        /// e.g. `done not kept, parked for 7d, cancelled for 1d`.
        keeps: String,
    },
    /// The job did not end in time; it goes on.
    #[error("job `{id}` did not end within {timeout:?} (it is {state})")]
    Timeout {
        /// The id waited for.
        id: String,
        /// How long the wait was.
        timeout: Duration,
        /// Its state at the end of the wait.
        state: JobState,
    },
    /// The stored result does not decode as the type asked for.
    #[error("the result of job `{id}` does not decode")]
    Result {
        /// The id waited for.
        id: String,
        /// The decode error.
        source: DecodeError,
    },
    /// Redis failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

#[cfg(test)]
mod tests {
    use super::{JobRecord, JobState};

    fn record(state: &str, result: Option<&str>) -> JobRecord {
        let mut fields = vec![("state".to_owned(), state.as_bytes().to_vec())];
        fields.extend(result.map(|r| ("result".to_owned(), r.as_bytes().to_vec())));
        JobRecord::from_hash("j1", fields).expect("a record")
    }

    #[test]
    fn a_done_record_decodes_its_result_and_shows_it_as_text() {
        let done = record("done", Some(r#"{"city":"Berlin","celsius":21}"#));
        let value = done.output_as::<serde_json::Value>().expect("decodes").expect("done");
        assert_eq!(value["celsius"], 21);
        let shown = format!("{done:?}");
        assert!(shown.contains(r#"result: Some("{\"city\":\"Berlin\",\"celsius\":21}")"#), "{shown}");
        assert!(done.output_as::<u32>().is_err(), "a result of another type is a decode error");
        assert_eq!(record("running", None).output_as::<u32>().expect("no result yet"), None);
        assert_eq!(record("done", None).output_as::<()>().expect("unit"), Some(()));
    }

    #[test]
    fn states_read_back_by_name_and_through_serde() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
            let json = serde_json::to_string(&state).expect("serialize");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<JobState>(&json).expect("deserialize"), state);
        }
        assert!("paused".parse::<JobState>().is_err());
    }
}
