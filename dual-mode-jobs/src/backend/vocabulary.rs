//! The vocabulary of the [`Backend`](super::Backend) operations: what they take and answer.

use std::time::Duration;

use crate::envelope::{Envelope, RawFields};
use crate::lane::Lane;
use crate::limit::Bucket;

/// A run to mark as running: its entry, fencing token, job id, attempt and start time.
#[derive(Clone)]
pub struct MarkRun {
    /// The run's entry.
    pub entry_id: String,
    /// Its fencing token (the entry's delivery count when the run got it).
    pub token: u64,
    /// The job's id.
    pub job_id: String,
    /// The attempt it runs.
    pub attempt: u32,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
}

/// What marking a run as running answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// Marked.
    Yes,
    /// This consumer does not own the entry (any more).
    NotOwned,
    /// A cancellation was requested; not marked.
    CancelRequested,
}

/// What a renewal answered for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    /// Renewed.
    Yes,
    /// Refused: another consumer owns the entry, or it is gone.
    Lost,
    /// Renewed, and a cancellation was requested.
    CancelRequested,
}

/// What a fenced write answered for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written now.
    Done,
    /// Written already, by an earlier try of this run whose reply was lost.
    Landed,
    /// Refused: no consumer holds the entry (acknowledged by another run, or the group was
    /// recreated).
    Gone,
    /// Refused: another consumer, or a later delivery, holds the entry.
    Other,
}

/// A successful run to acknowledge, with its result.
#[derive(Default)]
pub struct DoneRun {
    /// The run's entry.
    pub entry_id: String,
    /// Its fencing token.
    pub token: u64,
    /// The job's id (empty for an entry without one).
    pub job_id: String,
    /// The unique key it holds, released with the acknowledgement.
    pub unique: Option<String>,
    /// Its result (JSON).
    pub result: Vec<u8>,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// The attempt that succeeded.
    pub attempt: u32,
    /// How long its push asked for its record to be kept once it ended, in ms
    /// ([`PushOptions::keep_for`](crate::PushOptions::keep_for)): a store that looks up the
    /// record's marks only where one may matter reads it.
    pub keep_ms: Option<u64>,
}

/// How a run ends when it does not succeed.
pub enum Ending<'a> {
    /// Back to the delayed set as `next`, due in `delay`; the record says `retrying` (a failed
    /// attempt) or `delayed` (a wait without an attempt).
    Later {
        /// A failed attempt (`true`), or a wait that counts none.
        retry: bool,
        /// How long until it is due.
        delay: Duration,
        /// The envelope of its next try.
        next: &'a Envelope,
    },
    /// To the parked stream with these fields.
    Parked {
        /// The parked entry's fields (its reason, error and the original fields).
        fields: &'a [(Vec<u8>, Vec<u8>)],
    },
    /// Cancelled while it ran.
    Cancelled,
}

/// One run's entry, fencing token and job (id and unique key, when the entry had an id).
pub struct RunRef<'a> {
    /// The run's entry.
    pub entry_id: &'a str,
    /// Its fencing token.
    pub token: u64,
    /// The job's id and unique key, when the entry has an id.
    pub job: Option<(&'a str, Option<&'a str>)>,
}

/// A claimed entry: id, fields, delivery count.
pub type Claimed = (String, RawFields, u64);

/// A job at its gate: what [`Backend::gate`](super::Backend::gate) checks.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// The job's id.
    pub job_id: String,
    /// Its rate key.
    pub rate_key: Option<String>,
    /// Whether its start is already reserved in its buckets (it waited for it).
    pub reserved: bool,
    /// The rate buckets it draws from.
    pub buckets: Vec<Bucket>,
    /// The rate key's concurrency, if it has one.
    pub slots: Option<u32>,
}

/// What a job's gate answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// Start now (holding a slot when the key has a concurrency).
    Start,
    /// Wait this long: the start is reserved.
    Wait(Duration),
    /// Wait for a slot of the key: the job is among its waiters.
    NoSlot,
}

/// What a push answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushAnswer {
    /// Pushed into the stream as this entry, its `queued` record written.
    Added {
        /// The entry's id in its lane's stream.
        entry_id: String,
    },
    /// Pushed into the delayed set, its `delayed` record written.
    Delayed,
    /// Nothing written: the job's unique key is held by another job.
    Held {
        /// The id of the job that holds the key.
        holder: String,
    },
}

impl PushAnswer {
    /// Whether nothing was written, the unique key being held.
    #[must_use]
    pub fn is_held(&self) -> bool {
        matches!(self, Self::Held { .. })
    }
}

