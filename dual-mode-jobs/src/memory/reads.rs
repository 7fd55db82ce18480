//! The operator's reads: records by id and by state, counts, pages of the lists by cursor,
//! entries by id, consumers, and the queue's pause.

use super::sets::ZSet;
use super::state::{State, field, set_of};
use super::stream::{Interval, StreamId};
use crate::backend::QueueStats;
use crate::backend::{ConsumerInfo, Entry, StateCounts};
use crate::envelope::RawFields;
use crate::error::QueueError;
use crate::lane::Lane;
use crate::record::{JobRecord, JobState};

impl State {
    /// Job `id`'s record.
    pub(super) fn record(&self, id: &str) -> Option<JobRecord> {
        let hash = self.records.get(id)?;
        JobRecord::from_hash(id, hash.clone())
    }

    /// Up to `count` records of jobs in `state` from position `start`, and how many jobs are
    /// in that state. Running and ended jobs come from their sets (oldest transition first);
    /// queued jobs from the lanes (in reading order; the total is the entries not yet
    /// delivered); delayed and retrying jobs from the delayed set (by due time; the total
    /// counts both states).
    pub(super) fn records(&self, state: JobState, start: usize, count: usize) -> (Vec<JobRecord>, u64) {
        let window = start.saturating_add(count);
        let (ids, total, filter): (Vec<String>, u64, bool) = match state {
            JobState::Queued => {
                let mut ids = Vec::new();
                for lane in &self.lanes {
                    let want = window.saturating_mul(2).max(1).saturating_sub(ids.len());
                    if want == 0 {
                        break;
                    }
                    let entries = lane.stream.range(Interval::ALL, want);
                    ids.extend(entries.iter().filter_map(|(_, f)| text(field(f, "id")?)));
                }
                let counts = self.stats();
                (ids, counts.length.saturating_sub(counts.pending), true)
            }
            JobState::Delayed | JobState::Retrying => {
                let ids = self.delayed.iter().take(window.saturating_mul(2).saturating_add(1));
                (ids.map(|(m, _)| m.to_owned()).collect(), len(&self.delayed), true)
            }
            other => {
                let set = &self.sets[set_of(other.as_str().as_bytes()).unwrap_or(0)];
                let stop = window.saturating_sub(1);
                let ids = set.iter().skip(start).take(stop.saturating_add(1).saturating_sub(start));
                (ids.map(|(m, _)| m.to_owned()).collect(), len(set), false)
            }
        };
        if ids.is_empty() || count == 0 {
            return (Vec::new(), total);
        }
        let records = ids.iter().filter_map(|id| self.record(id));
        let records = if filter {
            records.filter(|r| r.state == state).skip(start).take(count).collect()
        } else {
            records.collect()
        };
        (records, total)
    }

    /// Counts of the lanes, their delivered entries, the delayed set and the parked stream.
    pub(super) fn stats(&self) -> QueueStats {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        QueueStats {
            length: self.lanes.iter().map(|l| count(l.stream.len())).sum(),
            pending: self.lanes.iter().map(|l| count(l.pending.len())).sum(),
            delayed: len(&self.delayed),
            parked: count(self.parked.len()),
            parked_dropped: self.parked_dropped,
        }
    }

    /// The sizes of the done and cancelled sets, and the queue's pause.
    pub(super) fn state_counts(&self) -> StateCounts {
        StateCounts { done: len(&self.sets[1]), cancelled: len(&self.sets[3]), paused_at_ms: self.paused }
    }

    /// How many jobs entered each of `states` in each of `buckets` windows of `width_ms` from
    /// `from_ms` (a state without a set counts none).
    pub(super) fn entered(&self, states: &[&str], from_ms: u64, width_ms: u64, buckets: usize) -> Vec<Vec<u64>> {
        if buckets == 0 {
            return Vec::new();
        }
        let window = |b: u64| {
            let start = from_ms.saturating_add(b.saturating_mul(width_ms));
            (super::sets::ms_score(start), super::sets::ms_score(start.saturating_add(width_ms)))
        };
        states
            .iter()
            .map(|state| {
                (0..buckets as u64)
                    .map(|b| match set_of(state.as_bytes()) {
                        Some(set) => {
                            let (min, max) = window(b);
                            self.sets[set].count_between(min, max)
                        }
                        None => 0,
                    })
                    .collect()
            })
            .collect()
    }

