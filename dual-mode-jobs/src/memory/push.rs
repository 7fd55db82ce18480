//! Entries in: pushes, delayed pushes, promotion of due entries and re-drives of parked ones
//! (the push, delayed push, due, promote and re-drive scripts).

use super::sets::ms_score;
use super::state::{Items, State, entry_fields, field, hdel, lane_of, record_items, unique_ttl_ms};
use super::stream::StreamId;
use crate::backend::PushAnswer;
use crate::envelope::{Envelope, RawFields};
use crate::error::QueueError;

impl State {
    /// Adds `env` to its lane and writes its `queued` record, unless its unique key is held
    /// (then nothing is written and the holder answers).
    pub(super) fn push(&mut self, env: &Envelope, unique_ttl: u64, now: u64) -> PushAnswer {
        let ttl = unique_ttl_ms(env, unique_ttl);
        if let Some(holder) = self.claim_unique(env.unique.as_deref(), &env.id, ttl, now) {
            return PushAnswer::Held { holder };
        }
        let entry = self.add_entry(env.lane, now, entry_fields(env));
        let stamp = [
            ("state", b"queued".to_vec()),
            ("updated", now.to_string().into_bytes()),
            ("entry", entry.clone().into_bytes()),
        ];
        self.write_record(&env.id, stamp.into_iter().chain(record_items(env)));
        PushAnswer::Added { entry_id: entry }
    }

    /// Puts `env` in the delayed set, due at `at_ms` or, when that is 0, `delay_ms` from now,
    /// and writes its `delayed` record, unless its unique key is held.
    pub(super) fn push_delayed(
        &mut self,
        env: &Envelope,
        unique_ttl: u64,
        at_ms: u64,
        delay_ms: u64,
        now: u64,
    ) -> PushAnswer {
        let ttl = unique_ttl_ms(env, unique_ttl);
        if let Some(holder) = self.claim_unique(env.unique.as_deref(), &env.id, ttl, now) {
            return PushAnswer::Held { holder };
        }
        let at = if at_ms == 0 { now.saturating_add(delay_ms) } else { at_ms };
        self.delayed_entries.insert(env.id.clone(), entry_fields(env));
        self.delayed.add(&env.id, ms_score(at));
        let mut items = record_items(env);
        items.push(("due", at.to_string().into_bytes()));
        self.transit(&env.id, "delayed", now, items);
        PushAnswer::Delayed
    }

    /// Moves up to `max` due delayed entries into their lanes, by due time; how many moved.
    pub(super) fn promote(&mut self, max: usize, now: u64) -> usize {
        let due: Vec<String> = self.delayed.up_to(ms_score(now)).take(max).map(str::to_owned).collect();
        let mut moved = 0;
        for id in due {
            let fields = self.delayed_entries.remove(&id).unwrap_or_default();
            self.delayed.remove(&id);
            if fields.is_empty() {
                continue;
            }
            let lane = lane_of(field(&fields, "lane"));
            let entry = self.add_entry(lane, now, fields);
            if self.records.contains(&id) {
                self.transit(&id, "queued", now, vec![("entry", entry.into_bytes())]);
            }
            moved += 1;
        }
        moved
    }

    /// Moves a parked entry back to its lane: its fields named with `raw_prefix`, without the
    /// prefix, the attempt reset to 1; the job's record queued again and kept. The new entry
    /// id; `None` when there is no such parked entry or it holds no original field.
    pub(super) fn redrive(
        &mut self,
        parked_id: &str,
        raw_prefix: &str,
        job_id: Option<&str>,
        now: u64,
    ) -> Result<Option<String>, QueueError> {
        let id = StreamId::parse(parked_id, "re-drive")?;
        let Some(parked) = self.parked.get(id) else { return Ok(None) };
        let fields: RawFields = parked
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(raw_prefix.as_bytes())?;
                let value = if name == b"attempt" { b"1".to_vec() } else { v.clone() };
                Some((name.to_vec(), value))
            })
            .collect();
        if fields.is_empty() {
            return Ok(None);
        }
        let lane = lane_of(field(&fields, "lane"));
        let entry = self.add_entry(lane, now, fields);
        self.parked.remove(id);
        if let Some(job) = job_id.filter(|j| !j.is_empty()) {
            if let Some(record) = self.records.get_mut(job) {
                for name in ["cancel", "finished", "result"] {
                    hdel(record, name);
                }
            }
            self.records.persist(job);
            let items: Items = vec![("entry", entry.clone().into_bytes()), ("attempt", b"1".to_vec())];
            self.transit(job, "queued", now, items);
        }
        Ok(Some(entry))
    }
}
