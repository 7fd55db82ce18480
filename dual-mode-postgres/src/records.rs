//! Job records by id and by state, the ids of jobs as they end, and cancellation.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;

use dual_mode_jobs::backend::QueueStats;
use dual_mode_jobs::{CancelOutcome, JobRecord, JobState, Lane, QueueError, ReplyError};

use crate::codec::{hash_of, lane_no, parse_id};
use crate::{Store, as_i64, pg};

/// Whether a state ends a job.
pub(crate) fn is_terminal(state: &str) -> bool {
    matches!(state, "done" | "parked" | "cancelled")
}

/// The value of `name` in a hash.
fn hget<'a>(hash: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    hash.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

impl Store {
    /// Marks the record of a job that has not ended to be kept at least the queue's
    /// `keep_waited` once it ends; whether the job has a record.
    pub(crate) async fn keep_waited(&self, job_id: &str) -> Result<bool, QueueError> {
        let sql = self.sql(
            "WITH r AS (SELECT hash->>'state' AS state, (hash->>'keep')::bigint AS pin FROM @schema@.jobs              WHERE q = $1 AND id = $2 AND (expires_ms IS NULL OR expires_ms > $3) FOR UPDATE),              u AS (UPDATE @schema@.jobs j SET hash = j.hash || jsonb_build_object('keep', $4::text) FROM r              WHERE j.q = $1 AND j.id = $2 AND r.state NOT IN ('done', 'parked', 'cancelled')              AND COALESCE(r.pin, 0) < $4 RETURNING 1)              SELECT count(*) FROM r",
        );
        let found: i64 = sqlx::query_scalar(&sql)
            .bind(&*self.q)
            .bind(job_id)
            .bind(self.now_ms())
            .bind(as_i64(self.retention.waited_ms))
            .fetch_one(self.pool())
            .await
            .map_err(pg("mark a waited job"))?;
        Ok(found > 0)
    }

    /// The hashes of these jobs' live records, by id.
    async fn hashes(&self, ids: &[String]) -> Result<HashMap<String, Vec<(String, Vec<u8>)>>, QueueError> {
        let op = "read job records";
        let sql = self.sql(
            "SELECT id, hash::text FROM @schema@.jobs WHERE q = $1 AND id = ANY($2) \
             AND (expires_ms IS NULL OR expires_ms > $3)",
        );
        let rows: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(ids)
            .bind(self.now_ms())
            .fetch_all(self.pool())
            .await
            .map_err(pg(op))?;
        rows.into_iter().map(|(id, text)| Ok((id, hash_of(&text, op)?))).collect()
    }

    /// Job `id`'s record.
    pub(crate) async fn record(&self, id: &str) -> Result<Option<JobRecord>, QueueError> {
        Ok(self.records_of(&[id.to_owned()]).await?.pop().flatten())
    }

    /// The records of these jobs, in order.
    pub(crate) async fn records_of(&self, ids: &[String]) -> Result<Vec<Option<JobRecord>>, QueueError> {
        let mut hashes = self.hashes(ids).await?;
        Ok(ids.iter().map(|id| hashes.remove(id).and_then(|h| JobRecord::from_hash(id, h))).collect())
    }