    /// Up to `count` (member, score) of set `state` (a state set, or `delayed`) after the
    /// cursor (score, member), in the set's order.
    pub(super) fn state_page(
        &self,
        state: &str,
        after: Option<(&str, &str)>,
        count: usize,
    ) -> Result<Vec<(String, String)>, QueueError> {
        let set = match state {
            "delayed" => &self.delayed,
            other => match set_of(other.as_bytes()) {
                Some(set) => &self.sets[set],
                None => return Ok(Vec::new()),
            },
        };
        let count = count.max(1);
        let page = |it: &mut dyn Iterator<Item = (&str, f64)>| {
            it.take(count).map(|(m, s)| (m.to_owned(), score_text(s))).collect::<Vec<_>>()
        };
        let (score, member) = after.unwrap_or(("0", ""));
        if member.is_empty() {
            return Ok(page(&mut set.iter()));
        }
        // The cursor's member where the cursor says; otherwise its score read as a number.
        let score = match set.score(member) {
            Some(s) if score_text(s) == score => s,
            _ => score
                .parse::<f64>()
                .ok()
                .filter(|s| !s.is_nan())
                .ok_or_else(|| QueueError::Config(format!("page a set: {score:?} is not a score")))?,
        };
        Ok(page(&mut set.after(score, member)))
    }

    /// Up to `count` of the lane's entries not yet delivered, after `after` (from it, when its
    /// flag says inclusive), or after the last delivered one when that is later.
    pub(super) fn queued_page(
        &self,
        lane: Lane,
        after: Option<(&str, bool)>,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let l = &self.lanes[lane.index()];
        let delivered = l.last_delivered;
        let cursor = after.and_then(|(id, inclusive)| Some((full_id(id)?, inclusive)));
        let start = match cursor {
            Some((id, inclusive)) if id > delivered => {
                if inclusive {
                    id.to_string()
                } else {
                    format!("({id}")
                }
            }
            _ => format!("({delivered}"),
        };
        Ok(l.stream.range(Interval::parse(&start, "+", "read a stream")?, count.max(1)))
    }

    /// Up to `count` parked entries from `start` to `end`, oldest first.
    pub(super) fn parked_range(&self, start: &str, end: &str, count: usize) -> Result<Vec<Entry>, QueueError> {
        Ok(self.parked.range(Interval::parse(start, end, "list parked")?, count))
    }

    /// Up to `count` parked entries before `before` (exclusive unless its flag says
    /// inclusive), newest first.
    pub(super) fn parked_newest(&self, before: Option<(&str, bool)>, count: usize) -> Result<Vec<Entry>, QueueError> {
        let end = match before {
            Some((id, true)) => id.to_owned(),
            Some((id, false)) => format!("({id}"),
            None => "+".to_owned(),
        };
        Ok(self.parked.rev_range(Interval::parse("-", &end, "read a stream")?, count.max(1)))
    }

    /// One of the lane's entries by id.
    pub(super) fn stream_entry(&self, lane: Lane, id: &str) -> Result<Option<RawFields>, QueueError> {
        let iv = Interval::parse(id, id, "read a stream")?;
        Ok(self.lanes[lane.index()].stream.range(iv, 1).pop().map(|(_, f)| f))
    }

    /// The fields of a delayed job's next entry (none when it is not delayed).
    pub(super) fn delayed_fields(&self, id: &str) -> RawFields {
        self.delayed_entries.get(id).cloned().unwrap_or_default()
    }

    /// The lane's consumers, by name.
    pub(super) fn consumers(&self, lane: Lane, now: u64) -> Vec<ConsumerInfo> {
        let l = &self.lanes[lane.index()];
        l.consumers
            .iter()
            .map(|(name, seen)| ConsumerInfo {
                name: name.clone(),
                pending: u64::try_from(l.pending_of(name)).unwrap_or(u64::MAX),
                idle_ms: now.saturating_sub(*seen),
            })
            .collect()
    }

    /// Pauses the queue at `now_ms`; whether it was running.
    pub(super) fn pause_queue(&mut self, now_ms: u64) -> bool {
        let was_running = self.paused.is_none();
        if was_running {
            self.paused = Some(now_ms);
        }
        was_running
    }

    /// The records of these jobs, in order.
    pub(super) fn records_of(&self, ids: &[String]) -> Vec<Option<JobRecord>> {
        ids.iter().map(|id| self.record(id)).collect()
    }
}

/// A set's size.
fn len(set: &ZSet) -> u64 {
    u64::try_from(set.len()).unwrap_or(u64::MAX)
}

/// Bytes as text, if they are.
fn text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// A score as Redis writes it (whole numbers without a fraction).
fn score_text(score: f64) -> String {
    format!("{score}")
}

/// A full entry id (`<ms>-<seq>`), as the layer orders ids.
fn full_id(id: &str) -> Option<StreamId> {
    id.contains('-').then(|| StreamId::parse(id, "read a stream").ok()).flatten()
}
