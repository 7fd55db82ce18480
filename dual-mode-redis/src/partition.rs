//! The Redis store behind the [`Backend`] trait: one partition's three lanes, each a
//! [`Store`] on the partition's keys (sharing one connection).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{ScheduleKeys, Store};
use dual_mode_jobs::Lane;
use dual_mode_jobs::QueueKeys;
use dual_mode_jobs::backend::QueueStats;
use dual_mode_jobs::backend::{
    Answer, Backend, Claimed, ConsumerInfo, DoneRun, Ending, Entry, Gate, GateRules, MarkRun, Marked, Passed,
    PushAnswer, Read, Reader, Renewed, RunRef, ScheduleState, StateCounts, Ticked, Written,
};
use dual_mode_jobs::{CancelOutcome, JobRecord, JobState};
use dual_mode_jobs::{Envelope, RawFields};

/// One partition of a queue on Redis (or a queue's home): its lanes' stores.
pub(crate) struct RedisPartition {
    lanes: [Store; 3],
}

impl RedisPartition {
    /// The partition whose keys `store` has.
    pub(crate) fn new(store: &Store) -> Self {
        Self { lanes: Lane::ALL.map(|lane| store.lane(lane)) }
    }

    /// The store of the normal lane.
    fn normal(&self) -> &Store {
        &self.lanes[Lane::Normal.index()]
    }

    fn lane(&self, lane: Lane) -> &Store {
        &self.lanes[lane.index()]
    }

    /// The partition's keys.
    pub(crate) fn keys(&self) -> &QueueKeys {
        self.normal().keys()
    }

    fn schedule(&self, name: &str) -> ScheduleKeys {
        ScheduleKeys::new(self.keys(), name)
    }
}

impl Reader for super::Reader {
    fn read<'a>(&'a mut self, consumer: &'a str, count: usize, order: [Lane; 3]) -> Answer<'a, Read> {
        Box::pin(super::Reader::read(self, consumer, count, order))
    }

    fn wait(&mut self) -> Answer<'_, ()> {
        Box::pin(super::Reader::wait(self))
    }

    fn gate_reads(&mut self, rules: &GateRules) -> bool {
        super::Reader::gate_reads(self, rules)
    }
}