    /// Up to `count` records of jobs in `state` from position `start`, and how many jobs are
    /// in that state (as the in-process store counts them).
    pub(crate) async fn records(
        &self,
        state: JobState,
        start: usize,
        count: usize,
    ) -> Result<(Vec<JobRecord>, u64), QueueError> {
        let op = "list job records";
        let window = start.saturating_add(count);
        let (ids, total, filter): (Vec<String>, u64, bool) = match state {
            JobState::Queued => {
                let mut ids: Vec<String> = Vec::new();
                let sql = self.sql(
                    "SELECT job_id FROM @schema@.entries WHERE q = $1 AND lane = $2 AND job_id IS NOT NULL \
                     ORDER BY ms, seq LIMIT $3",
                );
                for lane in Lane::ALL {
                    let want = window.saturating_mul(2).max(1).saturating_sub(ids.len());
                    if want == 0 {
                        break;
                    }
                    let got: Vec<String> = sqlx::query_scalar(&sql)
                        .bind(&*self.q)
                        .bind(lane_no(lane))
                        .bind(as_i64(want as u64))
                        .fetch_all(self.pool())
                        .await
                        .map_err(pg(op))?;
                    ids.extend(got);
                }
                let QueueStats { length, pending, .. } = self.stats().await?;
                (ids, length.saturating_sub(pending), true)
            }
            JobState::Delayed | JobState::Retrying => {
                let sql = self.sql("SELECT job_id FROM @schema@.delayed WHERE q = $1 ORDER BY due_ms, job_id LIMIT $2");
                let ids: Vec<String> = sqlx::query_scalar(&sql)
                    .bind(&*self.q)
                    .bind(as_i64(window.saturating_mul(2).saturating_add(1) as u64))
                    .fetch_all(self.pool())
                    .await
                    .map_err(pg(op))?;
                let sql = self.sql("SELECT count(*) FROM @schema@.delayed WHERE q = $1");
                let total: i64 =
                    sqlx::query_scalar(&sql).bind(&*self.q).fetch_one(self.pool()).await.map_err(pg(op))?;
                (ids, crate::as_u64(total), true)
            }
            other => {
                let sql = self.sql(
                    "SELECT job_id FROM @schema@.job_sets WHERE q = $1 AND state = $2 ORDER BY at_ms, job_id \
                     OFFSET $3 LIMIT $4",
                );
                let ids: Vec<String> = sqlx::query_scalar(&sql)
                    .bind(&*self.q)
                    .bind(other.as_str())
                    .bind(as_i64(start as u64))
                    .bind(as_i64(count as u64))
                    .fetch_all(self.pool())
                    .await
                    .map_err(pg(op))?;
                let sql = self.sql("SELECT count(*) FROM @schema@.job_sets WHERE q = $1 AND state = $2");
                let total: i64 = sqlx::query_scalar(&sql)
                    .bind(&*self.q)
                    .bind(other.as_str())
                    .fetch_one(self.pool())
                    .await
                    .map_err(pg(op))?;
                (ids, crate::as_u64(total), false)
            }
        };
        if ids.is_empty() || count == 0 {
            return Ok((Vec::new(), total));
        }
        let records = self.records_of(&ids).await?.into_iter().flatten();
        let records = if filter {
            records.filter(|r| r.state == state).skip(start).take(count).collect()
        } else {
            records.collect()
        };
        Ok((records, total))
    }

