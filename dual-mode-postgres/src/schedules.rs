//! Schedules: ticks enqueued once each (a row per schedule and tick time, whose primary key
//! makes a second scheduler's insert a no-op), pauses and resumes, and the index of schedules
//! on the home.

use std::time::Duration;

use dual_mode_jobs::backend::{ScheduleState, Ticked};
use dual_mode_jobs::{Envelope, QueueError};

use crate::codec::encode_envelope;
use crate::push::{add_entry, borrowed, claim_unique, record_items, transit, unique_ttl_ms};
use crate::{Store, ms_of, pg};

/// A schedule's row: name, last tick, pause and resume times.
type ScheduleRow = (String, Option<i64>, Option<i64>, Option<i64>);

impl Store {
    /// Enqueues schedule `name`'s tick at `tick_ms` as `env`, unless the schedule is paused
    /// (the tick is not marked), another scheduler enqueued it (its mark lives `dedupe_ttl`),
    /// or the job of an earlier tick holds the unique key (the tick is marked).
    pub(crate) async fn tick(
        &self,
        name: &str,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &Envelope,
        unique_ttl: Duration,
    ) -> Result<Ticked, QueueError> {
        let op = "enqueue a schedule's tick";
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let sql = self.sql("INSERT INTO @schema@.schedules (q, name) VALUES ($1, $2) ON CONFLICT (q, name) DO NOTHING");
        sqlx::query(&sql).bind(&*self.q).bind(name).execute(&mut *tx).await.map_err(pg(op))?;
        let sql = self.sql("SELECT paused_ms FROM @schema@.schedules WHERE q = $1 AND name = $2 FOR UPDATE");
        let paused: Option<i64> =
            sqlx::query_scalar(&sql).bind(&*self.q).bind(name).fetch_one(&mut *tx).await.map_err(pg(op))?;
        if paused.is_some() {
            return Ok(Ticked::Paused);
        }
        let sql = self.sql(
            "INSERT INTO @schema@.ticks AS t (q, name, tick_ms, expires_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (q, name, tick_ms) DO UPDATE SET expires_ms = excluded.expires_ms WHERE t.expires_ms <= $5",
        );
        let marked = sqlx::query(&sql)
            .bind(&*self.q)
            .bind(name)
            .bind(tick_ms)
            .bind(now.saturating_add(ms_of(dedupe_ttl).max(1)))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(pg(op))?;
        if marked.rows_affected() == 0 {
            return Ok(Ticked::Duplicate);
        }
        let sql = self.sql(
            "UPDATE @schema@.schedules SET last_ms = $3 WHERE q = $1 AND name = $2 \
             AND $3 > coalesce(last_ms, 0)",
        );
        sqlx::query(&sql).bind(&*self.q).bind(name).bind(tick_ms).execute(&mut *tx).await.map_err(pg(op))?;
        let ttl = unique_ttl_ms(env, unique_ttl);
        if let Some(holder) = claim_unique(&mut tx, self, env.unique.as_deref(), &env.id, ttl, now).await? {
            tx.commit().await.map_err(pg(op))?;
            return Ok(Ticked::Held(holder));
        }
        let entry = add_entry(&mut tx, self, env.lane, Some(&env.id), &encode_envelope(env), now).await?;
        let mut items = record_items(env);
        items.push(("entry", entry.clone().into_bytes()));
        transit(&mut tx, self, &env.id, "queued", now, borrowed(&items)).await?;
        tx.commit().await.map_err(pg(op))?;
        Ok(Ticked::Enqueued(entry))
    }

    /// Schedule `name`'s last tick (ms).
    pub(crate) async fn last_tick(&self, name: &str) -> Result<Option<i64>, QueueError> {
        Ok(self.schedule_states(&[name.to_owned()]).await?.pop().and_then(|s| s.last))
    }

