//! Schedules: a tick's dedupe and enqueue in one script, and each schedule's state (last tick,
//! pause, resume) and the queue's index of schedules.

use dual_mode_jobs::backend::{ScheduleState, Ticked};
use std::time::Duration;

use redis::Value;

use super::push::{record_items, unique_ttl_ms};
use super::{Store, millis, one_each, redis, reply, scripts};
use dual_mode_jobs::Envelope;
use dual_mode_jobs::QueueKeys;
use dual_mode_jobs::{QueueError, ReplyError};

/// The keys of one schedule.
pub(crate) struct ScheduleKeys {
    /// Prefix of its ticks' dedupe keys (the tick's ms follow).
    pub(crate) tick_prefix: String,
    /// The last tick enqueued (ms).
    pub(crate) last: String,
    /// Present while paused, holding the pause time (ms).
    pub(crate) paused: String,
    /// The last resume time (ms).
    pub(crate) resumed: String,
}

impl ScheduleKeys {
    pub(crate) fn new(keys: &QueueKeys, name: &str) -> Self {
        let base = format!("{}{name}", keys.schedule_prefix);
        Self {
            tick_prefix: format!("{base}:tick:"),
            last: format!("{base}:last"),
            paused: format!("{base}:paused"),
            resumed: format!("{base}:resumed"),
        }
    }
}

impl Store {
    /// Enqueues a schedule's tick unless its dedupe key exists or the schedule is paused.
    pub(crate) async fn tick(
        &self,
        keys: &ScheduleKeys,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &Envelope,
        unique_ttl: Duration,
    ) -> Result<Ticked, QueueError> {
        let mut inv = scripts::TICK.prepare_invoke();
        self.base_keys(&mut inv);
        inv.key(format!("{}{tick_ms}", keys.tick_prefix))
            .key(&keys.last)
            .key(self.record_key(&env.id))
            .key(&keys.paused)
            .key(env.unique.as_deref().map_or_else(|| self.record_key(&env.id), |u| self.unique_key(u)));
        let items = record_items(env);
        inv.arg(millis(dedupe_ttl).max(1)).arg(tick_ms).arg(&env.id).arg(items.len());
        inv.arg(unique_ttl_ms(env, unique_ttl));
        for item in items {
            inv.arg(item);
        }
        for (k, v) in env.to_fields() {
            inv.arg(k).arg(v.as_ref());
        }
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("enqueue tick"))?;
        Ok(match v {
            Value::Int(0) => Ticked::Paused,
            Value::Nil => Ticked::Duplicate,
            Value::Array(held) => Ticked::Held(held.get(1).and_then(reply::text).ok_or_else(|| {
                QueueError::protocol(
                    "enqueue tick",
                    ReplyError::WrongType { what: "holder of a tick", expected: "text" },
                )
            })?),
            other => Ticked::Enqueued(reply::text(&other).ok_or_else(|| {
                QueueError::protocol(
                    "enqueue tick",
                    ReplyError::WrongType { what: "tick answer", expected: "an entry id" },
                )
            })?),
        })
    }

    /// The last tick (ms) stored under `last_key`.
    pub(crate) async fn last_tick(&self, last_key: &str) -> Result<Option<i64>, QueueError> {
        let v: Value =
            redis::cmd("GET").arg(last_key).query_async(&mut self.con()).await.map_err(redis("read last tick"))?;
        Ok(reply::int(&v))
    }

    /// Marks a schedule paused at `now_ms`; returns whether it was running.
    pub(crate) async fn pause_schedule(&self, keys: &ScheduleKeys, now_ms: u64) -> Result<bool, QueueError> {
        let v: Value = redis::cmd("SET")
            .arg(&keys.paused)
            .arg(now_ms)
            .arg("NX")
            .query_async(&mut self.con())
            .await
            .map_err(redis("pause schedule"))?;
        Ok(v != Value::Nil)
    }

    /// Lifts a schedule's pause, noting the time; returns whether it was paused.
    pub(crate) async fn resume_schedule(&self, keys: &ScheduleKeys, now_ms: u64) -> Result<bool, QueueError> {
        let resumed: i64 = scripts::RESUME
            .key(&keys.paused)
            .key(&keys.resumed)
            .arg(now_ms)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("resume schedule"))?;
        Ok(resumed == 1)
    }

    /// Records schedules (name, description) in the queue's index of schedules.
    pub(crate) async fn register_schedules(&self, entries: &[(String, String)]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.schedule_index_key());
        for (name, description) in entries {
            cmd.arg(name).arg(description);
        }
        let _: Value = cmd.query_async(&mut self.con()).await.map_err(redis("register schedules"))?;
        Ok(())
    }

    /// The queue's index of schedules: (name, description) pairs, by name.
    pub(crate) async fn schedule_index(&self) -> Result<Vec<(String, String)>, QueueError> {
        let all: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.schedule_index_key())
            .query_async(&mut self.con())
            .await
            .map_err(redis("list schedules"))?;
        Ok(all.into_iter().collect())
    }

    /// The state of each schedule: last tick, pause time and resume time (ms).
    pub(crate) async fn schedule_states(&self, keys: &[ScheduleKeys]) -> Result<Vec<ScheduleState>, QueueError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(&k.last).arg(&k.paused).arg(&k.resumed);
        }
        let items: Vec<Value> = cmd.query_async(&mut self.con()).await.map_err(redis("read schedules"))?;
        Ok(one_each("read schedules", items, keys.len() * 3)?
            .chunks(3)
            .map(|c| ScheduleState { last: reply::int(&c[0]), paused: reply::int(&c[1]), resumed: reply::int(&c[2]) })
            .collect())
    }

    /// Removes a schedule from the index with its pause and tick state; returns whether it
    /// was registered.
    pub(crate) async fn forget_schedule(&self, keys: &ScheduleKeys, name: &str) -> Result<bool, QueueError> {
        let removed: i64 = scripts::FORGET
            .key(self.schedule_index_key())
            .key(&keys.paused)
            .key(&keys.resumed)
            .key(&keys.last)
            .arg(name)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("forget schedule"))?;
        Ok(removed == 1)
    }

    /// The hash of the queue's schedules: the schedule prefix without its trailing colon.
    fn schedule_index_key(&self) -> &str {
        self.keys.schedule_prefix.trim_end_matches(':')
    }
}