    /// The ids of the queue's jobs as they end; an empty id where a listener fell behind or
    /// the notifications' connection was lost (read the records again).
    pub(crate) async fn finished(&self) -> Result<BoxStream<'static, Arc<str>>, QueueError> {
        self.shared.hub.start().await.map_err(pg("listen for ended jobs"))?;
        let ended = self.shared.hub.finished(&self.home);
        let ids = futures_util::stream::unfold(ended, |mut ended| async move {
            match ended.recv().await {
                Ok(id) => Some((id, ended)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Arc::from(""), ended)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(ids.boxed())
    }

    /// Cancels job `id`: a queued (not yet delivered), delayed or retrying job is removed and
    /// ends `cancelled`; a running or just delivered one is flagged (its worker tells it); an
    /// ended one answers its state.
    ///
    /// Locks are taken in the order every run's write takes them (the job's entry or delayed
    /// row, then its record), so a cancellation never deadlocks with a worker; a job that moved
    /// between the look and the locks is looked at again.
    pub(crate) async fn cancel(&self, id: &str) -> Result<CancelOutcome, QueueError> {
        for _ in 0..8 {
            if let Some(outcome) = self.try_cancel(id, true).await? {
                return Ok(outcome);
            }
        }
        // A job moving faster than eight looks: take its record first, then its place.
        self.try_cancel(id, false).await.map(|outcome| outcome.unwrap_or(CancelOutcome::Unknown))
    }

    /// One try of [`Store::cancel`]; `None` when the job moved under it (only when `strict`).
    async fn try_cancel(&self, id: &str, strict: bool) -> Result<Option<CancelOutcome>, QueueError> {
        let op = "cancel";
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let read = self.sql(
            "SELECT hash::text FROM @schema@.jobs WHERE q = $1 AND id = $2 \
             AND (expires_ms IS NULL OR expires_ms > $3)",
        );
        let read_locked = format!("{read} FOR UPDATE");
        let first: Option<String> = sqlx::query_scalar(if strict { &read } else { &read_locked })
            .bind(&*self.q)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg(op))?;
        let Some(first) = first else { return Ok(Some(CancelOutcome::Unknown)) };
        if strict {
            let seen = hash_of(&first, op)?;
            self.lock_place(&mut tx, id, &seen, op).await?;
            let again: Option<String> = sqlx::query_scalar(&read_locked)
                .bind(&*self.q)
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg(op))?;
            let moved = again
                .as_deref()
                .map(|t| hash_of(t, op))
                .transpose()?
                .is_none_or(|now_hash| ["state", "entry"].iter().any(|f| hget(&now_hash, f) != hget(&seen, f)));
            if moved {
                return Ok(None);
            }
        }
        let hash = hash_of(&first, op)?;
        let Some(state) = hget(&hash, "state").map(|s| String::from_utf8_lossy(s).into_owned()) else {
            return Ok(Some(CancelOutcome::Unknown));
        };
        let unique = hget(&hash, "unique").map(|u| String::from_utf8_lossy(u).into_owned());
        if is_terminal(&state) {
            return match state.parse::<JobState>() {
                Ok(state) => Ok(Some(CancelOutcome::AlreadyEnded(state))),
                Err(_) => Err(QueueError::protocol(op, ReplyError::UnknownAnswer(state))),
            };
        }
        let flag = self.sql("UPDATE @schema@.jobs SET hash = hash || '{\"cancel\": \"1\"}' WHERE q = $1 AND id = $2");
        let mut flagged = state == "running";
        if state == "queued" {
            let entry =
                hget(&hash, "entry").and_then(|e| std::str::from_utf8(e).ok()).and_then(|e| parse_id(e, op).ok());
            let lane = crate::codec::lane_of(hget(&hash, "lane"));
            if let Some((ms, seq)) = entry {
                let sql = self.sql(
                    "SELECT consumer FROM @schema@.entries WHERE q = $1 AND lane = $2 AND ms = $3 AND seq = $4 \
                     FOR UPDATE",
                );
                let holder: Option<Option<String>> = sqlx::query_scalar(&sql)
                    .bind(&*self.q)
                    .bind(lane_no(lane))
                    .bind(ms)
                    .bind(seq)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(pg(op))?;
                match holder {
                    // Delivered, not started yet: the worker's start sees the flag.
                    Some(Some(_)) => flagged = true,
                    Some(None) => {
                        let sql = self
                            .sql("DELETE FROM @schema@.entries WHERE q = $1 AND lane = $2 AND ms = $3 AND seq = $4");
                        sqlx::query(&sql)
                            .bind(&*self.q)
                            .bind(lane_no(lane))
                            .bind(ms)
                            .bind(seq)
                            .execute(&mut *tx)
                            .await
                            .map_err(pg(op))?;
                    }
                    None => {}
                }
            }
        } else if state != "running" {
            let sql = self.sql("DELETE FROM @schema@.delayed WHERE q = $1 AND job_id = $2");
            sqlx::query(&sql).bind(&*self.q).bind(id).execute(&mut *tx).await.map_err(pg(op))?;
        }
        if flagged {
            sqlx::query(&flag).bind(&*self.q).bind(id).execute(&mut *tx).await.map_err(pg(op))?;
            tx.commit().await.map_err(pg(op))?;
            return Ok(Some(CancelOutcome::Requested));
        }
        let finished = now.to_string();
        let items = [("finished", finished.as_bytes()), ("cancel", b"1".as_slice())];
        self.finish(&mut tx, (id, unique.as_deref()), "cancelled", now, items).await?;
        tx.commit().await.map_err(pg(op))?;
        Ok(Some(CancelOutcome::Removed))
    }

    /// Locks the row where job `id` waits as its record `hash` says: its entry when queued, its
    /// delayed row when delayed or retrying.
    async fn lock_place(
        &self,
        con: &mut sqlx::PgConnection,
        id: &str,
        hash: &[(String, Vec<u8>)],
        op: &'static str,
    ) -> Result<(), QueueError> {
        match hget(hash, "state") {
            Some(b"queued") => {
                let entry =
                    hget(hash, "entry").and_then(|e| std::str::from_utf8(e).ok()).and_then(|e| parse_id(e, op).ok());
                let Some((ms, seq)) = entry else { return Ok(()) };
                let lane = crate::codec::lane_of(hget(hash, "lane"));
                let sql = self.sql(
                    "SELECT 1 FROM @schema@.entries WHERE q = $1 AND lane = $2 AND ms = $3 AND seq = $4 FOR UPDATE",
                );
                sqlx::query(&sql)
                    .bind(&*self.q)
                    .bind(lane_no(lane))
                    .bind(ms)
                    .bind(seq)
                    .fetch_optional(&mut *con)
                    .await
                    .map_err(pg(op))?;
            }
            Some(b"delayed" | b"retrying") => {
                let sql = self.sql("SELECT 1 FROM @schema@.delayed WHERE q = $1 AND job_id = $2 FOR UPDATE");
                sqlx::query(&sql).bind(&*self.q).bind(id).fetch_optional(&mut *con).await.map_err(pg(op))?;
            }
            _ => {}
        }
        Ok(())
    }
}