    /// Pauses schedule `name` at `now_ms`; whether it was running.
    pub(crate) async fn pause_schedule(&self, name: &str, now_ms: u64) -> Result<bool, QueueError> {
        let sql = self.sql(
            "INSERT INTO @schema@.schedules AS s (q, name, paused_ms) VALUES ($1, $2, $3) ON CONFLICT (q, name) \
             DO UPDATE SET paused_ms = excluded.paused_ms WHERE s.paused_ms IS NULL",
        );
        let done = sqlx::query(&sql)
            .bind(&*self.q)
            .bind(name)
            .bind(crate::as_i64(now_ms))
            .execute(self.pool())
            .await
            .map_err(pg("pause a schedule"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Resumes schedule `name`, noting when; whether it was paused.
    pub(crate) async fn resume_schedule(&self, name: &str, now_ms: u64) -> Result<bool, QueueError> {
        let sql = self.sql(
            "UPDATE @schema@.schedules SET paused_ms = NULL, resumed_ms = $3 WHERE q = $1 AND name = $2 \
             AND paused_ms IS NOT NULL",
        );
        let done = sqlx::query(&sql)
            .bind(&*self.q)
            .bind(name)
            .bind(crate::as_i64(now_ms))
            .execute(self.pool())
            .await
            .map_err(pg("resume a schedule"))?;
        Ok(done.rows_affected() > 0)
    }

    /// The state of these schedules, in order.
    pub(crate) async fn schedule_states(&self, names: &[String]) -> Result<Vec<ScheduleState>, QueueError> {
        let sql = self
            .sql("SELECT name, last_ms, paused_ms, resumed_ms FROM @schema@.schedules WHERE q = $1 AND name = ANY($2)");
        let rows: Vec<ScheduleRow> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(names)
            .fetch_all(self.pool())
            .await
            .map_err(pg("read schedules"))?;
        let found: std::collections::HashMap<String, ScheduleState> = rows
            .into_iter()
            .map(|(name, last, paused, resumed)| (name, ScheduleState { last, paused, resumed }))
            .collect();
        Ok(names
            .iter()
            .map(|n| found.get(n).copied().unwrap_or(ScheduleState { last: None, paused: None, resumed: None }))
            .collect())
    }

    /// Removes schedule `name`'s state and its entry of the index; whether it was registered.
    pub(crate) async fn forget_schedule(&self, name: &str) -> Result<bool, QueueError> {
        let sql = self.sql(
            "WITH s AS (DELETE FROM @schema@.schedules WHERE q = $1 AND name = $2 RETURNING 1) \
             DELETE FROM @schema@.schedule_index WHERE q = $1 AND name = $2",
        );
        let done =
            sqlx::query(&sql).bind(&*self.q).bind(name).execute(self.pool()).await.map_err(pg("forget a schedule"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Records schedules `(name, description)` in the index.
    pub(crate) async fn register_schedules(&self, entries: &[(String, String)]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        // One row per name (the last description given), as one statement cannot write a row twice.
        let unique: std::collections::BTreeMap<&str, &str> =
            entries.iter().map(|(n, d)| (n.as_str(), d.as_str())).collect();
        let (names, descriptions): (Vec<&str>, Vec<&str>) = unique.into_iter().unzip();
        let sql = self.sql(
            "INSERT INTO @schema@.schedule_index (q, name, description) \
             SELECT $1, n, d FROM unnest($2::text[], $3::text[]) AS u(n, d) \
             ON CONFLICT (q, name) DO UPDATE SET description = excluded.description",
        );
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(names)
            .bind(descriptions)
            .execute(self.pool())
            .await
            .map_err(pg("register schedules"))?;
        Ok(())
    }

    /// The index of schedules, by name.
    pub(crate) async fn schedule_index(&self) -> Result<Vec<(String, String)>, QueueError> {
        let sql = self.sql("SELECT name, description FROM @schema@.schedule_index WHERE q = $1 ORDER BY name");
        sqlx::query_as(&sql).bind(&*self.q).fetch_all(self.pool()).await.map_err(pg("read the schedule index"))
    }
}
