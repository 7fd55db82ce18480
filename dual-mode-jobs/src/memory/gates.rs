//! Gates at a job's start, on the home: rate limits (GCRA buckets), rate-key pauses and
//! key-concurrency slots with their waiters (the gate, release, renew-slots and pause
//! scripts).

use std::collections::HashMap;

use super::sets::{Ttl, ZSet, ms_score};
use super::state::State;
use crate::backend::{Bucket, Gate, Passed};

impl State {
    /// Passes jobs through their gates, one after another as if one by one.
    ///
    /// GCRA: a bucket has room at `t` when `t >= tat - tolerance`, and a start at `t` moves
    /// its `tat` to `max(tat, t) + interval`. The start is the first moment every bucket has
    /// room and the key's pause is over, reserved in every bucket at once. A reserved start
    /// draws no second time unless the key is paused. Every start, reserved or not, also needs
    /// room in each bucket's window of actual starts (at most `window_max` in the last
    /// `window_ms`): reserved starts that fell due while no worker slot was free wait there
    /// for the window rather than go all at once, keeping their reservation. A job that may
    /// start now also needs a slot of its key when the key has a concurrency: expired holders
    /// are dropped first, and without a free slot the job becomes a waiter and draws nothing.
    /// Buckets are read once per batch and written once at its end, rounded to the µs and
    /// kept a second past their `tat`, as the script writes them.
    pub(super) fn gate(&mut self, gates: &[Gate], lease_ms: u64, now: u64) -> Vec<Passed> {
        // Each bucket's tat, read once, and whether a start was reserved in it.
        let mut tats: HashMap<&str, (f64, bool)> = HashMap::new();
        let mut out = Vec::with_capacity(gates.len());
        let now_f = ms_score(now);
        for g in gates {
            // Never before now: `start > now` says it must wait.
            let mut start = now_f;
            if let Some(key) = &g.rate_key
                && let Ttl::Left(left) = self.rate_pauses.ttl(key, now)
                && left > 0
            {
                start += ms_score(left);
            }
            // A concurrency without a rate key has no key to hold a slot of.
            let slots = g.rate_key.as_deref().zip(g.slots.filter(|&k| k > 0));
            if g.reserved && start <= now_f {
                let room = self.window_room(&g.buckets, now);
                out.push(if room > now_f {
                    Passed::Wait(std::time::Duration::from_millis(wait_ms(room - now_f)))
                } else if self.slot(slots, &g.job_id, lease_ms, now) {
                    self.started(&g.buckets, &g.job_id, now);
                    Passed::Start
                } else {
                    Passed::NoSlot
                });
                continue;
            }
            for b in &g.buckets {
                let (tat, _) =
                    *tats.entry(&b.name).or_insert_with(|| (self.buckets.get(&b.name).copied().unwrap_or(0.0), false));
                start = start.max(tat - b.tolerance_ms);
            }
            if start <= now_f {
                let room = self.window_room(&g.buckets, now);
                if room > now_f {
                    start = room;
                } else if !self.slot(slots, &g.job_id, lease_ms, now) {
                    out.push(Passed::NoSlot);
                    continue;
                }
            }
            for b in &g.buckets {
                if let Some((tat, dirty)) = tats.get_mut(b.name.as_str()) {
                    *tat = tat.max(start) + b.interval_ms;
                    *dirty = true;
                }
            }
            if start <= now_f {
                self.started(&g.buckets, &g.job_id, now);
            }
            out.push(match wait_ms(start - now_f) {
                0 => Passed::Start,
                ms => Passed::Wait(std::time::Duration::from_millis(ms)),
            });
        }
        for (name, (tat, _)) in tats.into_iter().filter(|(_, (_, dirty))| *dirty) {
            let tat = (tat * 1000.0).round() / 1000.0;
            let deadline = now.saturating_add(wait_ms(tat - now_f)).saturating_add(1000);
            self.buckets.set(name, tat, Some(deadline));
        }
        out
    }

    /// When every bucket's window of actual starts has room for one more: now, or when the
    /// oldest start of a full window leaves it.
    fn window_room(&mut self, buckets: &[Bucket], now: u64) -> f64 {
        let now_f = ms_score(now);
        let mut room = now_f;
        for b in buckets {
            let Some(log) = self.rate_logs.get_mut(&b.name) else { continue };
            log.remove_up_to(now_f - b.window_ms);
            if log.len() >= usize::try_from(b.window_max).unwrap_or(usize::MAX)
                && let Some((_, oldest)) = log.iter().next()
            {
                room = room.max(oldest + b.window_ms);
            }
        }
        room
    }

