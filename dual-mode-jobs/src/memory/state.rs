//! A partition's data, laid out as the Redis store keeps it, and the helpers its scripts
//! share (the prelude of `store/scripts.rs`): records and their state sets, unique keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::sets::{Expiring, ZSet, ms_score};
use super::stream::{LaneState, Stream};
use crate::backend::Retention;
use crate::envelope::{Envelope, RawFields};
use crate::fields::record::KEEP;
use crate::lane::Lane;

/// The job states that have a set, in the order of [`State::sets`].
pub(super) const STATE_SETS: [&str; 4] = ["running", "done", "parked", "cancelled"];

/// A record: its fields in the order they were first written, as a hash.
pub(super) type Hash = Vec<(String, Vec<u8>)>;

/// Field-value items to write into a record.
pub(super) type Items = Vec<(&'static str, Vec<u8>)>;

/// What a partition keeps that its queue configures: what it keeps of ended jobs, and the
/// most entries the parked stream keeps (at least 1).
pub(super) type Limits = Retention;

/// What an operation did that others wait for, told once the lock is released.
#[derive(Debug, Default)]
pub(super) struct Events {
    /// The ids of the jobs it ended.
    pub(super) ended: Vec<Arc<str>>,
    /// Whether it added an entry to a lane.
    pub(super) added: bool,
}

/// A schedule's state: last tick, pause and resume times (ms).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ScheduleKeys {
    pub(super) last: Option<i64>,
    pub(super) paused: Option<i64>,
    pub(super) resumed: Option<i64>,
}

/// Everything one partition (and, as a home, its queue) holds.
#[derive(Debug)]
pub(super) struct State {
    pub(super) limits: Limits,
    /// The lanes, in the order of [`Lane::ALL`].
    pub(super) lanes: [LaneState; 3],
    /// Delayed jobs by due time (ms), and the fields of each one's next entry.
    pub(super) delayed: ZSet,
    pub(super) delayed_entries: HashMap<String, RawFields>,
    /// The dead-letter stream and how many entries its cap dropped.
    pub(super) parked: Stream,
    pub(super) parked_dropped: u64,
    /// Job records by id.
    pub(super) records: Expiring<Hash>,
    /// Job ids by the time they entered each state of [`STATE_SETS`].
    pub(super) sets: [ZSet; 4],
    /// Unique keys and the job holding each.
    pub(super) unique: Expiring<String>,
    /// When the queue was paused, while it is.
    pub(super) paused: Option<u64>,
    /// The queue's partition count, once claimed.
    pub(super) partitions: Option<u16>,
    /// Rate buckets' theoretical arrival times (GCRA), by bucket name.
    pub(super) buckets: Expiring<f64>,
    /// Rate buckets' windows of actual starts (`<ms>:<job id>` by start time), by bucket
    /// name.
    pub(super) rate_logs: Expiring<ZSet>,
    /// Paused rate keys.
    pub(super) rate_pauses: Expiring<()>,
    /// Per rate key: the jobs holding its slots (by lease expiry) and those waiting for one
    /// (by when they began to wait).
    pub(super) holders: HashMap<String, ZSet>,
    pub(super) waiters: HashMap<String, ZSet>,
    /// Schedules' state by name, their ticks' dedupe marks, and the index of schedules.
    pub(super) schedules: HashMap<String, ScheduleKeys>,
    pub(super) ticks: Expiring<()>,
    pub(super) index: BTreeMap<String, String>,
    /// What the operation under way did.
    pub(super) events: Events,
}

