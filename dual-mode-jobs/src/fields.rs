//! The names of the fields of a job's record and of a parked entry, as stored. The scripts
//! of the Redis store (`dual-mode-redis/src/lua/`) write the same names.
//!
//! A leaf module: it imports nothing of the job layer, so that any module can name a field.
//! The fields of a stream entry (the envelope) are [`crate::envelope::field`].

/// Fields of a job's record (a hash per job id).
pub mod record {
    /// The job's state (a [`JobState`](crate::JobState) name).
    pub const STATE: &str = "state";
    /// The payload's type name.
    pub const TYPE: &str = "type";
    /// The idempotency key.
    pub const KEY: &str = "key";
    /// The attempt it is on, from 1.
    pub const ATTEMPT: &str = "attempt";
    /// Its maximum attempts, when the push set one.
    pub const MAX: &str = "max";
    /// When it was pushed (ms).
    pub const ENQUEUED: &str = "enq";
    /// When its current or last attempt started (ms).
    pub const STARTED: &str = "started";
    /// When it ended (ms).
    pub const FINISHED: &str = "finished";
    /// When a delayed or retrying job is due (ms).
    pub const DUE: &str = "due";
    /// When the record last changed (ms).
    pub const UPDATED: &str = "updated";
    /// The consumer that runs or ran it.
    pub const WORKER: &str = "worker";
    /// The last error.
    pub const ERROR: &str = "error";
    /// Why it was parked (a [`ParkReason`](crate::ParkReason) code).
    pub const REASON: &str = "reason";
    /// `1` when a cancellation was requested.
    pub const CANCEL: &str = "cancel";
    /// Its unique key.
    pub const UNIQUE: &str = "unique";
    /// Its lane, when not the normal one.
    pub const LANE: &str = "lane";
    /// Its result as JSON, once done.
    pub const RESULT: &str = "result";
    /// The id of its entry in the stream.
    pub const ENTRY: &str = "entry";
    /// How long at least it is kept once it ended, in ms: its push's
    /// [`keep_for`](crate::PushOptions::keep_for), or [`keep_waited`](crate::QueueConfig::keep_waited)
    /// once someone waited for it.
    pub const KEEP: &str = "keep";
}

/// Fields of a parked entry: why and when it was parked, and the original entry's fields
/// under [`RAW_PREFIX`](parked::RAW_PREFIX).
pub mod parked {
    /// Why it was parked (a [`ParkReason`](crate::ParkReason) code).
    pub const REASON: &str = "reason";
    /// The detail: the decode error, the missing field, or the handler's last error.
    pub const DETAIL: &str = "detail";
    /// The id the entry had in the queue's stream.
    pub const SOURCE_ID: &str = "source_id";
    /// When it was parked (ms).
    pub const PARKED_AT: &str = "parked_at";
    /// The consumer that parked it.
    pub const CONSUMER: &str = "consumer";
    /// How many fields the original entry had, when it had more than were kept.
    pub const TRUNCATED_FROM: &str = "truncated_from";
    /// The prefix of the original entry's field names.
    pub const RAW_PREFIX: &str = "raw:";
}
