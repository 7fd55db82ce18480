//! Gates at a job's start, on the queue's home: rate limits (GCRA buckets), rate-key pauses
//! and key-concurrency slots with their waiters. The buckets and keys a batch touches are
//! locked `FOR UPDATE` (in name order, so two batches cannot deadlock) for its transaction:
//! every worker of every process draws from the same rows.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgConnection;

use dual_mode_jobs::QueueError;
use dual_mode_jobs::backend::{Bucket, Gate, Passed};

use crate::{Store, as_i64, pg};

/// A wait in whole ms, rounded up (none for a moment past).
#[expect(clippy::cast_possible_truncation, reason = "clamped to 0..=2^63 first")]
fn wait_ms(ms: f64) -> i64 {
    ms.ceil().clamp(0.0, 9_223_372_036_854_774_784.0) as i64
}

/// A time in ms as a GCRA time.
#[expect(clippy::cast_precision_loss, reason = "ms since the epoch stay far below 2^53, where f64 is exact")]
fn score(ms: i64) -> f64 {
    ms as f64
}

impl Store {
    /// Passes jobs through their gates, one after another as if one by one (see the
    /// in-process store's `gate` for the algorithm, which this is a port of): GCRA
    /// reservations, and room in each bucket's window of actual starts for every start.
    pub(crate) async fn gate(&self, gates: &[Gate], lease: Duration) -> Result<Vec<Passed>, QueueError> {
        let op = "pass gates";
        let lease_ms = crate::ms_of(lease).max(1);
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let now_f = score(now);
        let (mut tats, pauses) = self.lock_gates(&mut tx, gates, now).await?;
        let mut out = Vec::with_capacity(gates.len());
        for g in gates {
            let mut start = now_f;
            if let Some(left) = g.rate_key.as_ref().and_then(|k| pauses.get(k)).filter(|left| **left > 0) {
                start += score(*left);
            }
            let slots = g.rate_key.as_deref().zip(g.slots.filter(|&k| k > 0));
            if g.reserved && start <= now_f {
                let room = self.window_room(&mut tx, &g.buckets, now).await?;
                out.push(if room > now_f {
                    Passed::Wait(Duration::from_millis(crate::as_u64(wait_ms(room - now_f))))
                } else if self.slot(&mut tx, slots, &g.job_id, lease_ms, now).await? {
                    self.started(&mut tx, &g.buckets, &g.job_id, now).await?;
                    Passed::Start
                } else {
                    Passed::NoSlot
                });
                continue;
            }
            for b in &g.buckets {
                let (tat, _) = *tats.entry(b.name.clone()).or_insert((0.0, false));
                start = start.max(tat - b.tolerance_ms);
            }
            if start <= now_f {
                let room = self.window_room(&mut tx, &g.buckets, now).await?;
                if room > now_f {
                    start = room;
                } else if !self.slot(&mut tx, slots, &g.job_id, lease_ms, now).await? {
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
                self.started(&mut tx, &g.buckets, &g.job_id, now).await?;
            }
            out.push(match wait_ms(start - now_f) {
                0 => Passed::Start,
                ms => Passed::Wait(Duration::from_millis(crate::as_u64(ms))),
            });
        }
        let dirty: Vec<(String, f64)> =
            tats.into_iter().filter(|(_, (_, dirty))| *dirty).map(|(name, (tat, _))| (name, tat)).collect();
        if !dirty.is_empty() {
            let (names, values): (Vec<String>, Vec<f64>) =
                dirty.into_iter().map(|(name, tat)| (name, (tat * 1000.0).round() / 1000.0)).unzip();
            let expires: Vec<i64> =
                values.iter().map(|tat| now.saturating_add(wait_ms(tat - now_f)).saturating_add(1000)).collect();
            let sql = self.sql(
                "UPDATE @schema@.buckets b SET tat = u.tat, expires_ms = u.expires FROM \
                 unnest($2::text[], $3::float8[], $4::int8[]) AS u(name, tat, expires) \
                 WHERE b.q = $1 AND b.name = u.name",
            );
            sqlx::query(&sql)
                .bind(&*self.q)
                .bind(names)
                .bind(values)
                .bind(expires)
                .execute(&mut *tx)
                .await
                .map_err(pg(op))?;
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(out)
    }

    /// Locks the rows of the buckets and concurrency keys that `gates` touch (in name order)
    /// and reads the buckets' times and the keys' pauses.
    async fn lock_gates(
        &self,
        tx: &mut PgConnection,
        gates: &[Gate],
        now: i64,
    ) -> Result<(HashMap<String, (f64, bool)>, HashMap<String, i64>), QueueError> {
        let op = "pass gates";
        let mut names: Vec<&str> = gates.iter().flat_map(|g| g.buckets.iter().map(|b| b.name.as_str())).collect();
        names.sort_unstable();
        names.dedup();
        let mut tats: HashMap<String, (f64, bool)> = HashMap::new();
        if !names.is_empty() {
            let sql = self.sql(
                "INSERT INTO @schema@.buckets (q, name, tat, expires_ms) SELECT $1, n, 0, 0 FROM unnest($2::text[]) n \
                 ON CONFLICT (q, name) DO NOTHING",
            );
            sqlx::query(&sql).bind(&*self.q).bind(&names).execute(&mut *tx).await.map_err(pg(op))?;
            let sql = self.sql(
                "SELECT name, CASE WHEN expires_ms > $3 THEN tat ELSE 0 END FROM @schema@.buckets \
                 WHERE q = $1 AND name = ANY($2) ORDER BY name FOR UPDATE",
            );
            let rows: Vec<(String, f64)> =
                sqlx::query_as(&sql).bind(&*self.q).bind(&names).bind(now).fetch_all(&mut *tx).await.map_err(pg(op))?;
            tats = rows.into_iter().map(|(name, tat)| (name, (tat, false))).collect();
        }
        let mut keys: Vec<&str> = gates.iter().filter_map(|g| g.rate_key.as_deref()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut pauses: HashMap<String, i64> = HashMap::new();
        if !keys.is_empty() {
            let sql = self.sql(
                "SELECT key, expires_ms - $3 FROM @schema@.rate_pauses WHERE q = $1 AND key = ANY($2) \
                 AND expires_ms > $3",
            );
            let rows: Vec<(String, i64)> =
                sqlx::query_as(&sql).bind(&*self.q).bind(&keys).bind(now).fetch_all(&mut *tx).await.map_err(pg(op))?;
            pauses = rows.into_iter().collect();
            let slot_keys: Vec<&str> = gates
                .iter()
                .filter(|g| g.slots.is_some_and(|k| k > 0))
                .filter_map(|g| g.rate_key.as_deref())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !slot_keys.is_empty() {
                let sql = self.sql(
                    "INSERT INTO @schema@.slot_keys (q, key) SELECT $1, k FROM unnest($2::text[]) k \
                     ON CONFLICT (q, key) DO NOTHING",
                );
                sqlx::query(&sql).bind(&*self.q).bind(&slot_keys).execute(&mut *tx).await.map_err(pg(op))?;
                let sql = self
                    .sql("SELECT key FROM @schema@.slot_keys WHERE q = $1 AND key = ANY($2) ORDER BY key FOR UPDATE");
                let _: Vec<(String,)> =
                    sqlx::query_as(&sql).bind(&*self.q).bind(&slot_keys).fetch_all(&mut *tx).await.map_err(pg(op))?;
            }
        }
        Ok((tats, pauses))
    }

    /// When every bucket's window of actual starts has room for one more: now, or when the
    /// oldest start of a full window leaves it. Starts that left a window are dropped. The
    /// buckets' rows are locked by the batch.
    async fn window_room(&self, con: &mut PgConnection, buckets: &[Bucket], now: i64) -> Result<f64, QueueError> {
        let op = "count a rate window";
        let now_f = score(now);
        let mut room = now_f;
        for b in buckets {
            let sql = self.sql(
                "WITH gone AS (DELETE FROM @schema@.rate_starts WHERE q = $1 AND bucket = $2 AND at_ms::float8 <= $3 \
                 RETURNING at_ms, job_id) SELECT count(*), min(at_ms) FROM @schema@.rate_starts s WHERE s.q = $1 \
                 AND s.bucket = $2 AND s.at_ms::float8 > $3",
            );
            let (count, oldest): (i64, Option<i64>) = sqlx::query_as(&sql)
                .bind(&*self.q)
                .bind(&b.name)
                .bind(now_f - b.window_ms)
                .fetch_one(&mut *con)
                .await
                .map_err(pg(op))?;
            if count >= i64::from(b.window_max)
                && let Some(oldest) = oldest
            {
                room = room.max(score(oldest) + b.window_ms);
            }
        }
        Ok(room)
    }

    /// Counts a start of job `id` now in every bucket's window.
    async fn started(&self, con: &mut PgConnection, buckets: &[Bucket], id: &str, now: i64) -> Result<(), QueueError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = buckets.iter().map(|b| b.name.as_str()).collect();
        let expires: Vec<i64> =
            buckets.iter().map(|b| now.saturating_add(wait_ms(b.window_ms)).saturating_add(1000)).collect();
        let sql = self.sql(
            "INSERT INTO @schema@.rate_starts (q, bucket, at_ms, job_id, expires_ms) \
             SELECT $1, u.bucket, $3, $4, u.expires FROM unnest($2::text[], $5::int8[]) AS u(bucket, expires) \
             ON CONFLICT (q, bucket, at_ms, job_id) DO NOTHING",
        );
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(names)
            .bind(now)
            .bind(id)
            .bind(expires)
            .execute(&mut *con)
            .await
            .map_err(pg("count a start in its rate windows"))?;
        Ok(())
    }

    /// Takes a slot of `key` (of `max` slots) for job `id` until a lease from now, or makes
    /// the job a waiter; whether it holds one. No key: no slot needed. The key's row is locked.
    async fn slot(
        &self,
        con: &mut PgConnection,
        key: Option<(&str, u32)>,
        id: &str,
        lease_ms: i64,
        now: i64,
    ) -> Result<bool, QueueError> {
        let op = "take a key's slot";
        let Some((key, max)) = key else { return Ok(true) };
        let sql = self.sql(
            "WITH gone AS (DELETE FROM @schema@.slots WHERE q = $1 AND key = $2 AND until_ms <= $4 RETURNING job_id) \
             SELECT count(*), coalesce(bool_or(job_id = $3), false) FROM @schema@.slots \
             WHERE q = $1 AND key = $2 AND until_ms > $4 AND job_id NOT IN (SELECT job_id FROM gone)",
        );
        let (held, mine): (i64, bool) = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(key)
            .bind(id)
            .bind(now)
            .fetch_one(&mut *con)
            .await
            .map_err(pg(op))?;
        if !mine && held >= i64::from(max) {
            let sql = self.sql(
                "INSERT INTO @schema@.slot_waiters (q, key, job_id, since_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (q, key, job_id) DO NOTHING",
            );
            sqlx::query(&sql).bind(&*self.q).bind(key).bind(id).bind(now).execute(&mut *con).await.map_err(pg(op))?;
            return Ok(false);
        }
        let sql = self.sql(
            "WITH w AS (DELETE FROM @schema@.slot_waiters WHERE q = $1 AND key = $2 AND job_id = $3 RETURNING 1) \
             INSERT INTO @schema@.slots (q, key, job_id, until_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (q, key, job_id) DO UPDATE SET until_ms = excluded.until_ms",
        );
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(key)
            .bind(id)
            .bind(now.saturating_add(lease_ms))
            .execute(&mut *con)
            .await
            .map_err(pg(op))?;
        Ok(true)
    }

    /// Locks `key`'s row, gives back job `id`'s slot and takes the key's oldest waiter off
    /// the waiters.
    async fn release_and_take(
        &self,
        con: &mut PgConnection,
        key: &str,
        id: &str,
    ) -> Result<Option<String>, QueueError> {
        let op = "release a key's slot";
        let sql = self.sql("SELECT key FROM @schema@.slot_keys WHERE q = $1 AND key = $2 FOR UPDATE");
        let _: Option<(String,)> =
            sqlx::query_as(&sql).bind(&*self.q).bind(key).fetch_optional(&mut *con).await.map_err(pg(op))?;
        let sql = self.sql("DELETE FROM @schema@.slots WHERE q = $1 AND key = $2 AND job_id = $3");
        sqlx::query(&sql).bind(&*self.q).bind(key).bind(id).execute(&mut *con).await.map_err(pg(op))?;
        self.take_waiter(con, key).await
    }

    /// The oldest waiter of `key`, off the waiters.
    async fn take_waiter(&self, con: &mut PgConnection, key: &str) -> Result<Option<String>, QueueError> {
        let sql = self.sql(
            "WITH first AS MATERIALIZED (SELECT job_id FROM @schema@.slot_waiters WHERE q = $1 AND key = $2 \
             ORDER BY since_ms, job_id LIMIT 1) DELETE FROM @schema@.slot_waiters w USING first \
             WHERE w.q = $1 AND w.key = $2 AND w.job_id = first.job_id RETURNING w.job_id",
        );
        sqlx::query_scalar(&sql)
            .bind(&*self.q)
            .bind(key)
            .fetch_optional(&mut *con)
            .await
            .map_err(pg("take a key's waiter"))
    }

    /// Gives back job `id`'s slot of `key` and wakes the oldest waiter that is in the delayed
    /// set (due now); waiters no longer there are dropped on the way, ten at most.
    pub(crate) async fn release_slot(&self, key: &str, id: &str) -> Result<(), QueueError> {
        let op = "release a key's slot";
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let mut next = self.release_and_take(&mut tx, key, id).await?;
        for _ in 0..10 {
            let Some(waiter) = next else { break };
            if self.set_due(&mut tx, &waiter, now).await? {
                break;
            }
            next = self.take_waiter(&mut tx, key).await?;
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(())
    }

    /// Gives back job `id`'s slot and takes the key's oldest waiter off the waiters.
    pub(crate) async fn release_slot_take(&self, key: &str, id: &str) -> Result<Option<String>, QueueError> {
        let op = "release a key's slot";
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let next = self.release_and_take(&mut tx, key, id).await?;
        tx.commit().await.map_err(pg(op))?;
        Ok(next)
    }

    /// Sets a delayed job's due time; whether it was delayed with another due time.
    async fn set_due(&self, con: &mut PgConnection, id: &str, due: i64) -> Result<bool, QueueError> {
        let sql = self.sql("UPDATE @schema@.delayed SET due_ms = $3 WHERE q = $1 AND job_id = $2 AND due_ms <> $3");
        let done = sqlx::query(&sql)
            .bind(&*self.q)
            .bind(id)
            .bind(due)
            .execute(&mut *con)
            .await
            .map_err(pg("wake a delayed job"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Makes a delayed job due at once; whether its due time changed.
    pub(crate) async fn wake(&self, id: &str) -> Result<bool, QueueError> {
        let mut con = self.pool().acquire().await.map_err(pg("wake a delayed job"))?;
        self.set_due(&mut con, id, 0).await
    }

    /// Extends the slots that running jobs `(key, id)` still hold to a lease from now.
    pub(crate) async fn renew_slots(&self, held: &[(&str, &str)], lease: Duration) -> Result<(), QueueError> {
        if held.is_empty() {
            return Ok(());
        }
        let (keys, ids): (Vec<&str>, Vec<&str>) = held.iter().copied().unzip();
        let sql = self.sql(
            "UPDATE @schema@.slots x SET until_ms = $4 FROM unnest($2::text[], $3::text[]) AS u(key, job_id) \
             WHERE x.q = $1 AND x.key = u.key AND x.job_id = u.job_id",
        );
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(keys)
            .bind(ids)
            .bind(self.now_ms().saturating_add(crate::ms_of(lease).max(1)))
            .execute(self.lease_pool())
            .await
            .map_err(pg("renew keys' slots"))?;
        Ok(())
    }

    /// Pauses a rate key for `pause`, unless a longer pause is on.
    pub(crate) async fn pause_rate_key(&self, key: &str, pause: Duration) -> Result<(), QueueError> {
        let until = self.now_ms().saturating_add(as_i64(dual_mode_jobs::backend::millis(pause)).max(1));
        let sql = self.sql(
            "INSERT INTO @schema@.rate_pauses AS p (q, key, expires_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (q, key) DO UPDATE SET expires_ms = excluded.expires_ms WHERE p.expires_ms < excluded.expires_ms",
        );
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(key)
            .bind(until)
            .execute(self.pool())
            .await
            .map_err(pg("pause a rate key"))?;
        Ok(())
    }
}