impl State {
    /// An empty partition.
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            lanes: Default::default(),
            delayed: ZSet::default(),
            delayed_entries: HashMap::new(),
            parked: Stream::default(),
            parked_dropped: 0,
            records: Expiring::default(),
            sets: Default::default(),
            unique: Expiring::default(),
            paused: None,
            partitions: None,
            buckets: Expiring::default(),
            rate_logs: Expiring::default(),
            rate_pauses: Expiring::default(),
            holders: HashMap::new(),
            waiters: HashMap::new(),
            schedules: HashMap::new(),
            ticks: Expiring::default(),
            index: BTreeMap::new(),
            events: Events::default(),
        }
    }

    /// Forgets what expired by `now`.
    pub(super) fn purge(&mut self, now: u64) {
        self.records.purge(now);
        self.unique.purge(now);
        self.buckets.purge(now);
        self.rate_logs.purge(now);
        self.rate_pauses.purge(now);
        self.ticks.purge(now);
    }

    /// One of the lanes.
    pub(super) fn lane(&mut self, lane: Lane) -> &mut LaneState {
        &mut self.lanes[lane.index()]
    }

    /// Adds an entry to a lane's stream; its id.
    pub(super) fn add_entry(&mut self, lane: Lane, now: u64, fields: RawFields) -> String {
        self.events.added = true;
        self.lane(lane).stream.add(now, fields).to_string()
    }

    /// A field of a job's record.
    pub(super) fn record_field(&self, id: &str, name: &str) -> Option<&[u8]> {
        self.records.get(id).and_then(|h| hget(h, name))
    }

    /// Writes fields into a job's record, creating it when absent (`HSET`).
    pub(super) fn write_record<'a>(&mut self, id: &str, items: impl IntoIterator<Item = (&'a str, Vec<u8>)>) {
        let record = self.records.get_or_insert_with(id, Vec::new);
        for (name, value) in items {
            hset(record, name, value);
        }
    }

    /// Moves job `id`'s record to `state` with `items` (the scripts' `transit`): out of its
    /// old state's set and into the new one's, stamped `updated`; an ended job's record is
    /// then kept as the queue's retention says ([`retire`](Self::retire)).
    pub(super) fn transit<'a>(
        &mut self,
        id: &str,
        state: &str,
        now: u64,
        items: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
    ) {
        let old = self.record_field(id, "state").map(<[u8]>::to_vec);
        if old.as_deref() != Some(state.as_bytes()) {
            if let Some(set) = old.as_deref().and_then(set_of) {
                self.sets[set].remove(id);
            }
            if let Some(set) = set_of(state.as_bytes()) {
                self.sets[set].add(id, ms_score(now));
            }
        }
        let stamp = [("state", state.as_bytes().to_vec()), ("updated", now.to_string().into_bytes())];
        self.write_record(id, stamp.into_iter().chain(items));
        if is_terminal(state) {
            self.retire(id, state, now);
        }
    }

    /// Keeps the record of job `id`, which just ended in `state`, as the queue's retention
    /// says (the scripts' `retire`): deleted when the state keeps none, else kept for the
    /// state's time, and the state's oldest records beyond its count dropped. A record marked
    /// [`KEEP`] (by a waiter, or its push) is kept at least that long: it leaves the state's
    /// set when the count drops it, not the store.
    pub(super) fn retire(&mut self, id: &str, state: &str, now: u64) {
        let (Some(keep), Some(set)) = (self.limits.of(state), set_of(state.as_bytes())) else { return };
        let pin = self.pin(id);
        if !keep.is_kept() && pin.is_none() {
            self.records.remove(id);
            self.sets[set].remove(id);
            return;
        }
        match keep.expiry(now, pin) {
            Some(at) => self.records.expire_at(id, at),
            None => self.records.persist(id),
        }
        let Some(max) = keep.count.and_then(|n| usize::try_from(n).ok()) else { return };
        while self.sets[set].len() > max {
            let Some(oldest) = self.sets[set].first().map(str::to_owned) else { break };
            self.sets[set].remove(&oldest);
            if self.pin(&oldest).is_none() {
                self.records.remove(&oldest);
            }
        }
    }

    /// How long at least job `id`'s record is kept once it ended ([`KEEP`]), if marked.
    pub(super) fn pin(&self, id: &str) -> Option<u64> {
        self.record_field(id, KEEP).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
    }

    /// The end of a job (the scripts' `finish`): its record, its unique key, and the news.
    pub(super) fn finish<'a>(
        &mut self,
        id: &str,
        unique: Option<&str>,
        state: &str,
        now: u64,
        items: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
    ) {
        self.transit(id, state, now, items);
        self.release_unique(unique, id);
        self.events.ended.push(Arc::from(id));
    }

    /// Claims `unique` for job `id` for `ttl_ms` (0: not unique); the id of the job that holds
    /// it already, if one does (the scripts' `claim_unique`).
    pub(super) fn claim_unique(&mut self, unique: Option<&str>, id: &str, ttl_ms: u64, now: u64) -> Option<String> {
        let key = unique.filter(|_| ttl_ms > 0)?;
        if let Some(holder) = self.unique.get(key) {
            return Some(holder.clone());
        }
        self.unique.set(key, id.to_owned(), Some(now.saturating_add(ttl_ms)));
        None
    }

    /// Releases `unique` if it still names job `id` (the scripts' `release`).
    pub(super) fn release_unique(&mut self, unique: Option<&str>, id: &str) {
        if let Some(key) = unique
            && self.unique.get(key).is_some_and(|holder| holder == id)
        {
            self.unique.remove(key);
        }
    }
}

