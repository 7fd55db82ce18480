//! Sorted sets and keys with a lifetime, as Redis keeps them.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

/// A sorted set's score, ordered totally (scores are never NaN).
#[derive(Debug, Clone, Copy)]
pub(super) struct Score(pub(super) f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A time in ms as a score.
#[expect(clippy::cast_precision_loss, reason = "ms since the epoch stay far below 2^53, where f64 is exact")]
pub(super) fn ms_score(ms: u64) -> f64 {
    ms as f64
}

/// A sorted set: members ordered by (score, member), as `ZRANGE` lists them.
#[derive(Debug, Default)]
pub(super) struct ZSet {
    scores: HashMap<String, f64>,
    order: BTreeSet<(Score, String)>,
}

impl ZSet {
    /// `ZCARD`.
    pub(super) fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether the set has no member (Redis deletes such a key).
    pub(super) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// `ZSCORE`.
    pub(super) fn score(&self, member: &str) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Whether `member` is in the set.
    pub(super) fn contains(&self, member: &str) -> bool {
        self.scores.contains_key(member)
    }

    /// `ZADD`: sets the member's score; whether it was new.
    pub(super) fn add(&mut self, member: &str, score: f64) -> bool {
        let new = match self.scores.insert(member.to_owned(), score) {
            Some(old) => {
                self.order.remove(&(Score(old), member.to_owned()));
                false
            }
            None => true,
        };
        self.order.insert((Score(score), member.to_owned()));
        new
    }

    /// `ZADD XX CH`: sets the score of a member already there; whether it changed.
    pub(super) fn update(&mut self, member: &str, score: f64) -> bool {
        match self.scores.get(member) {
            Some(&old) if Score(old) != Score(score) => {
                self.add(member, score);
                true
            }
            _ => false,
        }
    }

    /// `ZADD NX`: adds a member not there yet; whether it did.
    pub(super) fn add_new(&mut self, member: &str, score: f64) -> bool {
        !self.contains(member) && self.add(member, score)
    }

    /// `ZREM`; whether the member was there.
    pub(super) fn remove(&mut self, member: &str) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.order.remove(&(Score(score), member.to_owned()));
                true
            }
            None => false,
        }
    }

    /// The first member in the set's order.
    pub(super) fn first(&self) -> Option<&str> {
        self.order.first().map(|(_, m)| m.as_str())
    }

    /// The members and their scores, in the set's order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.order.iter().map(|(s, m)| (m.as_str(), s.0))
    }

    /// The members whose score is `max` or less, in order.
    pub(super) fn up_to(&self, max: f64) -> impl Iterator<Item = &str> + '_ {
        self.order.iter().take_while(move |(s, _)| s.0 <= max).map(|(_, m)| m.as_str())
    }

    /// The members after (score, member) in the set's order, with their scores.
    pub(super) fn after(&self, score: f64, member: &str) -> impl Iterator<Item = (&str, f64)> + '_ {
        let from = (Score(score), member.to_owned());
        self.order.range((Bound::Excluded(from), Bound::Unbounded)).map(|(s, m)| (m.as_str(), s.0))
    }

    /// `ZCOUNT min (max`: members scored from `min` to before `max`.
    pub(super) fn count_between(&self, min: f64, max: f64) -> u64 {
        let n = self.order.range((Score(min), String::new())..).take_while(|(s, _)| s.0 < max).count();
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// `ZREMRANGEBYSCORE -inf max`; how many went.
    pub(super) fn remove_up_to(&mut self, max: f64) -> u64 {
        let gone: Vec<String> = self.up_to(max).map(str::to_owned).collect();
        for member in &gone {
            self.remove(member);
        }
        u64::try_from(gone.len()).unwrap_or(u64::MAX)
    }
}

/// What `PTTL` says of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ttl {
    /// There is no such key.
    Absent,
    /// It does not expire.
    Forever,
    /// It expires in this many ms.
    Left(u64),
}

/// Keys with values that may expire at a time in ms (`PX`, `PEXPIRE`), dropped once the clock
/// has passed it.
#[derive(Debug)]
pub(super) struct Expiring<V> {
    values: HashMap<String, (V, Option<u64>)>,
    deadlines: BTreeSet<(u64, String)>,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Self { values: HashMap::new(), deadlines: BTreeSet::new() }
    }
}

impl<V> Expiring<V> {
    /// Drops the keys expired at `now` (Redis: a key is gone once the clock is past its
    /// deadline).
    pub(super) fn purge(&mut self, now: u64) {
        while let Some((deadline, _)) = self.deadlines.first()
            && *deadline < now
        {
            if let Some((_, key)) = self.deadlines.pop_first() {
                self.values.remove(&key);
            }
        }
    }

    /// `GET`.
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        self.values.get(key).map(|(v, _)| v)
    }

    /// The value at `key`, to change in place (its deadline stays).
    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.values.get_mut(key).map(|(v, _)| v)
    }

    /// `EXISTS`.
    pub(super) fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// `SET` (with `PX` when `deadline` is given): the value and the deadline replaced.
    pub(super) fn set(&mut self, key: &str, value: V, deadline: Option<u64>) {
        self.persist(key);
        if let Some(at) = deadline {
            self.deadlines.insert((at, key.to_owned()));
        }
        self.values.insert(key.to_owned(), (value, deadline));
    }

    /// The value at `key`, made with `make` when absent; a deadline it has stays (as `HSET`
    /// keeps a key's lifetime).
    pub(super) fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        &mut self.values.entry(key.to_owned()).or_insert_with(|| (make(), None)).0
    }

    /// `PEXPIREAT`: the key expires at `deadline`, if it exists.
    pub(super) fn expire_at(&mut self, key: &str, deadline: u64) {
        if self.values.contains_key(key) {
            self.persist(key);
            self.deadlines.insert((deadline, key.to_owned()));
            if let Some((_, at)) = self.values.get_mut(key) {
                *at = Some(deadline);
            }
        }
    }

    /// `PERSIST`: the key no longer expires.
    pub(super) fn persist(&mut self, key: &str) {
        if let Some((_, at)) = self.values.get_mut(key)
            && let Some(deadline) = at.take()
        {
            self.deadlines.remove(&(deadline, key.to_owned()));
        }
    }

    /// `DEL`; the value it had.
    pub(super) fn remove(&mut self, key: &str) -> Option<V> {
        self.persist(key);
        self.values.remove(key).map(|(v, _)| v)
    }

    /// `PTTL`: how long before the key expires.
    pub(super) fn ttl(&self, key: &str, now: u64) -> Ttl {
        match self.values.get(key) {
            None => Ttl::Absent,
            Some((_, None)) => Ttl::Forever,
            Some((_, Some(at))) => Ttl::Left(at.saturating_sub(now)),
        }
    }
}