    /// Counts a start of job `id` now in every bucket's window.
    fn started(&mut self, buckets: &[Bucket], id: &str, now: u64) {
        for b in buckets {
            let log = self.rate_logs.get_or_insert_with(&b.name, ZSet::default);
            log.add(&format!("{now}:{id}"), ms_score(now));
            self.rate_logs.expire_at(&b.name, now.saturating_add(wait_ms(b.window_ms)).saturating_add(1000));
        }
    }

    /// Takes a slot of `key` (of `max` slots) for job `id` until a lease from now, or makes
    /// the job a waiter; whether it holds one. No key: no slot needed.
    fn slot(&mut self, key: Option<(&str, u32)>, id: &str, lease_ms: u64, now: u64) -> bool {
        let Some((key, max)) = key else { return true };
        let holders = self.holders.entry(key.to_owned()).or_default();
        holders.remove_up_to(ms_score(now));
        if !holders.contains(id) && holders.len() >= usize::try_from(max).unwrap_or(usize::MAX) {
            self.waiters.entry(key.to_owned()).or_default().add_new(id, ms_score(now));
            return false;
        }
        holders.add(id, ms_score(now.saturating_add(lease_ms)));
        if let Some(waiters) = self.waiters.get_mut(key) {
            waiters.remove(id);
            drop_if_empty(&mut self.waiters, key);
        }
        true
    }

    /// Gives back job `id`'s slot of `key` and wakes the oldest waiter that is in the delayed
    /// set (due now); waiters no longer there are dropped on the way, ten at most.
    pub(super) fn release_slot(&mut self, key: &str, id: &str, now: u64) {
        if let Some(holders) = self.holders.get_mut(key) {
            holders.remove(id);
            drop_if_empty(&mut self.holders, key);
        }
        for _ in 0..10 {
            let Some(next) = self.take_waiter(key) else { return };
            if self.delayed.update(&next, ms_score(now)) {
                return;
            }
        }
    }

    /// Gives back job `id`'s slot of `key` and takes the key's oldest waiter off the waiters
    /// without waking it.
    pub(super) fn release_slot_take(&mut self, key: &str, id: &str) -> Option<String> {
        if let Some(holders) = self.holders.get_mut(key) {
            holders.remove(id);
            drop_if_empty(&mut self.holders, key);
        }
        self.take_waiter(key)
    }

    /// The oldest waiter of `key`, off the waiters.
    fn take_waiter(&mut self, key: &str) -> Option<String> {
        let waiters = self.waiters.get_mut(key)?;
        let next = waiters.first()?.to_owned();
        waiters.remove(&next);
        drop_if_empty(&mut self.waiters, key);
        Some(next)
    }

    /// Makes a delayed job due at once; whether its due time changed.
    pub(super) fn wake(&mut self, id: &str) -> bool {
        self.delayed.update(id, 0.0)
    }

    /// Extends the slots that running jobs `(key, id)` still hold to a lease from now.
    pub(super) fn renew_slots(&mut self, held: &[(&str, &str)], lease_ms: u64, now: u64) {
        let until = ms_score(now.saturating_add(lease_ms));
        for (key, id) in held {
            if let Some(holders) = self.holders.get_mut(*key) {
                holders.update(id, until);
            }
        }
    }

    /// Pauses a rate key for `pause_ms`, unless a longer pause is on.
    pub(super) fn pause_rate_key(&mut self, key: &str, pause_ms: u64, now: u64) {
        // A pause without a deadline counts as shorter than any (`PTTL` says -1).
        let longer = matches!(self.rate_pauses.ttl(key, now), Ttl::Left(left) if left >= pause_ms);
        if !longer {
            self.rate_pauses.set(key, (), Some(now.saturating_add(pause_ms)));
        }
    }
}

/// A wait in whole ms, rounded up (none for a moment past).
#[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped to 0..=u64::MAX first")]
fn wait_ms(ms: f64) -> u64 {
    ms.ceil().clamp(0.0, 18_446_744_073_709_549_568.0) as u64
}

/// Forgets a key's empty set, as Redis deletes an empty sorted set.
fn drop_if_empty(sets: &mut HashMap<String, ZSet>, key: &str) {
    if sets.get(key).is_some_and(ZSet::is_empty) {
        sets.remove(key);
    }
}
