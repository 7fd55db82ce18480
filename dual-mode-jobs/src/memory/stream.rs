//! Streams as Redis keeps them: entries ordered by `<ms>-<seq>` ids, and a consumer group's
//! delivered (pending) entries with their owners, delivery counts and delivery times.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, RangeInclusive};

use crate::backend::Entry;
use crate::envelope::RawFields;
use crate::error::QueueError;

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(super) struct StreamId {
    pub(super) ms: u64,
    pub(super) seq: u64,
}

impl StreamId {
    /// `0-0`, below every entry.
    pub(super) const MIN: Self = Self { ms: 0, seq: 0 };
    /// The highest id there is.
    const MAX: Self = Self { ms: u64::MAX, seq: u64::MAX };

    /// The id right after this one.
    fn next(self) -> Option<Self> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(Self { ms: self.ms, seq }),
            None => Some(Self { ms: self.ms.checked_add(1)?, seq: 0 }),
        }
    }

    /// The id right before this one.
    fn prev(self) -> Option<Self> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(Self { ms: self.ms, seq }),
            None => Some(Self { ms: self.ms.checked_sub(1)?, seq: u64::MAX }),
        }
    }

    /// Parses `<ms>-<seq>`, or `<ms>` alone with `missing_seq` as its sequence (as Redis reads
    /// the ends of a range).
    fn parse_with(s: &str, missing_seq: u64) -> Option<Self> {
        fn number(s: &str) -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        match s.split_once('-') {
            Some((ms, seq)) => Some(Self { ms: number(ms)?, seq: number(seq)? }),
            None => Some(Self { ms: number(s)?, seq: missing_seq }),
        }
    }

    /// Parses an id as Redis reads a single id (`<ms>` alone means `<ms>-0`); a typed error
    /// for anything else.
    pub(super) fn parse(s: &str, op: &'static str) -> Result<Self, QueueError> {
        Self::parse_with(s, 0).ok_or_else(|| bad_id(op, s))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The error for text that is not an entry id where one was expected (Redis answers
/// `ERR Invalid stream ID` there).
pub(super) fn bad_id(op: &'static str, id: &str) -> QueueError {
    QueueError::Config(format!("{op}: {id:?} is not a stream entry id (`<ms>-<seq>`)"))
}

/// The ids from `lo` to `hi`, both included; empty when `lo > hi`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Interval {
    lo: StreamId,
    hi: StreamId,
}

impl Interval {
    /// Every id.
    pub(super) const ALL: Self = Self { lo: StreamId::MIN, hi: StreamId::MAX };

    /// No id.
    const EMPTY: Self = Self { lo: StreamId::MAX, hi: StreamId::MIN };

    /// The ids after `id`.
    pub(super) fn after(id: StreamId) -> Self {
        id.next().map_or(Self::EMPTY, |lo| Self { lo, hi: StreamId::MAX })
    }

    /// An interval from the ends of a range as `XRANGE` takes them: `-` and `+`, an id or a
    /// millisecond alone, `(` before either for an exclusive end.
    pub(super) fn parse(start: &str, end: &str, op: &'static str) -> Result<Self, QueueError> {
        let lo = match bound(start, 0).ok_or_else(|| bad_id(op, start))? {
            Bound::Included(id) => Some(id),
            Bound::Excluded(id) => id.next(),
            Bound::Unbounded => Some(StreamId::MIN),
        };
        let hi = match bound(end, u64::MAX).ok_or_else(|| bad_id(op, end))? {
            Bound::Included(id) => Some(id),
            Bound::Excluded(id) => id.prev(),
            Bound::Unbounded => Some(StreamId::MAX),
        };
        Ok(match (lo, hi) {
            (Some(lo), Some(hi)) => Self { lo, hi },
            // Past either end of the id space: nothing.
            _ => Self::EMPTY,
        })
    }

    /// The interval as a range of a map; `None` when empty (an inverted range would panic).
    fn range(self) -> Option<RangeInclusive<StreamId>> {
        (self.lo <= self.hi).then_some(self.lo..=self.hi)
    }
}

/// One end of a range: `-`, `+`, `(<id>` or `<id>`.
fn bound(s: &str, missing_seq: u64) -> Option<Bound<StreamId>> {
    match s {
        "-" => Some(Bound::Included(StreamId::MIN)),
        "+" => Some(Bound::Included(StreamId::MAX)),
        _ => match s.strip_prefix('(') {
            Some(id) => StreamId::parse_with(id, missing_seq).map(Bound::Excluded),
            None => StreamId::parse_with(s, missing_seq).map(Bound::Included),
        },
    }
}

/// A stream's entries, and the last id it gave (ids only grow, deletions or not).
#[derive(Debug, Default)]
pub(super) struct Stream {
    entries: BTreeMap<StreamId, RawFields>,
    last: StreamId,
}

impl Stream {
    /// Adds an entry with a new id (`XADD *`): `<now>-0`, or the next after the last id when
    /// the clock has not passed it.
    pub(super) fn add(&mut self, now_ms: u64, fields: RawFields) -> StreamId {
        let id =
            if now_ms > self.last.ms { StreamId { ms: now_ms, seq: 0 } } else { self.last.next().unwrap_or(self.last) };
        self.last = id;
        self.entries.insert(id, fields);
        id
    }

    /// The fields of entry `id`.
    pub(super) fn get(&self, id: StreamId) -> Option<&RawFields> {
        self.entries.get(&id)
    }

    /// Deletes an entry (`XDEL`); whether it was there.
    pub(super) fn remove(&mut self, id: StreamId) -> bool {
        self.entries.remove(&id).is_some()
    }

    /// `XLEN`.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The newest entry's id.
    pub(super) fn newest(&self) -> Option<StreamId> {
        self.entries.last_key_value().map(|(id, _)| *id)
    }

    /// Whether an entry newer than `id` exists.
    pub(super) fn has_after(&self, id: StreamId) -> bool {
        self.newest().is_some_and(|newest| newest > id)
    }

    /// The ids of the entries in `iv`, oldest first.
    pub(super) fn ids(&self, iv: Interval) -> impl Iterator<Item = StreamId> + '_ {
        self.in_range(iv).map(|(id, _)| *id)
    }

    /// The entries in `iv`, oldest first.
    fn in_range(&self, iv: Interval) -> impl DoubleEndedIterator<Item = (&StreamId, &RawFields)> + '_ {
        iv.range().into_iter().flat_map(|r| self.entries.range(r))
    }

    /// Up to `count` entries in `iv`, oldest first (`XRANGE`; a count of 0 gives none).
    pub(super) fn range(&self, iv: Interval, count: usize) -> Vec<Entry> {
        self.in_range(iv).take(count).map(|(id, f)| (id.to_string(), f.clone())).collect()
    }

    /// Up to `count` entries in `iv`, newest first (`XREVRANGE`).
    pub(super) fn rev_range(&self, iv: Interval, count: usize) -> Vec<Entry> {
        self.in_range(iv).rev().take(count).map(|(id, f)| (id.to_string(), f.clone())).collect()
    }

    /// Drops the oldest entries past `max_len` (`MAXLEN`, exact); how many.
    pub(super) fn trim(&mut self, max_len: u64) -> u64 {
        let mut dropped = 0;
        while u64::try_from(self.entries.len()).unwrap_or(u64::MAX) > max_len && self.entries.pop_first().is_some() {
            dropped += 1;
        }
        dropped
    }
}

