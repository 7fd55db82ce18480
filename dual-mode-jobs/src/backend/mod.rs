//! The seam between the job layer and its store: every operation the queue, the worker, the
//! scheduler and the operator reads need, as one object-safe trait.
//!
//! A [`Backend`] is one partition of one queue, holding its three [lanes](Lane): their ready
//! entries, the entries delivered to consumers (each with an owner and a fencing token), the
//! delayed set, the parked entries, the job records and state sets, unique keys and the
//! schedules' state. A queue of several partitions has a backend per partition and one more,
//! its *home*, where the queue-wide state lives (rate buckets, rate-key pauses, key
//! concurrency slots, the index of schedules, the partition count).
//!
//! Each backend keeps the layer's guarantees in its own terms: a transition and its record
//! change together (one Lua script on Redis, one lock in process); a write for a run is
//! refused unless the run still owns its entry with the same token (fencing); a unique key is
//! claimed by the push itself.
//!
//! Entry ids are stream ids (`<ms>-<seq>`, ordered by [`stream_id`]) on every backend, so
//! cursors, pages and merges across partitions work the same everywhere.
//!
//! The methods mirror what the layer asks, answer typed values and return
//! [`QueueError`]; futures are boxed so that the trait is object-safe (one allocation per
//! call, beside a round trip to the store).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;

mod vocabulary;

pub use crate::envelope::{field, field_of, millis, unix_ms};
pub use crate::fields::{parked, record};
pub use crate::keep::KeepMs;
pub use crate::keys::QueueKeys;
pub use crate::limit::Bucket;

use crate::envelope::{Envelope, RawFields};
use crate::error::QueueError;
use crate::lane::Lane;
use crate::record::{CancelOutcome, JobRecord, JobState};

/// What a store keeps of a queue's settings: what it keeps of ended jobs' records and how
/// many parked entries it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// What is kept of jobs that succeeded.
    pub done: KeepMs,
    /// What is kept of parked jobs.
    pub parked: KeepMs,
    /// What is kept of cancelled jobs.
    pub cancelled: KeepMs,
    /// How long at least a record is kept once someone waited for its job, in ms (at least 1).
    pub waited_ms: u64,
    /// The most entries the parked list keeps.
    pub parked_max_len: u64,
}

impl Retention {
    /// What is kept of jobs that ended in `state`; `None` for a state that does not end a job.
    #[must_use]
    pub fn of(&self, state: &str) -> Option<KeepMs> {
        match state {
            "done" => Some(self.done),
            "parked" => Some(self.parked),
            "cancelled" => Some(self.cancelled),
            _ => None,
        }
    }
}

/// A store that a queue can be opened on: implemented by a backend crate for the targets it
/// takes (the Redis crate for `redis::Client`, its `RedisTarget` and a Sentinel client), so
/// that [`Queue::connect`](crate::Queue::connect) takes them as they are. `B` names the backend
/// (a type of its crate), which lets it implement this for its client types.
pub trait Connect<B> {
    /// Opens the queue that `config` describes: its home and its partitions, checked against
    /// what the store already holds of the queue.
    fn open(self, config: &crate::QueueConfig) -> impl Future<Output = Result<Opened, QueueError>> + Send;
}

/// A queue's stores as [`Connect::open`] opened them.
pub struct Opened {
    /// Where the queue-wide state lives (rate buckets, key slots, the index of schedules); the
    /// only partition itself when there is one.
    pub home: Arc<dyn Backend>,
    /// The partitions, in order ([`QueueConfig::partitions`](crate::QueueConfig::partitions) of
    /// them).
    pub parts: Vec<Arc<dyn Backend>>,
}

/// A boxed future of a backend's answer.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueueError>> + Send + 'a>>;

