//! Runs and leases: claims of expired leases, a consumer's own entries, marks, renewals,
//! acknowledgements and the other ends of a run (the claim, reclaim, mark, renew, ack and end
//! scripts). Every write for a run is fenced: it happens only while the run's consumer holds
//! the entry with the run's token.

use super::sets::ms_score;
use super::state::{Items, State, entry_fields, hget, is_terminal};
use super::stream::{Holder, Interval, StreamId};
use crate::backend::{Claimed, DoneRun, Ending, MarkRun, Marked, Renewed, RunRef, Written};
use crate::error::QueueError;
use crate::lane::Lane;

impl State {
    /// Claims up to `count` of the lane's entries idle for `min_idle` ms or more, scanning
    /// from `cursor` (`0-0`: the start) a page of four times `count`, never `consumer`'s own
    /// (a run of its process may still hold them). The next cursor (`0-0` at the end) and the
    /// entries claimed, their tokens raised.
    pub(super) fn claim(
        &mut self,
        lane: Lane,
        consumer: &str,
        min_idle: u64,
        cursor: &str,
        count: usize,
        now: u64,
    ) -> Result<(String, Vec<Claimed>), QueueError> {
        let start = if cursor == "0-0" { "-".to_owned() } else { format!("({cursor}") };
        let scan = Interval::parse(&start, "+", "claim")?;
        let page = count.saturating_mul(4);
        let l = self.lane(lane);
        let mut ids = Vec::new();
        let (mut last, mut scanned) = (None, 0usize);
        let idle = l.pending_in(scan).filter(|(_, p)| now.saturating_sub(p.delivered_ms) >= min_idle);
        for (id, p) in idle.take(page) {
            scanned += 1;
            last = Some(*id);
            if p.consumer != consumer {
                ids.push(*id);
            }
            if ids.len() >= count {
                break;
            }
        }
        let next = match last {
            Some(last) if ids.len() >= count || scanned >= page => last.to_string(),
            _ => "0-0".to_owned(),
        };
        let claimed = if ids.is_empty() { Vec::new() } else { l.claim(consumer, min_idle, &ids, false, now) };
        Ok((next, claimed))
    }