/// An entry delivered to a consumer and not yet acknowledged.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// The consumer that owns it.
    pub(super) consumer: String,
    /// When it was last delivered or claimed (its idle time counts from there).
    pub(super) delivered_ms: u64,
    /// How many times it was delivered: the fencing token.
    pub(super) count: u64,
}

/// Who holds an entry, as a fenced write sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    /// The consumer asking, with the same token.
    Owned,
    /// Another consumer, or a later delivery.
    Other,
    /// No one: acknowledged, or never delivered.
    Gone,
}

/// One lane: its stream and the queue's consumer group on it.
#[derive(Debug, Default)]
pub(super) struct LaneState {
    pub(super) stream: Stream,
    /// The newest id delivered to the group.
    pub(super) last_delivered: StreamId,
    /// The delivered entries not yet acknowledged.
    pub(super) pending: BTreeMap<StreamId, Pending>,
    /// The group's consumers and when each was last seen (ms).
    pub(super) consumers: BTreeMap<String, u64>,
}

impl LaneState {
    /// Notes that `consumer` read or claimed at `now` (creating it, as Redis does).
    pub(super) fn seen(&mut self, consumer: &str, now: u64) {
        match self.consumers.get_mut(consumer) {
            Some(seen) => *seen = now,
            None => {
                self.consumers.insert(consumer.to_owned(), now);
            }
        }
    }

