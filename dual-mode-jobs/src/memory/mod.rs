//! The in-process backend: jobs are lost when the process exits. Every queue lives in this
//! process's memory, with the same semantics as on Redis.
//!
//! A [`MemoryPartition`] holds what a Redis partition holds, laid out as Redis keeps it:
//! three lanes, each a stream of `<ms>-<seq>` entries with the queue's consumer group on it
//! (its delivered entries, each with an owner, a delivery count that is the run's fencing
//! token, and an idle time), the delayed set and its entries, the capped parked stream,
//! job records with their state sets, unique keys, and (as a queue's home) the rate buckets,
//! rate-key pauses, key-concurrency slots and their waiters, the pause of the queue and the
//! schedules. Each operation is a port of the Redis store's script or command for it, run
//! under one lock: one operation is one critical section, as one script is on Redis, and the
//! lock is never held across an `.await`.
//!
//! Time is the system clock in ms since the epoch, as the scripts read Redis's `TIME`. A
//! reader's wait wakes when an entry arrives in any lane (or after its block time), and the
//! ids of ended jobs go out on a broadcast channel. Records of ended jobs expire after the
//! record lifetime and the parked stream keeps at most its cap, as on Redis.
//!
//! What cannot happen in one process answers "nothing to do": the consumer group exists from
//! the start and no operator can destroy it ([`Backend::ensure_group`]), and no consumer can
//! be removed while it holds entries, so a sweep finds no orphaned entry.

mod gates;
mod jobs;
mod push;
mod reader;
mod reads;
mod runs;
mod schedules;
mod sets;
mod state;
mod stream;
#[cfg(test)]
mod tests;

use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tokio::sync::{Notify, broadcast};

use self::reader::MemoryReader;
use self::state::{Limits, State};
use self::stream::StreamId;
use crate::backend::QueueStats;
use crate::backend::{
    Answer, Backend, Claimed, ConsumerInfo, DoneRun, Ending, Entry, Gate, MarkRun, Marked, Passed, PushAnswer, Reader,
    Renewed, Retention, RunRef, ScheduleState, StateCounts, Ticked, Written,
};
use crate::envelope::{Envelope, RawFields, unix_ms};
use crate::error::QueueError;
use crate::lane::Lane;
use crate::record::{CancelOutcome, JobRecord, JobState};

/// The longest a reader's wait blocks.
const LONGEST_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many ended jobs' ids a slow listener may fall behind before it is told it missed some.
const ENDED_CAPACITY: usize = 4096;

/// One partition of a queue in this process's memory (or a queue of one partition, its own
/// home). Clones share the partition. See the [module docs](self).
#[derive(Clone)]
pub(crate) struct MemoryPartition {
    shared: Arc<Shared>,
}

/// What a partition's clones and readers share.
struct Shared {
    /// The partition's data, under the one lock of its operations.
    state: Mutex<State>,
    /// Milliseconds added to the system clock (moved by tests only).
    skew_ms: AtomicU64,
    /// Woken when an entry is added to a lane.
    added: Notify,
    /// The ids of jobs as they end.
    ended: broadcast::Sender<Arc<str>>,
}

impl MemoryPartition {
    /// An empty partition whose ended jobs' records live and parked entries are capped as
    /// `retention` says (the queue's settings).
    pub(crate) fn new(retention: Retention) -> Self {
        let limits = Limits {
            waited_ms: retention.waited_ms.max(1),
            parked_max_len: retention.parked_max_len.max(1),
            ..retention
        };
        let (ended, _) = broadcast::channel(ENDED_CAPACITY);
        Self::with_limits(limits, ended)
    }

    /// Another partition of the queue whose home this is: empty, with the same settings, and
    /// its ended jobs announced on the home's [`finished`](Backend::finished) (as every
    /// partition on Redis publishes on the queue's one channel).
    pub(crate) fn partition(&self) -> Self {
        let limits = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).limits;
        Self::with_limits(limits, self.shared.ended.clone())
    }

    /// An empty partition announcing its ended jobs on `ended`.
    fn with_limits(limits: Limits, ended: broadcast::Sender<Arc<str>>) -> Self {
        let shared =
            Shared { state: Mutex::new(State::new(limits)), skew_ms: AtomicU64::new(0), added: Notify::new(), ended };
        Self { shared: Arc::new(shared) }
    }

    /// An operation's answer: `op` run when polled, on the state at the current time, in one
    /// critical section.
    fn answer<'a, T: Send + 'a>(&'a self, op: impl FnOnce(&mut State, u64) -> T + Send + 'a) -> Answer<'a, T> {
        Box::pin(async move { Ok(self.shared.with(op)) })
    }

    /// [`MemoryPartition::answer`] of an operation that may fail.
    fn try_answer<'a, T: Send + 'a>(
        &'a self,
        op: impl FnOnce(&mut State, u64) -> Result<T, QueueError> + Send + 'a,
    ) -> Answer<'a, T> {
        Box::pin(async move { self.shared.with(op) })
    }

    /// Moves this partition's clock forward.
    #[cfg(test)]
    fn advance(&self, by: Duration) {
        self.shared.skew_ms.fetch_add(millis(by), Ordering::Relaxed);
    }
}

