//! The job layer: specs queued on Redis Streams consumer groups, run by workers anywhere, or
//! in one process with no server.
//!
//! Where the jobs live is chosen when a queue is opened: [`Queue::connect`] on Redis, the
//! distributed engine (`XADD`, `XREADGROUP`, `XACK`, `XAUTOCLAIM`) of which this crate is a
//! thin client, or [`Queue::in_process`], whose jobs are lost when the process exits. Every
//! other type is the same on both, and so are the semantics below (one conformance suite runs
//! on both); [`testing`] runs jobs in your own tests on the in-process store.
//!
//! - [`Queue`]: push payloads (for services: spec types only) one by one, in pipelined bulk,
//!   delayed, [unique](PushOptions::unique) or [time-limited](PushOptions::timeout);
//!   [find](Queue::job) a job's record, [list](Queue::jobs) jobs by state,
//!   [wait](Queue::wait_for) for a job's result, [cancel](Queue::cancel) it;
//!   [`stats`](Queue::stats); list, inspect and [re-drive](Queue::redrive) parked entries;
//!   [pause](Queue::pause) the queue; read [pages](Queue::jobs_page) of any list, its
//!   [workers](Queue::workers) and [throughput](Queue::throughput) (what the
//!   `dashboard` module, behind the feature `dashboard`, shows).
//! - [`Worker`]: reads one queue or [several](Queues) (in strict order or by weight), each
//!   queue's [lanes](Lane) high first with a share for the lower ones; a consumer in the
//!   queues' groups with a unique name per process start, bounded concurrency, one task per
//!   job, lease renewal with fencing, claiming of crashed consumers'
//!   entries, retries with backoff, parking of bad entries, cancellation and time limits that
//!   reach the running job, a sweep for entries no consumer holds, and a graceful shutdown
//!   ([`shutdown_signal`]) that hands running jobs back instead of losing them.
//! - `RedisTarget` (crate `dual-mode-redis`): one server (`redis://`, `rediss://`), a Redis Cluster or a Sentinel-managed
//!   primary. When Redis cannot be reached, operations fail with [`QueueError::Unavailable`]
//!   (never hang past the response timeout), workers and schedulers retry with back-off, and
//!   the outage is logged once as it begins and once as it ends.
//! - [`Scheduler`]: cron schedules in any IANA time zone ([`Cron`]) whose ticks are enqueued
//!   exactly once however many schedulers run; [paused](Queue::pause_schedule),
//!   [resumed](Queue::resume_schedule), [listed](Queue::schedules) and
//!   [forgotten](Queue::forget_schedule) from any process.
//!
//! # Keys
//!
//! A queue named `q` uses `dm:{q}:stream` (ready entries of the normal lane;
//! `dm:{q}:stream:high` and `dm:{q}:stream:low` hold the other [lanes](Lane)),
//! `dm:{q}:delayed` (a sorted set of delayed entries and retries by due time, each entry's fields in a hash
//! `dm:{q}:delayed:<job id>`), `dm:{q}:parked` (the dead-letter stream, capped at
//! [`QueueConfig::parked_max_len`] entries; `dm:{q}:parked-dropped` counts those the cap dropped),
//! `dm:{q}:job:<job id>` (job records), `dm:{q}:jobs:<state>` (job ids by state, scored by
//! the time they got there; `dm:{q}:jobs:paused`, present while the queue is
//! [paused](Queue::pause), holds the pause time), `dm:{q}:unique:<key>` (unique keys, each holding its job's id)
//! and the schedules' keys (`dm:{q}:sched`, a hash of the registered schedules by name, and
//! per schedule `dm:{q}:sched:<name>:tick:<ms>` dedupe keys, `...:last`, `...:paused` and
//! `...:resumed`); ended jobs are announced on the Pub/Sub channel
//! `dm:{q}:finished`. The hash tag `{q}` keeps them in one cluster slot, as the Lua scripts
//! need; every script names the keys it touches.
//!
//! A queue of several [partitions](QueueConfig::partitions) keeps partition `i`'s streams,
//! delayed set, parked stream, records, state sets, unique keys and schedule state under
//! `dm:{q:i}:p:...` (the tag takes a suffix where needed to spread the partitions' slots
//! evenly), each partition on a slot of its own; the rate limits' buckets, rate-key pauses,
//! key-concurrency slots, the index of schedules, the number of partitions
//! (`dm:{q}:partitions`) and the channel of ended jobs keep the queue's own tag `{q}`, so that
//! they hold across partitions.
//!
//! # Job records
//!
//! Every job has a [`JobRecord`]: its [`JobState`], type, attempt, enqueue, start and end
//! times, the worker that ran it, the last error, the park reason and the result. Each
//! transition (push, start, retry, wait, park, success, cancellation, re-drive, promotion of a
//! due entry) writes the record in the same script as the stream, so a crash can never leave
//! a record that disagrees with the queue. What is kept of ended jobs is the queue's choice, per
//! end state ([`Keep`]): for a day by default, for another time, the newest `n`, or nothing
//! unless someone waits for the job ([`QueueConfig::keep_done`], [`QueueConfig::keep_parked`],
//! [`QueueConfig::keep_cancelled`], and per push [`PushOptions::keep_for`]); the state sets
//! forget ended jobs as their records go.
//!
//! # Control
//!
//! - **Results**: a [`Job`] (or [`Handler`]) has an `Output`; it is stored as JSON with the
//!   record and typed again by [`Queue::wait_for`], which is woken by the end-of-job
//!   notification, not by polling.
//! - **Cancellation**: [`Queue::cancel`] removes a queued or delayed job (it never runs) or
//!   tells a running one within a second (at its next lease renewal, [`JobInfo::cancelled`]) and aborts it after
//!   [`WorkerConfig::cancel_grace`]; a service's guard closes the clients it opened.
//! - **Time limits**: [`Job::TIMEOUT`], [`Handler::timeout`] or [`PushOptions::timeout`]; at
//!   the deadline the attempt is dropped and fails with a `timeout` error (retried, then parked
//!   as [`ParkReason::Exhausted`]).
//! - **Unique jobs**: [`PushOptions::unique`] (or [`unique_by_payload`](PushOptions::unique_by_payload)):
//!   while a job holding the key is queued, delayed or running, a push returns that job
//!   ([`Pushed::duplicate`]); the key is claimed in the push script and released when the job
//!   ends, so concurrent pushes from any number of processes add exactly one job.
//! - **Shutdown**: running jobs are told ([`CancelReason::Shutdown`]); those that stop, or are
//!   still running shortly before [`WorkerConfig::shutdown_deadline`], are handed back to the
//!   queue at once without counting an attempt.
//! - **Operator mistakes**: entries left pending for no consumer below the group's last
//!   delivered id (after an `XGROUP DELCONSUMER`) are queued again by a periodic sweep, and
//!   consumers of crashed workers that hold nothing are removed
//!   ([`WorkerCounts::orphans_requeued`], [`WorkerCounts::consumers_pruned`]).
//!
//! # Envelope
//!
//! Each entry carries `id` (the job id, kept by retries), `key` (the idempotency key, by
//! default the id), `type` (the payload's type name, for a service its spec type's name), `v`
//! (the schema version), `attempt` (from 1), `enq` (first enqueue time, ms since the epoch),
//! optionally `max` (this job's maximum attempts), `uniq` (its unique key), `to` (its time
//! limit in ms), `rk` (its rate key), `rs` (`1`: its start is reserved in its rate limits),
//! `lane` (`high` or `low`; absent for the normal lane), `tp` (the producer's W3C
//! `traceparent`, see [`TraceParent`]), and `payload` (JSON bytes). See [`Envelope`].
//!
//! # What happens to an entry
//!
//! - The handler returns `Ok`: the entry is acknowledged and deleted (`XACK` + `XDEL`), in
//!   one script with the other runs of this worker that finished at the same time.
//! - It returns [`JobError::Failed`] or panics: the next attempt is put in the delayed set
//!   with exponential backoff and jitter ([`WorkerConfig::backoff_for`]) and the entry is
//!   acknowledged, in one script; at the maximum attempts it is parked as
//!   [`ParkReason::Exhausted`] with the last error.
//! - It returns [`JobError::Permanent`]: parked as [`ParkReason::Rejected`].
//! - A service's guard cannot be entered for want of a secret or a valid config (an
//!   environment variable not set, a malformed Redis URL): [`JobError::Misconfigured`], parked
//!   at once as [`ParkReason::Misconfigured`], to be re-driven once the environment is fixed; a
//!   worker warns at start about each environment secret of its services that is not set. A
//!   server that refuses the connection is a retry, as any failure that may pass.
//! - The entry is bad (not UTF-8, not JSON, wrong shape, unknown variant, missing field,
//!   missing envelope fields, unknown type name): parked at once with its raw bytes and the
//!   typed [`ParkReason`]; the worker goes on with the next entry.
//! - A service's entry has a schema version newer than the worker's spec type (pushed by a
//!   newer release, `#[dual_mode(version = N)]`): parked as [`ParkReason::NewerVersion`], to be
//!   re-driven once the workers are upgraded. Older versions decode as usual, so give new spec
//!   fields a `#[serde(default)]`.
//!
//! Every one of these writes happens in a Lua script that first checks, with `XPENDING`, that
//! this consumer still owns the entry with the same delivery count (the fencing token); if not,
//! the write is refused and the run counts as [`lease_lost`](WorkerCounts::lease_lost). The
//! batched scripts (acknowledgements, lease renewals) check each entry on its own and answer
//! per entry.
//!
//! # At-least-once delivery
//!
//! Delivery is **at-least-once**, never exactly-once: a job can run twice. That happens when a
//! worker dies (or is paused, or loses Redis) after the handler did its work but before the
//! acknowledgement, because its entry is claimed by another worker once the lease expired.
//! Leases and fencing make this rare and make the late run learn about it
//! ([`Lease::is_lost`], [`Lease::lost`]), and its acknowledgement is refused; but a side effect
//! the first run already made cannot be taken back.
//!
//! What does hold, exactly:
//!
//! - **No two runs of one job at the same moment** while both workers are alive and their
//!   clocks run at the same rate. A run counts its lease from when it *sent* its last
//!   successful renewal; once `lease - margin` has passed on its own clock
//!   ([`WorkerConfig::lease_margin`], a quarter of the lease) it is told it lost the lease and
//!   is aborted `lost_lease_grace` later, which must be shorter than the margin
//!   ([`Worker::run`] refuses other configurations). Another worker can claim the entry only
//!   after it has been idle for the whole lease, counted by Redis from the execution of that
//!   renewal, which came after its sending. So the old run has stopped before the new one can
//!   start, however long Redis stalls (tested with stalls of 1.5, 4 and 6 leases). The bound is
//!   the difference in clock rates over one lease; a paused process (`SIGSTOP`) cannot check
//!   its clock, and that is the case the idempotency key is for.
//! - **Never twice inside one process.** A worker never claims its own entries, and an entry
//!   it already holds is never delivered to a second run of the same process.
//! - **No delivery is left unrun.** A read or claim whose reply was lost still executed on the
//!   server; the worker takes such entries back (a claim by itself, raising the fencing token)
//!   within a claim interval. Entries left pending for no consumer are swept back, and a
//!   destroyed consumer group is recreated at the stream's end with its entries queued again
//!   under new entry ids after a lease, so runs in flight stop first and a fencing token is
//!   never reused for an entry id.
//! - **Outcomes are reported truly.** A write whose reply was lost and which is tried again is
//!   recognised from the job's record as landed; a refused write says whether another consumer
//!   holds the entry or no one does.
//!
//! So a handler must be safe to run twice. Every envelope carries an idempotency key
//! ([`JobInfo::idempotency_key`]): the job id by default, or a business key the producer chose
//! with [`PushOptions::idempotency_key`]. Make the side effect and the record that it was done
//! one atomic step keyed by it, so a second run finds the record and does nothing:
//!
//! ```no_run
//! use dual_mode_jobs::{JobInfo, JobError};
//!
//! async fn charge(job: JobInfo, con: &mut redis::aio::ConnectionManager) -> Result<(), JobError> {
//!     // The effect (here: add to a balance) and the "done" marker happen in one script, so
//!     // they happen together or not at all; a second run sees the marker and skips.
//!     let script = redis::Script::new(
//!         r"if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 604800) then
//!               redis.call('INCRBY', KEYS[2], ARGV[1]) return 1 end return 0",
//!     );
//!     let done_key = format!("charged:{}", job.idempotency_key());
//!     let _applied: i64 = script
//!         .key(done_key)
//!         .key("balance:42")
//!         .arg(100)
//!         .invoke_async(con)
//!         .await
//!         .map_err(JobError::failed)?;
//!     Ok(())
//! }
//! ```
//!
//! An effect outside Redis works the same way: an upsert keyed by the idempotency key in a
//! database, or an HTTP call with an `Idempotency-Key` header to an API that honours it.
//! Checking [`Lease::is_lost`] before committing narrows the window further, but cannot close
//! it: only the key does.
//!
//! # Rate limits
//!
//! [`QueueConfig::rate_limit`] limits how fast jobs start, across every worker: per queue,
//! per job type, and per [rate key](PushOptions::rate_key) (one bucket per key, e.g. per ESI
//! region). Each bucket is a GCRA state (`dm:{q}:rate:<bucket>`, the next start's theoretical
//! time), and one script checks every bucket a job draws from as the job is about to start:
//! on a queue of one partition, the read that delivers the job (see
//! [`Reader::gate_reads`](backend::Reader::gate_reads)), else a gate call per batch of jobs
//! on the queue's home. A job with room starts; one without gets its start reserved in all its buckets and goes
//! back to the delayed set, due at that start, marked reserved (`rs`) and without counting an
//! attempt ([`WorkerCounts::rate_limited`]). So a job over its limit waits once, never spins,
//! and never holds a worker slot while it waits, and other keys' jobs run meanwhile. Every
//! start, reserved or not, is also counted in its buckets' windows of actual starts
//! (`dm:{q}:rate-starts:<bucket>`, the last period's starts): a start needs room there too, at
//! most the limit's count plus its burst in any one period. Reservations that fell due while
//! every worker slot was busy therefore wait for the window when the slots free up, keeping
//! their reservation, instead of starting all at once. A
//! handler's [`JobError::RetryAfter`] delays its job without counting an attempt and pauses its
//! rate key for every worker (`dm:{q}:rate-pause:<key>`, expiring with the pause): jobs of a
//! paused key, reserved or not, are reserved again after the pause.
//!
//! [`QueueConfig::key_concurrency`] caps how many jobs of one rate key run at once across
//! workers. The same script gives a job that may start a slot of its key (`dm:{q}:slots:<key>`,
//! job ids scored by lease expiry, renewed with the entries' leases, so a crashed worker's slot
//! expires) or makes it a waiter (`dm:{q}:slot-wait:<key>`) due a lease later in the delayed
//! set; a run that ends gives its slot back and wakes the oldest waiter (due at once).
//!
//! # Delays and schedules
//!
//! Delayed pushes and retries wait in the sorted set; each worker moves the due ones into the
//! stream every [`WorkerConfig::poll_delayed_every`] with an atomic script, in batches, so any
//! number of due entries drains. A [`Scheduler`] enqueues each cron tick with a per-tick dedupe
//! key (named by the tick's instant in UTC, not by the clock nor the wall-clock time) set in
//! the same script as the `XADD`; the script also refuses the tick while the schedule is
//! paused. Ticks are computed on the wall clock of the schedule's time zone, with Vixie cron's
//! rule at daylight-saving changes (see [`Cron`]).