    /// Up to `count` entries never delivered, now delivered to `consumer`
    /// (`XREADGROUP ... >`), each with the token 1.
    pub(super) fn read_new(&mut self, consumer: &str, count: usize, now: u64) -> Vec<Entry> {
        self.seen(consumer, now);
        let got: Vec<(StreamId, RawFields)> = self
            .stream
            .in_range(Interval::after(self.last_delivered))
            .take(count)
            .map(|(id, f)| (*id, f.clone()))
            .collect();
        for (id, _) in &got {
            self.last_delivered = *id;
            self.pending.insert(*id, Pending { consumer: consumer.to_owned(), delivered_ms: now, count: 1 });
        }
        got.into_iter().map(|(id, f)| (id.to_string(), f)).collect()
    }

    /// The delivered entries in `iv`, by id.
    pub(super) fn pending_in(&self, iv: Interval) -> impl Iterator<Item = (&StreamId, &Pending)> + '_ {
        iv.range().into_iter().flat_map(|r| self.pending.range(r))
    }

    /// Who holds entry `id` for `consumer` with `token` (the scripts' `holder`).
    pub(super) fn holder(&self, id: &str, consumer: &str, token: u64, op: &'static str) -> Result<Holder, QueueError> {
        let id = StreamId::parse(id, op)?;
        Ok(match self.pending.get(&id) {
            None => Holder::Gone,
            Some(p) if p.consumer != consumer || p.count != token => Holder::Other,
            Some(_) => Holder::Owned,
        })
    }

    /// `XCLAIM`: gives the pending entries among `ids` idle for `min_idle` or more to
    /// `consumer`, resetting their idle time and, unless `just_id`, raising their delivery
    /// counts. Entries no longer in the stream leave the pending entries. Returns those
    /// claimed, with their fields and counts.
    pub(super) fn claim(
        &mut self,
        consumer: &str,
        min_idle: u64,
        ids: &[StreamId],
        just_id: bool,
        now: u64,
    ) -> Vec<(String, RawFields, u64)> {
        self.seen(consumer, now);
        let mut out = Vec::new();
        for id in ids {
            let Some(p) = self.pending.get_mut(id) else { continue };
            if now.saturating_sub(p.delivered_ms) < min_idle {
                continue;
            }
            let Some(fields) = self.stream.get(*id) else {
                self.pending.remove(id);
                continue;
            };
            consumer.clone_into(&mut p.consumer);
            p.delivered_ms = now;
            if !just_id {
                p.count = p.count.saturating_add(1);
            }
            out.push((id.to_string(), fields.clone(), p.count));
        }
        out
    }

    /// Acknowledges and deletes an entry (`XACK` and `XDEL`).
    pub(super) fn ack_and_delete(&mut self, id: StreamId) {
        self.pending.remove(&id);
        self.stream.remove(id);
    }

    /// How many entries `consumer` holds.
    pub(super) fn pending_of(&self, consumer: &str) -> usize {
        self.pending.values().filter(|p| p.consumer == consumer).count()
    }
}