/// One partition of one queue in a store. See the [module docs](self).
///
/// Methods that work on one lane's entries take the lane; pushes take it from the envelope.
pub trait Backend: Send + Sync + 'static {
    // ----- opening -----

    /// The queue's number of partitions as the store knows it: `n` when this is the first
    /// process to open the queue, else what the first one set. Called on the home.
    fn claim_partitions(&self, n: u16) -> Answer<'_, u16>;

    /// Makes sure the lanes can be read (on Redis: the consumer groups exist; recreated at the
    /// streams' end, their entries delayed by `delay`, when an operator destroyed them).
    /// Returns how many entries a recreation moved, if one happened.
    fn ensure_group(&self, delay: Duration) -> Answer<'_, Option<usize>>;

    /// A reader of this partition's lanes whose waits block up to `block`.
    fn reader(&self, block: Duration, timeout: Duration) -> Answer<'_, Box<dyn Reader>>;

    // ----- pushes -----

    /// Adds `env` to its lane's ready entries and writes its `queued` record, claiming its
    /// unique key (held for `unique_ttl`) when it has one.
    fn push<'a>(&'a self, env: &'a Envelope, unique_ttl: Duration) -> Answer<'a, PushAnswer>;

    /// [`Backend::push`] of several envelopes of one lane, answered in order.
    fn push_many<'a>(&'a self, envs: &'a [Envelope], unique_ttl: Duration) -> Answer<'a, Vec<PushAnswer>>;

    /// Puts `env` in the delayed set, due at `at_ms` (ms since the epoch) or, when that is 0,
    /// `delay_ms` from now, and writes its `delayed` record.
    fn push_delayed<'a>(
        &'a self,
        env: &'a Envelope,
        unique_ttl: Duration,
        at_ms: u64,
        delay_ms: u64,
    ) -> Answer<'a, PushAnswer>;

    /// Moves up to `max` due delayed entries into their lanes; returns how many moved.
    fn promote(&self, max: usize) -> Answer<'_, usize>;

    // ----- runs and leases (one lane's delivered entries) -----

    /// Claims up to `count` of the lane's entries whose lease expired (idle `min_idle_ms` or
    /// more), scanning from `cursor` (`0-0` first); the next cursor and the entries
    /// `consumer` now owns, each with its new fencing token.
    fn claim<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle_ms: u64,
        cursor: &'a str,
        count: usize,
    ) -> Answer<'a, (String, Vec<Claimed>)>;

    /// `consumer`'s own entries of the lane idle for `min_idle` or more, up to `count` (a
    /// delivery whose reply was lost).
    fn own_pending<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle: Duration,
        count: usize,
    ) -> Answer<'a, Vec<String>>;

    /// Claims these of `consumer`'s own entries again, raising their tokens; returns those it
    /// still held.
    fn reclaim<'a>(&'a self, lane: Lane, consumer: &'a str, ids: &'a [String]) -> Answer<'a, Vec<Claimed>>;

    /// Marks runs as running (fenced).
    fn mark<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [MarkRun]) -> Answer<'a, Vec<Marked>>;

    /// Renews the leases of runs `(entry id, token, job id)` (a run without a job id passes
    /// its entry id); per run what was answered.
    fn renew<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        runs: &'a [(&'a str, u64, &'a str)],
    ) -> Answer<'a, Vec<Renewed>>;

    /// Acknowledges successful runs, removes their entries and records them `done` with their
    /// results, releasing their unique keys; per run what was written.
    fn ack<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [DoneRun]) -> Answer<'a, Vec<Written>>;

    /// How long a worker may hold a successful run's acknowledgement to send it with others
    /// that end meanwhile: zero (the default) sends each batch as soon as the last one was
    /// answered. A store whose every write is a commit waiting for a disk flush gives a few
    /// milliseconds, so that one commit acknowledges several runs.
    fn ack_gather(&self) -> Duration {
        Duration::ZERO
    }

    /// Ends a run without success (see [`Ending`]), with `record` items for its record.
    fn end<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        run: &'a RunRef<'a>,
        ending: &'a Ending<'a>,
        record: &'a [(&'a str, Vec<u8>)],
    ) -> Answer<'a, Written>;

    // ----- gates (on the home) -----

    /// Passes jobs through their gates as they are about to start: their rate limits, and a
    /// slot of their rate key when it has a concurrency, held for `lease`.
    fn gate<'a>(&'a self, gates: &'a [Gate], lease: Duration) -> Answer<'a, Vec<Passed>>;

    /// Gives back a job's slot of `rate_key` and wakes the key's oldest waiter.
    fn release_slot<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, ()>;

    /// Gives back a job's slot and takes the key's oldest waiter off the waiters without
    /// waking it (it waits in another partition: see [`Backend::wake`]).
    fn release_slot_take<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, Option<String>>;

    /// Makes a delayed job due at once; whether it was delayed.
    fn wake<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool>;

    /// Extends the slots that running jobs `(rate key, job id)` hold by `lease`.
    fn renew_slots<'a>(&'a self, held: &'a [(&'a str, &'a str)], lease: Duration) -> Answer<'a, ()>;

    /// Pauses a rate key for every worker for `pause` (a longer pause stays).
    fn pause_rate_key<'a>(&'a self, rate_key: &'a str, pause: Duration) -> Answer<'a, ()>;

    // ----- jobs -----

    /// Cancels a job by id.
    fn cancel<'a>(&'a self, job_id: &'a str) -> Answer<'a, CancelOutcome>;

    /// A job's record.
    fn record<'a>(&'a self, job_id: &'a str) -> Answer<'a, Option<JobRecord>>;

    /// Marks the record of a job that has not ended to be kept at least
    /// [`Retention::waited_ms`] once it ends, however little its end state keeps (the mark of
    /// a waiter, field [`record::KEEP`]: the longer of it and the push's own); whether the job
    /// has a record (ended or not).
    fn keep_waited<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool>;

    /// The records of these jobs, in order.
    fn records_of<'a>(&'a self, ids: &'a [String]) -> Answer<'a, Vec<Option<JobRecord>>>;

    /// Up to `count` records of jobs in `state` from position `start`, and how many jobs are
    /// in that state.
    fn records(&self, state: JobState, start: usize, count: usize) -> Answer<'_, (Vec<JobRecord>, u64)>;

    /// The ids of jobs as they end (from when the stream is opened).
    fn finished(&self) -> Answer<'_, BoxStream<'static, Arc<str>>>;

    // ----- parked entries -----

    /// Parked entries from `start` to `end` (stream ids, `-` and `+` for the ends), oldest
    /// first.
    fn parked_range<'a>(&'a self, start: &'a str, end: &'a str, count: usize) -> Answer<'a, Vec<Entry>>;

    /// Up to `count` parked entries before `before` (exclusive unless its flag says
    /// inclusive), newest first.
    fn parked_newest<'a>(&'a self, before: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>>;

    /// Moves a parked entry back to its lane (its original fields, those named with
    /// `raw_prefix`, the attempt reset to 1); the new entry id, `None` if it is not there.
    fn redrive<'a>(
        &'a self,
        parked_id: &'a str,
        raw_prefix: &'a str,
        job_id: Option<&'a str>,
    ) -> Answer<'a, Option<String>>;

    // ----- operator reads -----

    /// Counts of the lanes, the delivered entries, the delayed and the parked ones.
    fn stats(&self) -> Answer<'_, QueueStats>;

    /// The sizes of the ended jobs' sets and the queue's pause.
    fn state_counts(&self) -> Answer<'_, StateCounts>;

    /// How many jobs entered each of `states` (`done`, `parked`, `cancelled`) in each of
    /// `buckets` consecutive windows of `width_ms` from `from_ms`.
    fn entered<'a>(
        &'a self,
        states: &'a [&'a str],
        from_ms: u64,
        width_ms: u64,
        buckets: usize,
    ) -> Answer<'a, Vec<Vec<u64>>>;

    /// Up to `count` (member, score) of the jobs in state set `state` (`running`, `done`,
    /// `parked`, `cancelled`, or `delayed` for the delayed set) after the cursor
    /// `(score, member)`, in the set's order.
    fn state_page<'a>(
        &'a self,
        state: &'a str,
        after: Option<(&'a str, &'a str)>,
        count: usize,
    ) -> Answer<'a, Vec<(String, String)>>;

    /// Up to `count` of the lane's entries not yet delivered, after `after` (from it, when
    /// its flag says inclusive).
    fn queued_page<'a>(&'a self, lane: Lane, after: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>>;

    /// One of the lane's entries by id.
    fn stream_entry<'a>(&'a self, lane: Lane, entry_id: &'a str) -> Answer<'a, Option<RawFields>>;

    /// The fields of a delayed job's next attempt.
    fn delayed_fields<'a>(&'a self, job_id: &'a str) -> Answer<'a, RawFields>;

    /// The lane's consumers.
    fn consumers(&self, lane: Lane) -> Answer<'_, Vec<ConsumerInfo>>;

    /// Whether the queue is paused.
    fn is_paused(&self) -> Answer<'_, bool>;

    /// Pauses the queue at `now_ms`; whether it was running.
    fn pause_queue(&self, now_ms: u64) -> Answer<'_, bool>;

    /// Resumes the queue; whether it was paused.
    fn resume_queue(&self) -> Answer<'_, bool>;

    // ----- upkeep -----

    /// Re-queues up to `count` of the lane's entries that no consumer holds (after an
    /// operator removed a consumer), scanning from `cursor`; the next cursor (`None`: done)
    /// and how many moved.
    fn sweep<'a>(&'a self, lane: Lane, cursor: &'a str, count: usize) -> Answer<'a, (Option<String>, u64)>;

    /// Forgets ended jobs whose records expired; how many.
    fn trim_ended(&self) -> Answer<'_, u64>;

    /// Removes the lane's consumers other than `consumer` that hold nothing and have not read
    /// for `min_idle`; how many.
    fn prune_consumers<'a>(&'a self, lane: Lane, consumer: &'a str, min_idle: Duration) -> Answer<'a, u64>;

    /// Removes `consumer` from the lane if it holds nothing; whether it did.
    fn remove_consumer_if_idle<'a>(&'a self, lane: Lane, consumer: &'a str) -> Answer<'a, bool>;

    // ----- schedules -----

    /// Enqueues schedule `name`'s tick at `tick_ms` as `env` unless another scheduler did
    /// (remembered for `dedupe_ttl`) or the schedule is paused.
    fn tick<'a>(
        &'a self,
        name: &'a str,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &'a Envelope,
        unique_ttl: Duration,
    ) -> Answer<'a, Ticked>;

    /// Schedule `name`'s last tick (ms).
    fn last_tick<'a>(&'a self, name: &'a str) -> Answer<'a, Option<i64>>;

    /// Pauses schedule `name` at `now_ms`; whether it was running.
    fn pause_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool>;

    /// Resumes schedule `name` at `now_ms`; whether it was paused.
    fn resume_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool>;

    /// The state of these schedules, in order.
    fn schedule_states<'a>(&'a self, names: &'a [String]) -> Answer<'a, Vec<ScheduleState>>;

    /// Removes schedule `name`'s state (and, on the home, its entry of the index); whether it
    /// was registered.
    fn forget_schedule<'a>(&'a self, name: &'a str) -> Answer<'a, bool>;

    /// Records schedules `(name, description)` in the index. Called on the home.
    fn register_schedules<'a>(&'a self, entries: &'a [(String, String)]) -> Answer<'a, ()>;

    /// The index of schedules, by name. Called on the home.
    fn schedule_index(&self) -> Answer<'_, Vec<(String, String)>>;
}