mod admin;
pub mod backend;
mod cron;
#[cfg(feature = "dashboard")]
pub mod dashboard;
mod envelope;
mod error;
mod fields;
mod job;
mod keep;
mod keys;
mod lane;
mod limit;
mod memory;
mod metrics;
mod partition;
mod queue;
mod record;
mod schedule;
mod signal;
pub mod testing;
mod trace;
mod worker;

#[cfg(feature = "metrics")]
pub use admin::record_depth;
pub use admin::{Page, QueueOverview, Throughput, WorkerInfo};
pub use cron::Cron;
pub use envelope::{Envelope, RawFields, decode_json};
pub use error::{
    BoxError, CronError, DecodeError, EnvelopeError, JobError, ParkReason, QueueError, ReplyError, error_chain,
};
pub use keep::Keep;
pub use lane::{Lane, UnknownLane};
pub use limit::{RateLimit, RateScope};
pub use queue::{ParkedEntry, PushOptions, Pushed, Queue, QueueConfig, QueueKeys, QueueStats};
pub use record::{CancelOutcome, JobOutcome, JobRecord, JobState, UnknownState, WaitError};
pub use schedule::{Schedule, ScheduleInfo, Scheduler, SchedulerConfig};
pub use signal::shutdown_signal;
pub use trace::{TraceParent, TraceParentError};
pub use worker::{
    CancelReason, Clients, Handler, HandlerFn, Job, JobInfo, Lease, Queues, RunReport, ServiceHandler, Typed, Worker,
    WorkerConfig, WorkerCounts, WorkerHandle, WorkerStats, decode_spec, handler_fn, typed,
};
