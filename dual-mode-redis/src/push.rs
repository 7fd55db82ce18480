//! Pushes: one, many in one round trip, delayed; and the promotion of due delayed entries
//! into their lanes' streams. Each writes the job's record in the script that writes the job.

use dual_mode_jobs::backend::PushAnswer;
use std::borrow::Cow;
use std::time::Duration;

use redis::Value;

use super::{Store, millis, one_each, redis, reply, scripts};
use dual_mode_jobs::Envelope;
use dual_mode_jobs::Lane;
use dual_mode_jobs::QueueError;
use dual_mode_jobs::backend::record;

impl Store {
    /// Pushes an envelope and writes its `queued` record, or, for a unique job whose key is
    /// held, writes nothing and answers [`PushAnswer::Held`].
    pub(crate) async fn push(&self, env: &Envelope, unique_ttl: Duration) -> Result<PushAnswer, QueueError> {
        let v: Value = self.eval(&scripts::PUSH, &self.push_cmd(env, unique_ttl), "push").await?;
        reply::pushed(v).map_err(|d| QueueError::protocol("push", d))
    }

    /// The push script's call for `env`, written straight into one command.
    fn push_cmd(&self, env: &Envelope, unique_ttl: Duration) -> redis::Cmd {
        let record = self.record_key(&env.id);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts::PUSH.get_hash()).arg(3).arg(self.stream()).arg(&record);
        match &env.unique {
            Some(u) => cmd.arg(self.unique_key(u)),
            None => cmd.arg(&record),
        };
        let items = record_items(env);
        cmd.arg(&env.id).arg(unique_ttl_ms(env, unique_ttl)).arg(items.len());
        for item in items {
            cmd.arg(item);
        }
        for (k, v) in env.to_fields() {
            cmd.arg(k).arg(v.as_ref());
        }
        cmd
    }

    /// Pipelined pushes, one round trip; per envelope what its push answered.
    pub(crate) async fn push_many(
        &self,
        envs: &[Envelope],
        unique_ttl: Duration,
    ) -> Result<Vec<PushAnswer>, QueueError> {
        let mut pipe = redis::pipe();
        for env in envs {
            pipe.add_command(self.push_cmd(env, unique_ttl));
        }
        let replies: Vec<Value> = self.eval(&scripts::PUSH, &pipe, "bulk push").await?;
        one_each("bulk push", replies, envs.len())?
            .into_iter()
            .map(|v| reply::pushed(v).map_err(|d| QueueError::protocol("bulk push", d)))
            .collect()
    }

    /// Puts an envelope in the delayed set, due at `at_ms` (ms since the epoch) or, when that
    /// is 0, `delay_ms` after the server's clock, and writes its `delayed` record; for a unique
    /// job whose key is held, writes nothing and answers [`PushAnswer::Held`].
    pub(crate) async fn push_delayed(
        &self,
        env: &Envelope,
        unique_ttl: Duration,
        at_ms: u64,
        delay_ms: u64,
    ) -> Result<PushAnswer, QueueError> {
        let mut inv = scripts::PUSH_DELAYED.prepare_invoke();
        self.base_keys(&mut inv);
        inv.key(&self.keys.delayed).key(self.delayed_key(&env.id));
        self.job_keys(&mut inv, &env.id, env.unique.as_deref());
        let items = record_items(env);
        inv.arg(&env.id).arg(unique_ttl_ms(env, unique_ttl)).arg(at_ms).arg(delay_ms).arg(items.len());
        for item in items {
            inv.arg(item);
        }
        for (k, v) in env.to_fields() {
            inv.arg(k).arg(v.as_ref());
        }
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("delayed push"))?;
        reply::pushed_delayed(v).map_err(|d| QueueError::protocol("delayed push", d))
    }

    /// Moves up to `max` due delayed entries into the stream; returns how many moved.
    pub(crate) async fn promote(&self, max: usize) -> Result<usize, QueueError> {
        let due: Vec<String> = scripts::DUE
            .key(&self.keys.delayed)
            .arg(max)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("find due entries"))?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut inv = scripts::PROMOTE.prepare_invoke();
        self.normal_base_keys(&mut inv);
        inv.key(&self.keys.delayed);
        self.lane_keys(&mut inv);
        for id in &due {
            inv.key(self.delayed_key(id)).key(self.record_key(id));
            inv.arg(id);
        }
        let moved: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("promote due entries"))?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }
}

/// The record items a push writes: type, idempotency key, attempt, enqueue time, and the
/// maximum attempts and unique key when set.
pub(super) fn record_items(env: &Envelope) -> Vec<Cow<'_, [u8]>> {
    let text = |s: &'static str| Cow::Borrowed(s.as_bytes());
    let mut out = Vec::with_capacity(14);
    out.extend([
        text(record::TYPE),
        Cow::Borrowed(env.type_name.as_bytes()),
        text(record::KEY),
        Cow::Borrowed(env.idempotency_key.as_bytes()),
        text(record::ATTEMPT),
        Cow::Owned(env.attempt.to_string().into_bytes()),
        text(record::ENQUEUED),
        Cow::Owned(env.enqueued_at_ms.to_string().into_bytes()),
    ]);
    if let Some(max) = env.max_attempts {
        out.extend([text(record::MAX), Cow::Owned(max.to_string().into_bytes())]);
    }
    if let Some(unique) = &env.unique {
        out.extend([text(record::UNIQUE), Cow::Borrowed(unique.as_bytes())]);
    }
    if env.lane != Lane::Normal {
        out.extend([text(record::LANE), text(env.lane.as_str())]);
    }
    if let Some(keep) = env.keep_ms {
        out.extend([text(record::KEEP), Cow::Owned(keep.to_string().into_bytes())]);
    }
    out
}

/// The unique key's lifetime for the push script: 0 when the job is not unique, a day when
/// no lifetime was set.
pub(super) fn unique_ttl_ms(env: &Envelope, ttl: Duration) -> u64 {
    match (&env.unique, millis(ttl)) {
        (None, _) => 0,
        (Some(_), 0) => 24 * 3600 * 1000,
        (Some(_), ms) => ms,
    }
}