/// The value of `name` in a hash.
pub(super) fn hget<'a>(hash: &'a Hash, name: &str) -> Option<&'a [u8]> {
    hash.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

/// Sets `name` in a hash.
pub(super) fn hset(hash: &mut Hash, name: &str, value: Vec<u8>) {
    match hash.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v = value,
        None => hash.push((name.to_owned(), value)),
    }
}

/// Removes `name` from a hash.
pub(super) fn hdel(hash: &mut Hash, name: &str) {
    hash.retain(|(k, _)| k != name);
}

/// The place in [`STATE_SETS`] of a state that has a set.
pub(super) fn set_of(state: &[u8]) -> Option<usize> {
    STATE_SETS.iter().position(|s| s.as_bytes() == state)
}

/// Whether a state ends a job.
pub(super) fn is_terminal(state: &str) -> bool {
    matches!(state, "done" | "parked" | "cancelled")
}

/// The value of `name` among an entry's fields.
pub(super) fn field<'a>(fields: &'a RawFields, name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice())
}

/// The lane an entry's `lane` field names (the normal lane for any other value).
pub(super) fn lane_of(value: Option<&[u8]>) -> Lane {
    match value {
        Some(b"high") => Lane::High,
        Some(b"low") => Lane::Low,
        _ => Lane::Normal,
    }
}

/// An envelope's fields as an entry holds them.
pub(super) fn entry_fields(env: &Envelope) -> RawFields {
    env.to_fields().into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v.into_owned())).collect()
}

/// The record items a push writes: type, idempotency key, attempt, enqueue time, and the
/// maximum attempts, unique key and lane when set.
pub(super) fn record_items(env: &Envelope) -> Items {
    let mut out: Items = vec![
        ("type", env.type_name.as_bytes().to_vec()),
        ("key", env.idempotency_key.as_bytes().to_vec()),
        ("attempt", env.attempt.to_string().into_bytes()),
        ("enq", env.enqueued_at_ms.to_string().into_bytes()),
    ];
    if let Some(max) = env.max_attempts {
        out.push(("max", max.to_string().into_bytes()));
    }
    if let Some(unique) = &env.unique {
        out.push(("unique", unique.as_bytes().to_vec()));
    }
    if env.lane != Lane::Normal {
        out.push(("lane", env.lane.as_str().as_bytes().to_vec()));
    }
    if let Some(keep) = env.keep_ms {
        out.push((KEEP, keep.to_string().into_bytes()));
    }
    out
}

/// The unique key's lifetime in ms: 0 when the job is not unique, a day when none was set.
pub(super) fn unique_ttl_ms(env: &Envelope, ttl_ms: u64) -> u64 {
    match (&env.unique, ttl_ms) {
        (None, _) => 0,
        (Some(_), 0) => 24 * 3600 * 1000,
        (Some(_), ms) => ms,
    }
}