/// What a read found.
pub enum Read {
    /// The queue is paused: nothing was read.
    Paused,
    /// These entries (possibly none), each with its lane and, where the reader passed it
    /// through its gate ([`Reader::gate_reads`](super::Reader::gate_reads)), what the gate
    /// answered: `None` for an entry that was not gated or has no gate under the rules.
    Entries(Vec<(Lane, Entry, Option<Passed>)>),
}

/// A queue's rules at the gate a job passes as it is about to start: its rate limits and its
/// rate keys' concurrency, as [`QueueConfig`](crate::QueueConfig) gives them, and how long a
/// slot is held before a renewal. What [`Reader::gate_reads`](super::Reader::gate_reads) takes.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRules {
    /// The rate limits: each job draws from the buckets of those it falls under (see
    /// [`RateScope`](crate::RateScope)).
    pub rate_limits: Vec<(crate::RateScope, crate::RateLimit)>,
    /// The concurrency of rate keys by prefix: the longest matching prefix counts.
    pub key_concurrency: Vec<(String, u32)>,
    /// How long a slot is held: the worker's lease, renewed while the job runs.
    pub lease: Duration,
}

impl GateRules {
    /// The rules of a queue configured with `config`, for slots held for `lease`; `None` when
    /// it has neither rate limits nor key concurrency (no job has a gate).
    #[must_use]
    pub fn of(config: &crate::QueueConfig, lease: Duration) -> Option<Self> {
        if config.rate_limits.is_empty() && config.key_concurrency.is_empty() {
            return None;
        }
        Some(Self { rate_limits: config.rate_limits.clone(), key_concurrency: config.key_concurrency.clone(), lease })
    }
}

/// One stream entry: its id and raw fields.
pub type Entry = (String, RawFields);

/// What the tick script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticked {
    /// Enqueued as this entry.
    Enqueued(String),
    /// Another scheduler enqueued this tick already.
    Duplicate,
    /// The schedule is paused: nothing enqueued, the tick not marked.
    Paused,
    /// The job of an earlier tick (this id) holds the unique key: nothing enqueued, the tick
    /// marked.
    Held(String),
}

/// A schedule's state in Redis: last tick, pause and resume times (ms since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct ScheduleState {
    /// The last tick enqueued.
    pub last: Option<i64>,
    /// When it was paused, while it is.
    pub paused: Option<i64>,
    /// When it was last resumed.
    pub resumed: Option<i64>,
}

impl ScheduleState {
    /// The state over two partitions' keys: the later tick and resume, the earlier pause.
    #[must_use]
    pub fn merged(self, other: Self) -> Self {
        let paused = match (self.paused, other.paused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self { last: self.last.max(other.last), paused, resumed: self.resumed.max(other.resumed) }
    }
}

/// A consumer (a worker's reader) of a lane, as `XINFO CONSUMERS` reports it on Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// How many entries it holds.
    pub pending: u64,
    /// Since when it last read or claimed (ms).
    pub idle_ms: u64,
}

/// Counts beyond [`Backend::stats`](super::Backend::stats): the ended jobs' sets and the pause.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateCounts {
    /// Jobs done whose records live.
    pub done: u64,
    /// Jobs cancelled whose records live.
    pub cancelled: u64,
    /// When the queue was paused, while it is.
    pub paused_at_ms: Option<u64>,
}

/// Counts of a queue at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Entries in the stream (waiting or running).
    pub length: u64,
    /// Entries delivered to a consumer and not yet acknowledged (running, or of a crashed
    /// worker until their lease expires).
    pub pending: u64,
    /// Entries waiting for their due time (delayed pushes and retries).
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub parked: u64,
    /// Parked entries dropped, oldest first, to keep the dead-letter stream within
    /// [`QueueConfig::parked_max_len`](crate::QueueConfig::parked_max_len) (since the queue was created).
    pub parked_dropped: u64,
}

impl QueueStats {
    /// The counts of two partitions together.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            length: self.length + other.length,
            pending: self.pending + other.pending,
            delayed: self.delayed + other.delayed,
            parked: self.parked + other.parked,
            parked_dropped: self.parked_dropped + other.parked_dropped,
        }
    }

    /// Whether nothing is waiting, running or delayed (parked entries do not count).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.length == 0 && self.pending == 0 && self.delayed == 0
    }
}

/// A stream entry id as numbers (`ms-seq`), for ordering; `None` for one that does not parse
/// (which orders first).
#[must_use]
pub fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}
