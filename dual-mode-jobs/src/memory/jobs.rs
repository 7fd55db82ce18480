//! Jobs by id and upkeep: cancellation (the cancel script), and what the worker's sweep does
//! (the sweep, trim, prune and remove-consumer scripts).

use super::sets::ms_score;
use super::state::{State, is_terminal, lane_of};
use super::stream::{Interval, StreamId};
use crate::error::{QueueError, ReplyError};
use crate::fields::record::KEEP;
use crate::lane::Lane;
use crate::record::{CancelOutcome, JobState};

impl State {
    /// Cancels job `id`: a queued (not yet delivered), delayed or retrying job is removed and
    /// ends `cancelled`; a running or just delivered one is flagged (its worker tells it); an
    /// ended one answers its state.
    pub(super) fn cancel(&mut self, id: &str, now: u64) -> Result<CancelOutcome, QueueError> {
        let unique = self.record_field(id, "unique").map(|u| String::from_utf8_lossy(u).into_owned());
        let Some(state) = self.record_field(id, "state").map(|s| String::from_utf8_lossy(s).into_owned()) else {
            return Ok(CancelOutcome::Unknown);
        };
        if is_terminal(&state) {
            return match state.parse::<JobState>() {
                Ok(state) => Ok(CancelOutcome::AlreadyEnded(state)),
                Err(_) => Err(QueueError::protocol("cancel", ReplyError::UnknownAnswer(state))),
            };
        }
        let flag = |s: &mut Self| {
            s.write_record(id, [("cancel", b"1".to_vec())]);
            Ok(CancelOutcome::Requested)
        };
        if state == "running" {
            return flag(self);
        }
        if state == "queued" {
            let entry = self.record_field(id, "entry").and_then(|e| std::str::from_utf8(e).ok());
            let entry = entry.and_then(|e| StreamId::parse(e, "cancel").ok());
            let lane = lane_of(self.record_field(id, "lane"));
            if let Some(entry) = entry {
                // Delivered, not started yet: the worker's start sees the flag.
                if self.lane(lane).pending.contains_key(&entry) {
                    return flag(self);
                }
                self.lane(lane).stream.remove(entry);
            }
        } else {
            self.delayed.remove(id);
            self.delayed_entries.remove(id);
        }
        let text = now.to_string().into_bytes();
        self.finish(id, unique.as_deref(), "cancelled", now, [("finished", text), ("cancel", b"1".to_vec())]);
        Ok(CancelOutcome::Removed)
    }

    /// Re-queues up to `count` entries of the lane after `cursor`, up to the last one
    /// delivered, that no consumer holds; the next cursor (`None`: done) and how many moved.
    ///
    /// In one process no consumer can be removed while it holds entries, so this finds none;
    /// it is the Redis store's sweep all the same.
    pub(super) fn sweep(
        &mut self,
        lane: Lane,
        cursor: &str,
        count: usize,
        now: u64,
    ) -> Result<(Option<String>, u64), QueueError> {
        let l = self.lane(lane);
        let scan = Interval::parse(&format!("({cursor}"), &l.last_delivered.to_string(), "sweep orphaned entries")?;
        let ids: Vec<StreamId> = l.stream.ids(scan).take(count).collect();
        let mut moved = 0;
        for id in &ids {
            let l = self.lane(lane);
            if l.pending.contains_key(id) {
                continue;
            }
            if let Some(fields) = l.stream.get(*id).cloned() {
                l.stream.add(now, fields);
                l.stream.remove(*id);
                self.events.added = true;
                moved += 1;
            }
        }
        let next = ids.last().filter(|_| ids.len() >= count && count > 0).map(ToString::to_string);
        Ok((next, moved))
    }

    /// Forgets ended jobs whose records expired (by the time they ended, in each state that
    /// keeps records for a time); how many.
    pub(super) fn trim_ended(&mut self, now: u64) -> u64 {
        let ages = [self.limits.done, self.limits.parked, self.limits.cancelled].map(|k| k.age_ms);
        let sets = self.sets[1..].iter_mut().zip(ages);
        sets.filter_map(|(set, age)| Some(set.remove_up_to(ms_score(now) - ms_score(age?)))).sum()
    }

    /// Marks job `id`'s record, if it has not ended, to be kept at least the queue's
    /// `waited_ms` once it ends; whether it has a record.
    pub(super) fn keep_waited(&mut self, id: &str) -> bool {
        let Some(state) = self.record_field(id, "state") else { return false };
        if !std::str::from_utf8(state).is_ok_and(is_terminal) {
            let keep = self.pin(id).unwrap_or(0).max(self.limits.waited_ms);
            self.write_record(id, [(KEEP, keep.to_string().into_bytes())]);
        }
        true
    }

    /// Removes the lane's consumers other than `consumer` that hold nothing and have not read
    /// for `min_idle` ms; how many.
    pub(super) fn prune_consumers(&mut self, lane: Lane, consumer: &str, min_idle: u64, now: u64) -> u64 {
        let l = self.lane(lane);
        let idle: Vec<String> = l
            .consumers
            .iter()
            .filter(|(name, seen)| {
                *name != consumer && now.saturating_sub(**seen) >= min_idle && l.pending_of(name) == 0
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &idle {
            l.consumers.remove(name);
        }
        u64::try_from(idle.len()).unwrap_or(u64::MAX)
    }

    /// Removes `consumer` from the lane unless it holds entries; whether it holds none (a
    /// consumer the lane never had counts as removed, as on Redis).
    pub(super) fn remove_consumer_if_idle(&mut self, lane: Lane, consumer: &str) -> bool {
        let l = self.lane(lane);
        if l.pending_of(consumer) > 0 {
            return false;
        }
        l.consumers.remove(consumer);
        true
    }
}
