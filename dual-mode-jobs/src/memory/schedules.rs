//! Schedules: ticks enqueued once each (the tick script), pauses and resumes, and the index
//! of schedules (on the home).

use super::state::{ScheduleKeys, State, entry_fields, record_items, unique_ttl_ms};
use crate::backend::{ScheduleState, Ticked};
use crate::envelope::Envelope;

impl State {
    /// Enqueues schedule `name`'s tick at `tick_ms` as `env`, unless the schedule is paused
    /// (the tick is not marked), another scheduler enqueued it (its mark lives `dedupe_ms`),
    /// or the job of an earlier tick holds the unique key (the tick is marked).
    pub(super) fn tick(
        &mut self,
        name: &str,
        dedupe_ms: u64,
        tick_ms: i64,
        env: &Envelope,
        unique_ttl: u64,
        now: u64,
    ) -> Ticked {
        let keys = self.schedules.get(name).copied().unwrap_or_default();
        if keys.paused.is_some() {
            return Ticked::Paused;
        }
        let mark = format!("{name}:tick:{tick_ms}");
        if self.ticks.contains(&mark) {
            return Ticked::Duplicate;
        }
        self.ticks.set(&mark, (), Some(now.saturating_add(dedupe_ms)));
        if tick_ms > keys.last.unwrap_or(0) {
            self.schedules.entry(name.to_owned()).or_default().last = Some(tick_ms);
        }
        let ttl = unique_ttl_ms(env, unique_ttl);
        if let Some(holder) = self.claim_unique(env.unique.as_deref(), &env.id, ttl, now) {
            return Ticked::Held(holder);
        }
        let entry = self.add_entry(env.lane, now, entry_fields(env));
        let mut items = record_items(env);
        items.push(("entry", entry.clone().into_bytes()));
        self.transit(&env.id, "queued", now, items);
        Ticked::Enqueued(entry)
    }

    /// Pauses schedule `name` at `now_ms`; whether it was running.
    pub(super) fn pause_schedule(&mut self, name: &str, now_ms: i64) -> bool {
        let keys = self.schedules.entry(name.to_owned()).or_default();
        let was_running = keys.paused.is_none();
        if was_running {
            keys.paused = Some(now_ms);
        }
        was_running
    }

    /// Resumes schedule `name`, noting when (a catch-up never covers the pause); whether it
    /// was paused.
    pub(super) fn resume_schedule(&mut self, name: &str, now_ms: i64) -> bool {
        let Some(keys) = self.schedules.get_mut(name).filter(|k| k.paused.is_some()) else { return false };
        keys.paused = None;
        keys.resumed = Some(now_ms);
        true
    }

    /// The state of these schedules, in order.
    pub(super) fn schedule_states(&self, names: &[String]) -> Vec<ScheduleState> {
        names
            .iter()
            .map(|name| {
                let k = self.schedules.get(name).copied().unwrap_or_default();
                ScheduleState { last: k.last, paused: k.paused, resumed: k.resumed }
            })
            .collect()
    }

    /// Removes schedule `name`'s state and its entry of the index; whether it was registered.
    pub(super) fn forget_schedule(&mut self, name: &str) -> bool {
        self.schedules.remove(name);
        self.index.remove(name).is_some()
    }

    /// Records schedules `(name, description)` in the index.
    pub(super) fn register_schedules(&mut self, entries: &[(String, String)]) {
        for (name, description) in entries {
            self.index.insert(name.clone(), description.clone());
        }
    }

    /// The index of schedules, by name.
    pub(super) fn schedule_index(&self) -> Vec<(String, String)> {
        self.index.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Schedule `name`'s state, for reads that need one field.
    pub(super) fn schedule(&self, name: &str) -> ScheduleKeys {
        self.schedules.get(name).copied().unwrap_or_default()
    }
}