impl Shared {
    /// The time in ms since the epoch, as the scripts read Redis's `TIME`.
    fn now(&self) -> u64 {
        unix_ms(SystemTime::now()).saturating_add(self.skew_ms.load(Ordering::Relaxed))
    }

    /// Runs `op` on the state at the current time, in one critical section, then wakes
    /// readers and tells listeners of what it did.
    fn with<T>(&self, op: impl FnOnce(&mut State, u64) -> T) -> T {
        let now = self.now();
        let (out, events) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.purge(now);
            let out = op(&mut state, now);
            (out, mem::take(&mut state.events))
        };
        if events.added {
            self.added.notify_waiters();
        }
        for id in events.ended {
            // No listener: nobody waits.
            let _ = self.ended.send(id);
        }
        out
    }

    /// Waits up to `block` for an entry newer than `last` in any lane.
    async fn wait_after(&self, last: [StreamId; 3], block: Duration) {
        let now = tokio::time::Instant::now();
        // A block too long to be a deadline waits as long as one can.
        let deadline = now.checked_add(block).unwrap_or_else(|| now + LONGEST_WAIT);
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            // Registered before the check, so a push between the two is not missed.
            added.as_mut().enable();
            let arrived = {
                let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                Lane::ALL.iter().any(|lane| state.lanes[lane.index()].stream.has_after(last[lane.index()]))
            };
            if arrived {
                return;
            }
            tokio::select! {
                () = &mut added => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

use crate::envelope::millis;

impl Backend for MemoryPartition {
    fn claim_partitions(&self, n: u16) -> Answer<'_, u16> {
        self.answer(move |s, _| *s.partitions.get_or_insert(n))
    }

    /// The consumer group exists from the start and no operator can destroy it: nothing to
    /// do, nothing moved.
    fn ensure_group(&self, _delay: Duration) -> Answer<'_, Option<usize>> {
        Box::pin(async { Ok(None) })
    }

    fn reader(&self, block: Duration, _timeout: Duration) -> Answer<'_, Box<dyn Reader>> {
        let block = Duration::from_millis(millis(block).max(1));
        let reader = MemoryReader { shared: self.shared.clone(), block, last: None };
        Box::pin(async move { Ok(Box::new(reader) as Box<dyn Reader>) })
    }

    fn push<'a>(&'a self, env: &'a Envelope, unique_ttl: Duration) -> Answer<'a, PushAnswer> {
        self.answer(move |s, now| s.push(env, millis(unique_ttl), now))
    }

    fn push_many<'a>(&'a self, envs: &'a [Envelope], unique_ttl: Duration) -> Answer<'a, Vec<PushAnswer>> {
        self.answer(move |s, now| envs.iter().map(|env| s.push(env, millis(unique_ttl), now)).collect())
    }

    fn push_delayed<'a>(
        &'a self,
        env: &'a Envelope,
        unique_ttl: Duration,
        at_ms: u64,
        delay_ms: u64,
    ) -> Answer<'a, PushAnswer> {
        self.answer(move |s, now| s.push_delayed(env, millis(unique_ttl), at_ms, delay_ms, now))
    }

    fn promote(&self, max: usize) -> Answer<'_, usize> {
        self.answer(move |s, now| s.promote(max, now))
    }

    fn claim<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle_ms: u64,
        cursor: &'a str,
        count: usize,
    ) -> Answer<'a, (String, Vec<Claimed>)> {
        self.try_answer(move |s, now| s.claim(lane, consumer, min_idle_ms, cursor, count, now))
    }

    fn own_pending<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle: Duration,
        count: usize,
    ) -> Answer<'a, Vec<String>> {
        self.answer(move |s, now| s.own_pending(lane, consumer, millis(min_idle), count, now))
    }

    fn reclaim<'a>(&'a self, lane: Lane, consumer: &'a str, ids: &'a [String]) -> Answer<'a, Vec<Claimed>> {
        self.try_answer(move |s, now| s.reclaim(lane, consumer, ids, now))
    }

    fn mark<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [MarkRun]) -> Answer<'a, Vec<Marked>> {
        self.try_answer(move |s, now| s.mark(lane, consumer, runs, now))
    }

    fn renew<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        runs: &'a [(&'a str, u64, &'a str)],
    ) -> Answer<'a, Vec<Renewed>> {
        self.try_answer(move |s, now| s.renew(lane, consumer, runs, now))
    }

    fn ack<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [DoneRun]) -> Answer<'a, Vec<Written>> {
        self.try_answer(move |s, now| s.ack(lane, consumer, runs, now))
    }

    fn end<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        run: &'a RunRef<'a>,
        ending: &'a Ending<'a>,
        record: &'a [(&'a str, Vec<u8>)],
    ) -> Answer<'a, Written> {
        self.try_answer(move |s, now| s.end(lane, consumer, run, ending, record, now))
    }

    fn gate<'a>(&'a self, gates: &'a [Gate], lease: Duration) -> Answer<'a, Vec<Passed>> {
        self.answer(move |s, now| s.gate(gates, millis(lease).max(1), now))
    }

    fn release_slot<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, ()> {
        self.answer(move |s, now| s.release_slot(rate_key, job_id, now))
    }

    fn release_slot_take<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, Option<String>> {
        self.answer(move |s, _| s.release_slot_take(rate_key, job_id))
    }

    fn wake<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool> {
        self.answer(move |s, _| s.wake(job_id))
    }

    fn renew_slots<'a>(&'a self, held: &'a [(&'a str, &'a str)], lease: Duration) -> Answer<'a, ()> {
        self.answer(move |s, now| s.renew_slots(held, millis(lease).max(1), now))
    }

    fn pause_rate_key<'a>(&'a self, rate_key: &'a str, pause: Duration) -> Answer<'a, ()> {
        self.answer(move |s, now| s.pause_rate_key(rate_key, millis(pause).max(1), now))
    }

    fn cancel<'a>(&'a self, job_id: &'a str) -> Answer<'a, CancelOutcome> {
        self.try_answer(move |s, now| s.cancel(job_id, now))
    }

    fn record<'a>(&'a self, job_id: &'a str) -> Answer<'a, Option<JobRecord>> {
        self.answer(move |s, _| s.record(job_id))
    }

    fn keep_waited<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool> {
        self.answer(move |s, _| s.keep_waited(job_id))
    }

    fn records_of<'a>(&'a self, ids: &'a [String]) -> Answer<'a, Vec<Option<JobRecord>>> {
        self.answer(move |s, _| s.records_of(ids))
    }

    fn records(&self, state: JobState, start: usize, count: usize) -> Answer<'_, (Vec<JobRecord>, u64)> {
        self.answer(move |s, _| s.records(state, start, count))
    }

    /// The ids of jobs as they end; a listener that falls behind by more than a few
    /// thousand ids gets an empty id where it missed some (read the records again).
    fn finished(&self) -> Answer<'_, BoxStream<'static, Arc<str>>> {
        Box::pin(async move {
            let ended = self.shared.ended.subscribe();
            let ids = futures_util::stream::unfold(ended, |mut ended| async move {
                match ended.recv().await {
                    Ok(id) => Some((id, ended)),
                    Err(broadcast::error::RecvError::Lagged(_)) => Some((Arc::from(""), ended)),
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            });
            Ok(ids.boxed())
        })
    }

    fn parked_range<'a>(&'a self, start: &'a str, end: &'a str, count: usize) -> Answer<'a, Vec<Entry>> {
        self.try_answer(move |s, _| s.parked_range(start, end, count))
    }

    fn parked_newest<'a>(&'a self, before: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>> {
        self.try_answer(move |s, _| s.parked_newest(before, count))
    }

    fn redrive<'a>(
        &'a self,
        parked_id: &'a str,
        raw_prefix: &'a str,
        job_id: Option<&'a str>,
    ) -> Answer<'a, Option<String>> {
        self.try_answer(move |s, now| s.redrive(parked_id, raw_prefix, job_id, now))
    }

    fn stats(&self) -> Answer<'_, QueueStats> {
        self.answer(move |s, _| s.stats())
    }

    fn state_counts(&self) -> Answer<'_, StateCounts> {
        self.answer(move |s, _| s.state_counts())
    }

    fn entered<'a>(
        &'a self,
        states: &'a [&'a str],
        from_ms: u64,
        width_ms: u64,
        buckets: usize,
    ) -> Answer<'a, Vec<Vec<u64>>> {
        self.answer(move |s, _| s.entered(states, from_ms, width_ms, buckets))
    }

    fn state_page<'a>(
        &'a self,
        state: &'a str,
        after: Option<(&'a str, &'a str)>,
        count: usize,
    ) -> Answer<'a, Vec<(String, String)>> {
        self.try_answer(move |s, _| s.state_page(state, after, count))
    }

    fn queued_page<'a>(&'a self, lane: Lane, after: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>> {
        self.try_answer(move |s, _| s.queued_page(lane, after, count))
    }

    fn stream_entry<'a>(&'a self, lane: Lane, entry_id: &'a str) -> Answer<'a, Option<RawFields>> {
        self.try_answer(move |s, _| s.stream_entry(lane, entry_id))
    }

    fn delayed_fields<'a>(&'a self, job_id: &'a str) -> Answer<'a, RawFields> {
        self.answer(move |s, _| s.delayed_fields(job_id))
    }

    fn consumers(&self, lane: Lane) -> Answer<'_, Vec<ConsumerInfo>> {
        self.answer(move |s, now| s.consumers(lane, now))
    }

    fn is_paused(&self) -> Answer<'_, bool> {
        self.answer(move |s, _| s.paused.is_some())
    }

    fn pause_queue(&self, now_ms: u64) -> Answer<'_, bool> {
        self.answer(move |s, _| s.pause_queue(now_ms))
    }

    fn resume_queue(&self) -> Answer<'_, bool> {
        self.answer(move |s, _| s.paused.take().is_some())
    }

    /// The Redis store's sweep; in one process it finds nothing to re-queue (see the
    /// [module docs](self)).
    fn sweep<'a>(&'a self, lane: Lane, cursor: &'a str, count: usize) -> Answer<'a, (Option<String>, u64)> {
        self.try_answer(move |s, now| s.sweep(lane, cursor, count, now))
    }

    fn trim_ended(&self) -> Answer<'_, u64> {
        self.answer(State::trim_ended)
    }

    fn prune_consumers<'a>(&'a self, lane: Lane, consumer: &'a str, min_idle: Duration) -> Answer<'a, u64> {
        self.answer(move |s, now| s.prune_consumers(lane, consumer, millis(min_idle), now))
    }

    fn remove_consumer_if_idle<'a>(&'a self, lane: Lane, consumer: &'a str) -> Answer<'a, bool> {
        self.answer(move |s, _| s.remove_consumer_if_idle(lane, consumer))
    }

    fn tick<'a>(
        &'a self,
        name: &'a str,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &'a Envelope,
        unique_ttl: Duration,
    ) -> Answer<'a, Ticked> {
        self.answer(move |s, now| s.tick(name, millis(dedupe_ttl).max(1), tick_ms, env, millis(unique_ttl), now))
    }

    fn last_tick<'a>(&'a self, name: &'a str) -> Answer<'a, Option<i64>> {
        self.answer(move |s, _| s.schedule(name).last)
    }

    fn pause_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool> {
        self.answer(move |s, _| s.pause_schedule(name, ms_i64(now_ms)))
    }

    fn resume_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool> {
        self.answer(move |s, _| s.resume_schedule(name, ms_i64(now_ms)))
    }

    fn schedule_states<'a>(&'a self, names: &'a [String]) -> Answer<'a, Vec<ScheduleState>> {
        self.answer(move |s, _| s.schedule_states(names))
    }

    fn forget_schedule<'a>(&'a self, name: &'a str) -> Answer<'a, bool> {
        self.answer(move |s, _| s.forget_schedule(name))
    }

    fn register_schedules<'a>(&'a self, entries: &'a [(String, String)]) -> Answer<'a, ()> {
        self.answer(move |s, _| s.register_schedules(entries))
    }

    fn schedule_index(&self) -> Answer<'_, Vec<(String, String)>> {
        self.answer(move |s, _| s.schedule_index())
    }
}

/// A time in ms as the schedules' state holds it.
fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
