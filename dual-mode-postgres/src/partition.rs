//! The [`Backend`] implementation: each operation is one of the store's methods, one
//! transaction (or one statement) in Postgres.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;

use dual_mode_jobs::backend::{
    Answer, Backend, Claimed, ConsumerInfo, DoneRun, Ending, Entry, Gate, MarkRun, Marked, Passed, PushAnswer,
    QueueStats, Reader, Renewed, RunRef, ScheduleState, StateCounts, Ticked, Written, millis,
};
use dual_mode_jobs::{CancelOutcome, Envelope, JobRecord, JobState, Lane, RawFields};

use crate::Store;
use crate::runs::{PostgresReader, read_sql};

/// One partition of one queue in Postgres.
pub(crate) struct PostgresPartition {
    store: Store,
}

impl PostgresPartition {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Backend for PostgresPartition {
    fn claim_partitions(&self, n: u16) -> Answer<'_, u16> {
        Box::pin(self.store.claim_partitions(n))
    }

    /// The tables exist once the schema is migrated, and no operator command destroys a
    /// consumer group: nothing to do, nothing moved.
    fn ensure_group(&self, _delay: Duration) -> Answer<'_, Option<usize>> {
        Box::pin(async { Ok(None) })
    }

    fn reader(&self, block: Duration, _timeout: Duration) -> Answer<'_, Box<dyn Reader>> {
        let block = Duration::from_millis(millis(block).max(1));
        let read = self.store.sql(&read_sql());
        let reader = PostgresReader { store: self.store.clone(), read, block, short: false, trickle: None };
        Box::pin(async move { Ok(Box::new(reader) as Box<dyn Reader>) })
    }

    fn push<'a>(&'a self, env: &'a Envelope, unique_ttl: Duration) -> Answer<'a, PushAnswer> {
        Box::pin(self.store.push(env, unique_ttl))
    }

    fn push_many<'a>(&'a self, envs: &'a [Envelope], unique_ttl: Duration) -> Answer<'a, Vec<PushAnswer>> {
        Box::pin(self.store.push_many(envs, unique_ttl))
    }

    fn push_delayed<'a>(
        &'a self,
        env: &'a Envelope,
        unique_ttl: Duration,
        at_ms: u64,
        delay_ms: u64,
    ) -> Answer<'a, PushAnswer> {
        Box::pin(self.store.push_delayed(env, unique_ttl, at_ms, delay_ms))
    }

    fn promote(&self, max: usize) -> Answer<'_, usize> {
        Box::pin(self.store.promote(max))
    }

    fn claim<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle_ms: u64,
        cursor: &'a str,
        count: usize,
    ) -> Answer<'a, (String, Vec<Claimed>)> {
        Box::pin(self.store.claim(lane, consumer, min_idle_ms, cursor, count))
    }

    fn own_pending<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle: Duration,
        count: usize,
    ) -> Answer<'a, Vec<String>> {
        Box::pin(self.store.own_pending(lane, consumer, min_idle, count))
    }

    fn reclaim<'a>(&'a self, lane: Lane, consumer: &'a str, ids: &'a [String]) -> Answer<'a, Vec<Claimed>> {
        Box::pin(self.store.reclaim(lane, consumer, ids))
    }

    fn mark<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [MarkRun]) -> Answer<'a, Vec<Marked>> {
        Box::pin(self.store.mark(lane, consumer, runs))
    }

    fn renew<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        runs: &'a [(&'a str, u64, &'a str)],
    ) -> Answer<'a, Vec<Renewed>> {
        Box::pin(self.store.renew(lane, consumer, runs))
    }

    fn ack<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [DoneRun]) -> Answer<'a, Vec<Written>> {
        Box::pin(self.store.ack(lane, consumer, runs))
    }

    fn ack_gather(&self) -> Duration {
        crate::runs::GATHER
    }

    fn end<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        run: &'a RunRef<'a>,
        ending: &'a Ending<'a>,
        record: &'a [(&'a str, Vec<u8>)],
    ) -> Answer<'a, Written> {
        Box::pin(self.store.end(lane, consumer, run, ending, record))
    }

    fn gate<'a>(&'a self, gates: &'a [Gate], lease: Duration) -> Answer<'a, Vec<Passed>> {
        Box::pin(self.store.gate(gates, lease))
    }

    fn release_slot<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, ()> {
        Box::pin(self.store.release_slot(rate_key, job_id))
    }

    fn release_slot_take<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(self.store.release_slot_take(rate_key, job_id))
    }

    fn wake<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool> {
        Box::pin(self.store.wake(job_id))
    }

    fn renew_slots<'a>(&'a self, held: &'a [(&'a str, &'a str)], lease: Duration) -> Answer<'a, ()> {
        Box::pin(self.store.renew_slots(held, lease))
    }

    fn pause_rate_key<'a>(&'a self, rate_key: &'a str, pause: Duration) -> Answer<'a, ()> {
        Box::pin(self.store.pause_rate_key(rate_key, pause))
    }

    fn cancel<'a>(&'a self, job_id: &'a str) -> Answer<'a, CancelOutcome> {
        Box::pin(self.store.cancel(job_id))
    }

    fn record<'a>(&'a self, job_id: &'a str) -> Answer<'a, Option<JobRecord>> {
        Box::pin(self.store.record(job_id))
    }

    fn keep_waited<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool> {
        Box::pin(self.store.keep_waited(job_id))
    }

    fn records_of<'a>(&'a self, ids: &'a [String]) -> Answer<'a, Vec<Option<JobRecord>>> {
        Box::pin(self.store.records_of(ids))
    }

    fn records(&self, state: JobState, start: usize, count: usize) -> Answer<'_, (Vec<JobRecord>, u64)> {
        Box::pin(self.store.records(state, start, count))
    }

    /// The ids of jobs as they end, through `LISTEN`; an empty id where some may have been
    /// missed (a slow listener, or a lost connection): read the records again.
    fn finished(&self) -> Answer<'_, BoxStream<'static, Arc<str>>> {
        Box::pin(self.store.finished())
    }

    fn parked_range<'a>(&'a self, start: &'a str, end: &'a str, count: usize) -> Answer<'a, Vec<Entry>> {
        Box::pin(self.store.parked_range(start, end, count))
    }

    fn parked_newest<'a>(&'a self, before: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>> {
        Box::pin(self.store.parked_newest(before, count))
    }

    fn redrive<'a>(
        &'a self,
        parked_id: &'a str,
        raw_prefix: &'a str,
        job_id: Option<&'a str>,
    ) -> Answer<'a, Option<String>> {
        Box::pin(self.store.redrive(parked_id, raw_prefix, job_id))
    }

    fn stats(&self) -> Answer<'_, QueueStats> {
        Box::pin(self.store.stats())
    }

    fn state_counts(&self) -> Answer<'_, StateCounts> {
        Box::pin(self.store.state_counts())
    }

    fn entered<'a>(
        &'a self,
        states: &'a [&'a str],
        from_ms: u64,
        width_ms: u64,
        buckets: usize,
    ) -> Answer<'a, Vec<Vec<u64>>> {
        Box::pin(self.store.entered(states, from_ms, width_ms, buckets))
    }

    fn state_page<'a>(
        &'a self,
        state: &'a str,
        after: Option<(&'a str, &'a str)>,
        count: usize,
    ) -> Answer<'a, Vec<(String, String)>> {
        Box::pin(self.store.state_page(state, after, count))
    }

    fn queued_page<'a>(&'a self, lane: Lane, after: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>> {
        Box::pin(self.store.queued_page(lane, after, count))
    }

    fn stream_entry<'a>(&'a self, lane: Lane, entry_id: &'a str) -> Answer<'a, Option<RawFields>> {
        Box::pin(self.store.stream_entry(lane, entry_id))
    }

    fn delayed_fields<'a>(&'a self, job_id: &'a str) -> Answer<'a, RawFields> {
        Box::pin(self.store.delayed_fields(job_id))
    }

    fn consumers(&self, lane: Lane) -> Answer<'_, Vec<ConsumerInfo>> {
        Box::pin(self.store.consumers(lane))
    }

    fn is_paused(&self) -> Answer<'_, bool> {
        Box::pin(self.store.is_paused())
    }

    fn pause_queue(&self, now_ms: u64) -> Answer<'_, bool> {
        Box::pin(self.store.pause_queue(now_ms))
    }

    fn resume_queue(&self) -> Answer<'_, bool> {
        Box::pin(self.store.resume_queue())
    }

    /// An entry no consumer holds is ready to read here (there is no group to fall out of):
    /// nothing is ever orphaned, so nothing moves.
    fn sweep<'a>(&'a self, _lane: Lane, _cursor: &'a str, _count: usize) -> Answer<'a, (Option<String>, u64)> {
        Box::pin(async { Ok((None, 0)) })
    }

    fn trim_ended(&self) -> Answer<'_, u64> {
        Box::pin(self.store.trim_ended())
    }

    fn prune_consumers<'a>(&'a self, lane: Lane, consumer: &'a str, min_idle: Duration) -> Answer<'a, u64> {
        Box::pin(self.store.prune_consumers(lane, consumer, min_idle))
    }

    fn remove_consumer_if_idle<'a>(&'a self, lane: Lane, consumer: &'a str) -> Answer<'a, bool> {
        Box::pin(self.store.remove_consumer_if_idle(lane, consumer))
    }

    fn tick<'a>(
        &'a self,
        name: &'a str,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &'a Envelope,
        unique_ttl: Duration,
    ) -> Answer<'a, Ticked> {
        Box::pin(self.store.tick(name, dedupe_ttl, tick_ms, env, unique_ttl))
    }

    fn last_tick<'a>(&'a self, name: &'a str) -> Answer<'a, Option<i64>> {
        Box::pin(self.store.last_tick(name))
    }

    fn pause_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool> {
        Box::pin(self.store.pause_schedule(name, now_ms))
    }

    fn resume_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool> {
        Box::pin(self.store.resume_schedule(name, now_ms))
    }

    fn schedule_states<'a>(&'a self, names: &'a [String]) -> Answer<'a, Vec<ScheduleState>> {
        Box::pin(self.store.schedule_states(names))
    }

    fn forget_schedule<'a>(&'a self, name: &'a str) -> Answer<'a, bool> {
        Box::pin(self.store.forget_schedule(name))
    }

    fn register_schedules<'a>(&'a self, entries: &'a [(String, String)]) -> Answer<'a, ()> {
        Box::pin(self.store.register_schedules(entries))
    }

    fn schedule_index(&self) -> Answer<'_, Vec<(String, String)>> {
        Box::pin(self.store.schedule_index())
    }
}