impl Backend for RedisPartition {
    fn claim_partitions(&self, n: u16) -> Answer<'_, u16> {
        Box::pin(self.normal().claim_partitions(n))
    }

    fn ensure_group(&self, delay: Duration) -> Answer<'_, Option<usize>> {
        Box::pin(self.normal().ensure_group(delay))
    }

    fn reader(&self, block: Duration, timeout: Duration) -> Answer<'_, Box<dyn Reader>> {
        Box::pin(async move { Ok(Box::new(self.normal().reader(block, timeout).await?) as Box<dyn Reader>) })
    }

    fn push<'a>(&'a self, env: &'a Envelope, unique_ttl: Duration) -> Answer<'a, PushAnswer> {
        Box::pin(self.lane(env.lane).push(env, unique_ttl))
    }

    fn push_many<'a>(&'a self, envs: &'a [Envelope], unique_ttl: Duration) -> Answer<'a, Vec<PushAnswer>> {
        let lane = envs.first().map_or(Lane::Normal, |env| env.lane);
        Box::pin(self.lane(lane).push_many(envs, unique_ttl))
    }

    fn push_delayed<'a>(
        &'a self,
        env: &'a Envelope,
        unique_ttl: Duration,
        at_ms: u64,
        delay_ms: u64,
    ) -> Answer<'a, PushAnswer> {
        Box::pin(self.lane(env.lane).push_delayed(env, unique_ttl, at_ms, delay_ms))
    }

    fn promote(&self, max: usize) -> Answer<'_, usize> {
        Box::pin(self.normal().promote(max))
    }

    fn claim<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle_ms: u64,
        cursor: &'a str,
        count: usize,
    ) -> Answer<'a, (String, Vec<Claimed>)> {
        Box::pin(self.lane(lane).claim(consumer, min_idle_ms, cursor, count))
    }

    fn own_pending<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        min_idle: Duration,
        count: usize,
    ) -> Answer<'a, Vec<String>> {
        Box::pin(self.lane(lane).own_pending(consumer, min_idle, count))
    }

    fn reclaim<'a>(&'a self, lane: Lane, consumer: &'a str, ids: &'a [String]) -> Answer<'a, Vec<Claimed>> {
        Box::pin(self.lane(lane).reclaim(consumer, ids))
    }

    fn mark<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [MarkRun]) -> Answer<'a, Vec<Marked>> {
        Box::pin(self.lane(lane).mark(consumer, runs))
    }

    fn renew<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        runs: &'a [(&'a str, u64, &'a str)],
    ) -> Answer<'a, Vec<Renewed>> {
        Box::pin(self.lane(lane).renew(consumer, runs))
    }

    fn ack<'a>(&'a self, lane: Lane, consumer: &'a str, runs: &'a [DoneRun]) -> Answer<'a, Vec<Written>> {
        Box::pin(self.lane(lane).ack(consumer, runs))
    }

    fn end<'a>(
        &'a self,
        lane: Lane,
        consumer: &'a str,
        run: &'a RunRef<'a>,
        ending: &'a Ending<'a>,
        record: &'a [(&'a str, Vec<u8>)],
    ) -> Answer<'a, Written> {
        Box::pin(self.lane(lane).end(consumer, run, ending, record))
    }

    fn gate<'a>(&'a self, gates: &'a [Gate], lease: Duration) -> Answer<'a, Vec<Passed>> {
        Box::pin(self.normal().gate(gates, lease))
    }

    fn release_slot<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, ()> {
        Box::pin(self.normal().release_slot(rate_key, job_id))
    }

    fn release_slot_take<'a>(&'a self, rate_key: &'a str, job_id: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(self.normal().release_slot_take(rate_key, job_id))
    }

    fn wake<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool> {
        Box::pin(self.normal().wake(job_id))
    }

    fn renew_slots<'a>(&'a self, held: &'a [(&'a str, &'a str)], lease: Duration) -> Answer<'a, ()> {
        Box::pin(self.normal().renew_slots(held, lease))
    }

    fn pause_rate_key<'a>(&'a self, rate_key: &'a str, pause: Duration) -> Answer<'a, ()> {
        Box::pin(self.normal().pause_rate_key(rate_key, pause))
    }

    fn cancel<'a>(&'a self, job_id: &'a str) -> Answer<'a, CancelOutcome> {
        Box::pin(self.normal().cancel(job_id))
    }

    fn record<'a>(&'a self, job_id: &'a str) -> Answer<'a, Option<JobRecord>> {
        Box::pin(self.normal().record(job_id))
    }

    fn keep_waited<'a>(&'a self, job_id: &'a str) -> Answer<'a, bool> {
        Box::pin(self.normal().keep_waited(job_id))
    }

    fn records_of<'a>(&'a self, ids: &'a [String]) -> Answer<'a, Vec<Option<JobRecord>>> {
        Box::pin(self.normal().records_of(ids))
    }

    fn records(&self, state: JobState, start: usize, count: usize) -> Answer<'_, (Vec<JobRecord>, u64)> {
        Box::pin(self.normal().records(state, start, count))
    }

    fn finished(&self) -> Answer<'_, BoxStream<'static, Arc<str>>> {
        Box::pin(async move {
            let messages = self.normal().finished().await?;
            // One message per script: the ids of the jobs it ended, space-separated.
            let ids = messages.flat_map(|msg| {
                let ids: Vec<Arc<str>> = msg
                    .get_payload::<String>()
                    .map(|ids| ids.split_ascii_whitespace().map(Arc::from).collect())
                    .unwrap_or_default();
                futures_util::stream::iter(ids)
            });
            Ok(ids.boxed())
        })
    }

    fn parked_range<'a>(&'a self, start: &'a str, end: &'a str, count: usize) -> Answer<'a, Vec<Entry>> {
        Box::pin(self.normal().parked_range(start, end, count))
    }

    fn parked_newest<'a>(&'a self, before: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>> {
        Box::pin(self.normal().parked_newest(before, count))
    }

    fn redrive<'a>(
        &'a self,
        parked_id: &'a str,
        raw_prefix: &'a str,
        job_id: Option<&'a str>,
    ) -> Answer<'a, Option<String>> {
        Box::pin(self.normal().redrive(parked_id, raw_prefix, job_id))
    }

    fn stats(&self) -> Answer<'_, QueueStats> {
        Box::pin(self.normal().stats())
    }

    fn state_counts(&self) -> Answer<'_, StateCounts> {
        Box::pin(self.normal().state_counts())
    }

    fn entered<'a>(
        &'a self,
        states: &'a [&'a str],
        from_ms: u64,
        width_ms: u64,
        buckets: usize,
    ) -> Answer<'a, Vec<Vec<u64>>> {
        Box::pin(self.normal().entered(states, from_ms, width_ms, buckets))
    }

    fn state_page<'a>(
        &'a self,
        state: &'a str,
        after: Option<(&'a str, &'a str)>,
        count: usize,
    ) -> Answer<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let store = self.normal();
            store.zset_page(&store.state_set(state), after, count).await
        })
    }

    fn queued_page<'a>(&'a self, lane: Lane, after: Option<(&'a str, bool)>, count: usize) -> Answer<'a, Vec<Entry>> {
        Box::pin(self.lane(lane).queued_page(after, count))
    }

    fn stream_entry<'a>(&'a self, lane: Lane, entry_id: &'a str) -> Answer<'a, Option<RawFields>> {
        Box::pin(self.lane(lane).stream_entry(entry_id))
    }

    fn delayed_fields<'a>(&'a self, job_id: &'a str) -> Answer<'a, RawFields> {
        Box::pin(self.normal().delayed_fields(job_id))
    }

    fn consumers(&self, lane: Lane) -> Answer<'_, Vec<ConsumerInfo>> {
        Box::pin(self.lane(lane).consumers())
    }

    fn is_paused(&self) -> Answer<'_, bool> {
        Box::pin(self.normal().is_paused())
    }

    fn pause_queue(&self, now_ms: u64) -> Answer<'_, bool> {
        Box::pin(self.normal().pause_queue(now_ms))
    }

    fn resume_queue(&self) -> Answer<'_, bool> {
        Box::pin(self.normal().resume_queue())
    }

    fn sweep<'a>(&'a self, lane: Lane, cursor: &'a str, count: usize) -> Answer<'a, (Option<String>, u64)> {
        Box::pin(self.lane(lane).sweep(cursor, count))
    }

    fn trim_ended(&self) -> Answer<'_, u64> {
        Box::pin(self.normal().trim_ended())
    }

    fn prune_consumers<'a>(&'a self, lane: Lane, consumer: &'a str, min_idle: Duration) -> Answer<'a, u64> {
        Box::pin(self.lane(lane).prune_consumers(consumer, min_idle))
    }

    fn remove_consumer_if_idle<'a>(&'a self, lane: Lane, consumer: &'a str) -> Answer<'a, bool> {
        Box::pin(self.lane(lane).remove_consumer_if_idle(consumer))
    }

    fn tick<'a>(
        &'a self,
        name: &'a str,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &'a Envelope,
        unique_ttl: Duration,
    ) -> Answer<'a, Ticked> {
        Box::pin(async move {
            let keys = self.schedule(name);
            self.lane(env.lane).tick(&keys, dedupe_ttl, tick_ms, env, unique_ttl).await
        })
    }

    fn last_tick<'a>(&'a self, name: &'a str) -> Answer<'a, Option<i64>> {
        Box::pin(async move { self.normal().last_tick(&self.schedule(name).last).await })
    }

    fn pause_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool> {
        Box::pin(async move { self.normal().pause_schedule(&self.schedule(name), now_ms).await })
    }

    fn resume_schedule<'a>(&'a self, name: &'a str, now_ms: u64) -> Answer<'a, bool> {
        Box::pin(async move { self.normal().resume_schedule(&self.schedule(name), now_ms).await })
    }

    fn schedule_states<'a>(&'a self, names: &'a [String]) -> Answer<'a, Vec<ScheduleState>> {
        Box::pin(async move {
            let keys: Vec<ScheduleKeys> = names.iter().map(|name| self.schedule(name)).collect();
            self.normal().schedule_states(&keys).await
        })
    }

    fn forget_schedule<'a>(&'a self, name: &'a str) -> Answer<'a, bool> {
        Box::pin(async move { self.normal().forget_schedule(&self.schedule(name), name).await })
    }

    fn register_schedules<'a>(&'a self, entries: &'a [(String, String)]) -> Answer<'a, ()> {
        Box::pin(self.normal().register_schedules(entries))
    }

    fn schedule_index(&self) -> Answer<'_, Vec<(String, String)>> {
        Box::pin(self.normal().schedule_index())
    }
}
