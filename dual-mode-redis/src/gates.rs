//! The gates a job passes as it is about to start: its rate limits, its rate key's pause, and
//! a slot of its key's concurrency; and the slots' release, renewal and waiters' wake-up.

use dual_mode_jobs::backend::{Gate, Passed};
use std::time::Duration;

use super::{Store, millis, one_each, redis, reply, scripts};
use dual_mode_jobs::QueueError;

impl Store {
    /// Passes jobs through their gates as they are about to start, in one script (see it):
    /// their rate limits, and a slot of their rate keys when the keys have a concurrency,
    /// held for `lease`. Per job what it answered.
    pub(crate) async fn gate(&self, gates: &[Gate], lease: Duration) -> Result<Vec<Passed>, QueueError> {
        let mut inv = scripts::GATE.prepare_invoke();
        inv.arg(millis(lease).max(1));
        for gate in gates {
            match &gate.rate_key {
                Some(key) => inv.key(self.pause_key(key)),
                None => inv.key(&self.keys.delayed),
            };
            match (&gate.rate_key, gate.slots) {
                (Some(key), Some(_)) => inv.key(self.slot_key(key)).key(self.slot_wait_key(key)),
                _ => inv.key(&self.keys.delayed).key(&self.keys.delayed),
            };
            inv.arg(u8::from(gate.reserved)).arg(u8::from(gate.rate_key.is_some()));
            inv.arg(gate.slots.unwrap_or(0)).arg(&gate.job_id).arg(gate.buckets.len());
            for b in &gate.buckets {
                inv.key(format!("{}{}", self.keys.rate_prefix, b.name));
                inv.key(format!("{}{}", self.keys.rate_window_prefix, b.name));
                inv.arg(b.interval_ms).arg(b.tolerance_ms).arg(b.window_ms).arg(b.window_max);
            }
        }
        let waits: Vec<i64> = inv.invoke_async(&mut self.con()).await.map_err(redis("check rate limits"))?;
        one_each("check rate limits", waits, gates.len())?
            .into_iter()
            .map(|wait| reply::passed(wait).map_err(|d| QueueError::protocol("check rate limits", d)))
            .collect()
    }

    /// Gives back a job's slot of `rate_key` and wakes the key's oldest waiter.
    pub(crate) async fn release_slot(&self, rate_key: &str, job_id: &str) -> Result<(), QueueError> {
        let _: i64 = scripts::RELEASE_SLOT
            .key(self.slot_key(rate_key))
            .key(self.slot_wait_key(rate_key))
            .key(&self.keys.delayed)
            .arg(job_id)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("release a slot"))?;
        Ok(())
    }

    /// Gives back a job's slot of `rate_key` and takes the key's oldest waiter off the
    /// waiters without waking it (it waits in another store's delayed set: see
    /// [`Store::wake`]). Returns the waiter's job id.
    pub(crate) async fn release_slot_take(&self, rate_key: &str, job_id: &str) -> Result<Option<String>, QueueError> {
        scripts::RELEASE_SLOT_TAKE
            .key(self.slot_key(rate_key))
            .key(self.slot_wait_key(rate_key))
            .arg(job_id)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("release a slot"))
    }

    /// Makes a job in the delayed set due at once (whatever the clocks say); returns whether
    /// it was there.
    pub(crate) async fn wake(&self, job_id: &str) -> Result<bool, QueueError> {
        let changed: i64 = redis::cmd("ZADD")
            .arg(&self.keys.delayed)
            .arg("XX")
            .arg("CH")
            .arg(0)
            .arg(job_id)
            .query_async(&mut self.con())
            .await
            .map_err(redis("wake a waiter"))?;
        Ok(changed == 1)
    }

    /// Extends the slots these running jobs hold (rate key, job id) by `lease`.
    pub(crate) async fn renew_slots(&self, held: &[(&str, &str)], lease: Duration) -> Result<(), QueueError> {
        let mut inv = scripts::RENEW_SLOTS.prepare_invoke();
        inv.arg(millis(lease).max(1));
        for (key, job_id) in held {
            inv.key(self.slot_key(key)).arg(*job_id);
        }
        let _: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("renew slots"))?;
        Ok(())
    }

    fn slot_key(&self, rate_key: &str) -> String {
        format!("{}{rate_key}", self.keys.slot_prefix)
    }

    fn slot_wait_key(&self, rate_key: &str) -> String {
        format!("{}{rate_key}", self.keys.slot_wait_prefix)
    }

    /// Pauses a rate key for every worker for `pause` (a longer pause stays).
    pub(crate) async fn pause_rate_key(&self, rate_key: &str, pause: Duration) -> Result<(), QueueError> {
        let _: i64 = scripts::PAUSE
            .key(self.pause_key(rate_key))
            .arg(millis(pause).max(1))
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("pause rate key"))?;
        Ok(())
    }

    fn pause_key(&self, rate_key: &str) -> String {
        format!("{}{rate_key}", self.keys.rate_pause_prefix)
    }
}