    /// `consumer`'s entries of the lane idle for `min_idle` ms or more, up to `count`.
    pub(super) fn own_pending(&self, lane: Lane, consumer: &str, min_idle: u64, count: usize, now: u64) -> Vec<String> {
        self.lanes[lane.index()]
            .pending
            .iter()
            .filter(|(_, p)| p.consumer == consumer && now.saturating_sub(p.delivered_ms) >= min_idle)
            .take(count)
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Claims these of `consumer`'s own entries again, raising their tokens; those it held.
    pub(super) fn reclaim(
        &mut self,
        lane: Lane,
        consumer: &str,
        ids: &[String],
        now: u64,
    ) -> Result<Vec<Claimed>, QueueError> {
        let l = self.lane(lane);
        let mut own = Vec::new();
        for id in ids {
            let id = StreamId::parse(id, "reclaim own entries")?;
            if l.pending.get(&id).is_some_and(|p| p.consumer == consumer) {
                own.push(id);
            }
        }
        Ok(if own.is_empty() { Vec::new() } else { l.claim(consumer, 0, &own, false, now) })
    }

    /// Marks runs as running: those `consumer` still owns, unless a cancellation was asked.
    pub(super) fn mark(
        &mut self,
        lane: Lane,
        consumer: &str,
        runs: &[MarkRun],
        now: u64,
    ) -> Result<Vec<Marked>, QueueError> {
        let mut out = Vec::with_capacity(runs.len());
        for r in runs {
            if self.lane(lane).holder(&r.entry_id, consumer, r.token, "mark runs")? != Holder::Owned {
                out.push(Marked::NotOwned);
                continue;
            }
            let cancelled = self.record_field(&r.job_id, "state") == Some(b"cancelled")
                || self.record_field(&r.job_id, "cancel") == Some(b"1");
            if cancelled {
                out.push(Marked::CancelRequested);
                continue;
            }
            let items: Items = vec![
                ("started", r.started_ms.to_string().into_bytes()),
                ("worker", consumer.as_bytes().to_vec()),
                ("attempt", r.attempt.to_string().into_bytes()),
                ("entry", r.entry_id.as_bytes().to_vec()),
            ];
            self.transit(&r.job_id, "running", now, items);
            out.push(Marked::Yes);
        }
        Ok(out)
    }

    /// Renews the leases of the runs `consumer` still owns (their idle time reset, their
    /// tokens kept); per run what was answered.
    pub(super) fn renew(
        &mut self,
        lane: Lane,
        consumer: &str,
        runs: &[(&str, u64, &str)],
        now: u64,
    ) -> Result<Vec<Renewed>, QueueError> {
        let mut out = Vec::with_capacity(runs.len());
        let mut ids = Vec::new();
        for (entry, token, job) in runs {
            if self.lane(lane).holder(entry, consumer, *token, "renew leases")? == Holder::Owned {
                ids.push(StreamId::parse(entry, "renew leases")?);
                let cancel = self.record_field(job, "cancel") == Some(b"1");
                out.push(if cancel { Renewed::CancelRequested } else { Renewed::Yes });
            } else {
                out.push(Renewed::Lost);
            }
        }
        if !ids.is_empty() {
            self.lane(lane).claim(consumer, 0, &ids, true, now);
        }
        Ok(out)
    }

    /// What a run that no longer holds its entry is told: [`Written::Landed`] when its record
    /// shows that this consumer already wrote `state` for this entry (an earlier try whose
    /// reply was lost), else who holds it.
    fn refused(&self, job_id: &str, consumer: &str, entry: &str, state: &str, who: Holder) -> Written {
        let landed = self.records.get(job_id).is_some_and(|h| {
            hget(h, "state") == Some(state.as_bytes())
                && hget(h, "worker") == Some(consumer.as_bytes())
                && hget(h, "entry") == Some(entry.as_bytes())
        });
        match who {
            _ if landed => Written::Landed,
            Holder::Gone => Written::Gone,
            _ => Written::Other,
        }
    }

    /// Acknowledges and deletes the entries of the runs `consumer` still owns and records
    /// them `done` with their results, releasing their unique keys; every check happens
    /// before any write, so the answers are those of one run after another.
    pub(super) fn ack(
        &mut self,
        lane: Lane,
        consumer: &str,
        runs: &[DoneRun],
        now: u64,
    ) -> Result<Vec<Written>, QueueError> {
        let mut out = Vec::with_capacity(runs.len());
        let mut owned = Vec::new();
        for r in runs {
            match self.lane(lane).holder(&r.entry_id, consumer, r.token, "acknowledge")? {
                Holder::Owned => {
                    owned.push((StreamId::parse(&r.entry_id, "acknowledge")?, r));
                    out.push(Written::Done);
                }
                who => out.push(self.refused(&r.job_id, consumer, &r.entry_id, "done", who)),
            }
        }
        for (id, _) in &owned {
            self.lane(lane).ack_and_delete(*id);
        }
        let text = now.to_string().into_bytes();
        for (_, r) in owned {
            let items = [
                ("state", b"done".to_vec()),
                ("updated", text.clone()),
                ("finished", text.clone()),
                ("result", r.result.clone()),
                ("started", r.started_ms.to_string().into_bytes()),
                ("attempt", r.attempt.to_string().into_bytes()),
                ("worker", consumer.as_bytes().to_vec()),
                ("entry", r.entry_id.as_bytes().to_vec()),
            ];
            self.write_record(&r.job_id, items);
            self.release_unique(r.unique.as_deref(), &r.job_id);
            // Out of the running set only (as the script): a record that said otherwise keeps
            // its id in that state's set.
            self.sets[0].remove(&r.job_id);
            self.sets[1].add(&r.job_id, ms_score(now));
            self.retire(&r.job_id, "done", now);
            self.events.ended.push(r.job_id.as_str().into());
        }
        Ok(out)
    }

    /// Ends a run without success: later (back to the delayed set as `next`), parked (to
    /// the parked stream, capped) or cancelled, with `record` items for its record.
    pub(super) fn end(
        &mut self,
        lane: Lane,
        consumer: &str,
        run: &RunRef<'_>,
        ending: &Ending<'_>,
        record: &[(&str, Vec<u8>)],
        now: u64,
    ) -> Result<Written, QueueError> {
        let (id, unique) = run.job.unwrap_or(("", None));
        let state = match ending {
            Ending::Later { retry: true, .. } => "retrying",
            Ending::Later { retry: false, .. } => "delayed",
            Ending::Parked { .. } => "parked",
            Ending::Cancelled => "cancelled",
        };
        let who = self.lane(lane).holder(run.entry_id, consumer, run.token, "end a run")?;
        if who != Holder::Owned {
            if id.is_empty() {
                return Ok(if who == Holder::Gone { Written::Gone } else { Written::Other });
            }
            return Ok(self.refused(id, consumer, run.entry_id, state, who));
        }
        let mut items: Vec<(&str, Vec<u8>)> = record.to_vec();
        match ending {
            Ending::Parked { fields } => {
                self.parked.add(now, fields.to_vec());
                self.parked_dropped = self.parked_dropped.saturating_add(self.parked.trim(self.limits.parked_max_len));
            }
            Ending::Later { delay, next, .. } => {
                let due = now.saturating_add(super::millis(*delay));
                self.delayed_entries.insert(id.to_owned(), entry_fields(next));
                self.delayed.add(id, ms_score(due));
                items.push(("due", due.to_string().into_bytes()));
            }
            Ending::Cancelled => {}
        }
        let entry = StreamId::parse(run.entry_id, "end a run")?;
        self.lane(lane).ack_and_delete(entry);
        if !id.is_empty() {
            if is_terminal(state) {
                items.push(("finished", now.to_string().into_bytes()));
                self.finish(id, unique, state, now, items);
            } else {
                self.transit(id, state, now, items);
            }
        }
        Ok(Written::Done)
    }
}