/// A partition's reader: new entries for a consumer, and a wait for more.
pub trait Reader: Send {
    /// Up to `count` new entries for `consumer` from the lanes, read in `order`, without
    /// waiting; [`Read::Paused`] when the queue is paused.
    fn read<'a>(&'a mut self, consumer: &'a str, count: usize, order: [Lane; 3]) -> Answer<'a, Read>;

    /// Waits up to the block time for an entry newer than those the last short read saw;
    /// returns at once when no read was short.
    fn wait(&mut self) -> Answer<'_, ()>;

    /// Passes the entries that later reads find through their gates under `rules`, in the
    /// read's own round trip, as [`Backend::gate`] would at their start; returns whether it
    /// does, its reads answering each entry's gate from then on. A reader that does not (the
    /// default) leaves each job's gate to the worker: one [`Backend::gate`] call for each
    /// batch of jobs at their gates.
    fn gate_reads(&mut self, rules: &GateRules) -> bool {
        let _ = rules;
        false
    }
}

pub use vocabulary::{
    Claimed, ConsumerInfo, DoneRun, Ending, Entry, Gate, GateRules, MarkRun, Marked, Passed, PushAnswer, QueueStats,
    Read, Renewed, RunRef, ScheduleState, StateCounts, Ticked, Written, stream_id,
};
