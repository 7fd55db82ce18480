//! The consumer group and its upkeep: created, or recreated after an operator destroyed it;
//! orphaned entries re-queued; ended jobs trimmed from their sets; idle consumers removed.

use std::time::Duration;

use redis::Value;

use super::scripts::{self, STATE_SETS};
use super::{Store, is_missing_stream, millis, redis, reply};
use dual_mode_jobs::Lane;
use dual_mode_jobs::QueueError;
use dual_mode_jobs::backend::{field, field_of};

impl Store {
    /// Makes sure the group exists: created at the stream's beginning the first time, and
    /// recreated at its end when an operator destroyed it (see [`Store::recreate_group`]).
    /// Returns how many entries a recreation moved, if it did.
    pub(crate) async fn ensure_group(&self, delay: Duration) -> Result<Option<usize>, QueueError> {
        let mut moved = None;
        for lane in Lane::ALL {
            if let Some(n) = self.lane(lane).ensure_lane_group(delay).await? {
                moved = Some(moved.unwrap_or(0) + n);
            }
        }
        Ok(moved)
    }

    /// [`Store::ensure_group`] for this store's lane.
    async fn ensure_lane_group(&self, delay: Duration) -> Result<Option<usize>, QueueError> {
        let marker = match self.lane {
            Lane::Normal => format!("{}group:{}", self.keys.state_prefix, self.group),
            lane => format!("{}group:{}:{lane}", self.keys.state_prefix, self.group),
        };
        let answer: i64 = scripts::ENSURE_GROUP
            .key(self.stream())
            .key(&marker)
            .arg(&self.group)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("create group"))?;
        if answer == 2 { self.recreate_group(delay).await } else { Ok(None) }
    }

    /// Recreates a destroyed group at the stream's end and moves the entries the stream holds
    /// to the delayed set, due in `delay` (see the script). `None` when another worker did it.
    async fn recreate_group(&self, delay: Duration) -> Result<Option<usize>, QueueError> {
        const MAX: usize = 10_000;
        let v: Value = redis::cmd("XRANGE")
            .arg(self.stream())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(MAX)
            .query_async(&mut self.con())
            .await
            .map_err(redis("recreate group"))?;
        let entries = reply::entries(v).map_err(|d| QueueError::protocol("recreate group", d))?;
        let mut inv = scripts::RECREATE.prepare_invoke();
        self.base_keys(&mut inv);
        inv.key(&self.keys.delayed).arg(&self.group).arg(millis(delay));
        for (entry_id, fields) in &entries {
            let job_id =
                field_of(fields, field::ID).and_then(|v| std::str::from_utf8(v).ok()).filter(|id| !id.is_empty());
            match job_id {
                Some(id) => inv.key(self.delayed_key(id)).key(self.record_key(id)),
                None => inv.key(self.stream()).key(self.stream()),
            };
            inv.arg(entry_id).arg(job_id.unwrap_or(""));
        }
        let moved: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("recreate group"))?;
        Ok(usize::try_from(moved).ok())
    }

    /// Re-queues up to `count` orphaned entries after `cursor` (see the sweep script); returns
    /// the next cursor (`None`: the scan is complete) and how many were re-queued.
    pub(crate) async fn sweep(&self, cursor: &str, count: usize) -> Result<(Option<String>, u64), QueueError> {
        let res: Result<(String, u64), _> = scripts::SWEEP
            .key(self.stream())
            .arg(&self.group)
            .arg(cursor)
            .arg(count)
            .invoke_async(&mut self.con())
            .await;
        match res {
            Ok((next, moved)) => Ok((Some(next).filter(|n| !n.is_empty()), moved)),
            Err(e) if e.code() == Some("NOGROUP") || e.code() == Some("ERR") && is_missing_stream(&e) => {
                Err(self.missing_group())
            }
            Err(e) => Err(redis("sweep orphaned entries")(e)),
        }
    }

    /// Removes the ids of ended jobs whose records expired from the state sets.
    pub(crate) async fn trim_ended(&self) -> Result<u64, QueueError> {
        let mut inv = scripts::TRIM.prepare_invoke();
        for (state, key) in STATE_SETS.iter().zip(&self.state_keys) {
            if matches!(*state, "done" | "parked" | "cancelled") {
                let age = self.retention.of(state).and_then(|k| k.age_ms);
                inv.key(key).arg(age.map(|a| a.to_string()).unwrap_or_default());
            }
        }
        inv.invoke_async(&mut self.con()).await.map_err(redis("trim ended jobs"))
    }

    /// Removes consumers other than `consumer` that hold nothing and have not read for
    /// `min_idle`; returns how many.
    pub(crate) async fn prune_consumers(&self, consumer: &str, min_idle: Duration) -> Result<u64, QueueError> {
        scripts::PRUNE
            .key(self.stream())
            .arg(&self.group)
            .arg(millis(min_idle))
            .arg(consumer)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("prune consumers"))
    }

    /// Removes `consumer` from the group if it holds no pending entry; returns whether it did.
    pub(crate) async fn remove_consumer_if_idle(&self, consumer: &str) -> Result<bool, QueueError> {
        let removed: i64 = scripts::DEL_CONSUMER
            .key(self.stream())
            .arg(&self.group)
            .arg(consumer)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("remove consumer"))?;
        Ok(removed == 1)
    }
}
