//! The operator's reads and controls (counts, pages, parked entries, consumers, the queue's
//! pause) and the upkeep a worker's sweep does (trimming ended jobs, pruning consumers).

use dual_mode_jobs::backend::{ConsumerInfo, Entry, QueueStats, StateCounts};
use dual_mode_jobs::{Lane, QueueError, RawFields};

use crate::codec::{decode_fields, id_text, lane_no, parse_id_with, range_end};
use crate::{Store, as_i64, as_u64, pg};

/// How many expired rows one statement of a trim deletes: retention works in bounded batches.
const TRIM_BATCH: i64 = 1000;

/// How many batches of a table one trim deletes at most.
const TRIM_BATCHES: usize = 50;

/// Rows of entries as entries.
fn entries_of(rows: Vec<(i64, i64, Vec<u8>)>, op: &'static str) -> Result<Vec<Entry>, QueueError> {
    rows.into_iter().map(|(ms, seq, fields)| Ok((id_text(ms, seq), decode_fields(&fields, op)?))).collect()
}

impl Store {
    /// The queue's number of partitions: `n` when this is the first process to open it.
    pub(crate) async fn claim_partitions(&self, n: u16) -> Result<u16, QueueError> {
        let op = "read the partition count";
        let sql = self.sql(
            "INSERT INTO @schema@.queues AS x (q, partitions) VALUES ($1, $2) ON CONFLICT (q) DO UPDATE \
             SET partitions = coalesce(x.partitions, excluded.partitions) RETURNING partitions",
        );
        let known: Option<i16> = sqlx::query_scalar(&sql)
            .bind(&*self.q)
            .bind(i16::try_from(n).unwrap_or(i16::MAX))
            .fetch_one(self.pool())
            .await
            .map_err(pg(op))?;
        Ok(known.and_then(|k| u16::try_from(k).ok()).unwrap_or(n))
    }

    /// Up to `count` parked entries from `start` to `end`, oldest first.
    pub(crate) async fn parked_range(&self, start: &str, end: &str, count: usize) -> Result<Vec<Entry>, QueueError> {
        let op = "list parked";
        let (Some(lo), Some(hi)) = (range_end(start, true, op)?, range_end(end, false, op)?) else {
            return Ok(Vec::new());
        };
        let sql = self.sql(
            "SELECT ms, seq, fields FROM @schema@.parked WHERE q = $1 AND (ms, seq) >= ($2, $3) \
             AND (ms, seq) <= ($4, $5) ORDER BY ms, seq LIMIT $6",
        );
        let rows = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lo.0)
            .bind(lo.1)
            .bind(hi.0)
            .bind(hi.1)
            .bind(as_i64(count as u64))
            .fetch_all(self.pool())
            .await
            .map_err(pg(op))?;
        entries_of(rows, op)
    }

    /// Up to `count` parked entries before `before` (exclusive unless its flag says
    /// inclusive), newest first.
    pub(crate) async fn parked_newest(
        &self,
        before: Option<(&str, bool)>,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let op = "read a stream";
        let end = match before {
            Some((id, true)) => id.to_owned(),
            Some((id, false)) => format!("({id}"),
            None => "+".to_owned(),
        };
        let Some(hi) = range_end(&end, false, op)? else { return Ok(Vec::new()) };
        let sql = self.sql(
            "SELECT ms, seq, fields FROM @schema@.parked WHERE q = $1 AND (ms, seq) <= ($2, $3) \
             ORDER BY ms DESC, seq DESC LIMIT $4",
        );
        let rows = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(hi.0)
            .bind(hi.1)
            .bind(as_i64(count.max(1) as u64))
            .fetch_all(self.pool())
            .await
            .map_err(pg(op))?;
        entries_of(rows, op)
    }

    /// Counts of the lanes, their delivered entries, the delayed set and the parked list.
    pub(crate) async fn stats(&self) -> Result<QueueStats, QueueError> {
        let sql = self.sql(
            "SELECT (SELECT count(*) FROM @schema@.entries WHERE q = $1), \
             (SELECT count(*) FROM @schema@.entries WHERE q = $1 AND consumer IS NOT NULL), \
             (SELECT count(*) FROM @schema@.delayed WHERE q = $1), \
             (SELECT count(*) FROM @schema@.parked WHERE q = $1), \
             coalesce((SELECT parked_dropped FROM @schema@.queues WHERE q = $1), 0)",
        );
        let (length, pending, delayed, parked, dropped): (i64, i64, i64, i64, i64) =
            sqlx::query_as(&sql).bind(&*self.q).fetch_one(self.pool()).await.map_err(pg("read stats"))?;
        Ok(QueueStats {
            length: as_u64(length),
            pending: as_u64(pending),
            delayed: as_u64(delayed),
            parked: as_u64(parked),
            parked_dropped: as_u64(dropped),
        })
    }

    /// The sizes of the done and cancelled sets, and the queue's pause.
    pub(crate) async fn state_counts(&self) -> Result<StateCounts, QueueError> {
        let sql = self.sql(
            "SELECT (SELECT count(*) FROM @schema@.job_sets WHERE q = $1 AND state = 'done'), \
             (SELECT count(*) FROM @schema@.job_sets WHERE q = $1 AND state = 'cancelled'), \
             (SELECT paused_ms FROM @schema@.queues WHERE q = $1)",
        );
        let (done, cancelled, paused): (i64, i64, Option<i64>) =
            sqlx::query_as(&sql).bind(&*self.q).fetch_one(self.pool()).await.map_err(pg("read state counts"))?;
        Ok(StateCounts { done: as_u64(done), cancelled: as_u64(cancelled), paused_at_ms: paused.map(as_u64) })
    }

    /// How many jobs entered each of `states` in each of `buckets` windows of `width_ms` from
    /// `from_ms` (a state without a set counts none).
    pub(crate) async fn entered(
        &self,
        states: &[&str],
        from_ms: u64,
        width_ms: u64,
        buckets: usize,
    ) -> Result<Vec<Vec<u64>>, QueueError> {
        if buckets == 0 {
            return Ok(Vec::new());
        }
        let mut out = vec![vec![0; buckets]; states.len()];
        if width_ms == 0 {
            return Ok(out);
        }
        let (from, width) = (as_i64(from_ms), as_i64(width_ms));
        let to = from.saturating_add(width.saturating_mul(as_i64(buckets as u64)));
        let sql = self.sql(
            "SELECT state, (at_ms - $3) / $4, count(*) FROM @schema@.job_sets WHERE q = $1 AND state = ANY($2) \
             AND at_ms >= $3 AND at_ms < $5 GROUP BY 1, 2",
        );
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(states)
            .bind(from)
            .bind(width)
            .bind(to)
            .fetch_all(self.pool())
            .await
            .map_err(pg("count ended jobs"))?;
        for (state, bucket, n) in rows {
            let Ok(bucket) = usize::try_from(bucket) else { continue };
            for (i, _) in states.iter().enumerate().filter(|(_, s)| **s == state) {
                if let Some(slot) = out[i].get_mut(bucket) {
                    *slot = as_u64(n);
                }
            }
        }
        Ok(out)
    }

    /// Up to `count` (member, score) of set `state` (a state set, or `delayed`) after the
    /// cursor (score, member), in the set's order.
    pub(crate) async fn state_page(
        &self,
        state: &str,
        after: Option<(&str, &str)>,
        count: usize,
    ) -> Result<Vec<(String, String)>, QueueError> {
        let op = "page a set";
        let (members, scores) = match state {
            "delayed" => (
                "SELECT job_id, due_ms FROM @schema@.delayed WHERE q = $1",
                "SELECT due_ms FROM @schema@.delayed WHERE q = $1 AND job_id = $3",
            ),
            "running" | "done" | "parked" | "cancelled" => (
                "SELECT job_id, at_ms FROM @schema@.job_sets WHERE q = $1 AND state = $2",
                "SELECT at_ms FROM @schema@.job_sets WHERE q = $1 AND state = $2 AND job_id = $3",
            ),
            _ => return Ok(Vec::new()),
        };
        let (score, member) = after.unwrap_or(("0", ""));
        let limit = as_i64(count.max(1) as u64);
        let rows: Vec<(String, i64)> = if member.is_empty() {
            let sql = self.sql(&format!("{members} ORDER BY 2, 1 LIMIT $3"));
            sqlx::query_as(&sql).bind(&*self.q).bind(state).bind(limit).fetch_all(self.pool()).await.map_err(pg(op))?
        } else {
            let sql = self.sql(&format!("{scores} AND $2 = $2"));
            let current: Option<i64> = sqlx::query_scalar(&sql)
                .bind(&*self.q)
                .bind(state)
                .bind(member)
                .fetch_optional(self.pool())
                .await
                .map_err(pg(op))?;
            let at = match current {
                Some(s) if s.to_string() == score => score_f64(s),
                _ => score
                    .parse::<f64>()
                    .ok()
                    .filter(|s| !s.is_nan())
                    .ok_or_else(|| QueueError::Config(format!("page a set: {score:?} is not a score")))?,
            };
            let col = if state == "delayed" { "due_ms" } else { "at_ms" };
            let sql = self.sql(&format!(
                "{members} AND $2 = $2 AND ({col}::float8, job_id) > ($3::float8, $4) ORDER BY 2, 1 LIMIT $5"
            ));
            sqlx::query_as(&sql)
                .bind(&*self.q)
                .bind(state)
                .bind(at)
                .bind(member)
                .bind(limit)
                .fetch_all(self.pool())
                .await
                .map_err(pg(op))?
        };
        Ok(rows.into_iter().map(|(m, s)| (m, s.to_string())).collect())
    }

    /// Up to `count` of the lane's entries not yet delivered, after `after` (from it, when its
    /// flag says inclusive).
    pub(crate) async fn queued_page(
        &self,
        lane: Lane,
        after: Option<(&str, bool)>,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let op = "read a stream";
        let cursor = after.and_then(|(id, inclusive)| {
            let full = id.contains('-').then(|| parse_id_with(id, 0)).flatten()?;
            Some((full, inclusive))
        });
        let ((ms, seq), inclusive) = cursor.unwrap_or(((0, 0), false));
        let cmp = if inclusive { ">=" } else { ">" };
        let sql = self.sql(&format!(
            "SELECT ms, seq, fields FROM @schema@.entries WHERE q = $1 AND lane = $2 AND consumer IS NULL \
             AND (ms, seq) {cmp} ($3, $4) ORDER BY ms, seq LIMIT $5"
        ));
        let rows = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(ms)
            .bind(seq)
            .bind(as_i64(count.max(1) as u64))
            .fetch_all(self.pool())
            .await
            .map_err(pg(op))?;
        entries_of(rows, op)
    }

    /// One of the lane's entries by id.
    pub(crate) async fn stream_entry(&self, lane: Lane, id: &str) -> Result<Option<RawFields>, QueueError> {
        let op = "read a stream";
        let (Some(lo), Some(hi)) = (range_end(id, true, op)?, range_end(id, false, op)?) else { return Ok(None) };
        let sql = self.sql(
            "SELECT ms, seq, fields FROM @schema@.entries WHERE q = $1 AND lane = $2 AND (ms, seq) >= ($3, $4) \
             AND (ms, seq) <= ($5, $6) ORDER BY ms, seq LIMIT 1",
        );
        let rows = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(lo.0)
            .bind(lo.1)
            .bind(hi.0)
            .bind(hi.1)
            .fetch_all(self.pool())
            .await
            .map_err(pg(op))?;
        Ok(entries_of(rows, op)?.pop().map(|(_, f)| f))
    }

    /// The fields of a delayed job's next entry (none when it is not delayed).
    pub(crate) async fn delayed_fields(&self, id: &str) -> Result<RawFields, QueueError> {
        let op = "read a delayed job";
        let sql = self.sql("SELECT fields FROM @schema@.delayed WHERE q = $1 AND job_id = $2");
        let fields: Option<Vec<u8>> =
            sqlx::query_scalar(&sql).bind(&*self.q).bind(id).fetch_optional(self.pool()).await.map_err(pg(op))?;
        fields.map_or_else(|| Ok(Vec::new()), |f| decode_fields(&f, op))
    }

    /// The lane's consumers, by name.
    pub(crate) async fn consumers(&self, lane: Lane) -> Result<Vec<ConsumerInfo>, QueueError> {
        let sql = self.sql(
            "SELECT c.name, (SELECT count(*) FROM @schema@.entries e WHERE e.q = c.q AND e.lane = c.lane \
             AND e.consumer = c.name), c.seen_ms FROM @schema@.consumers c WHERE c.q = $1 AND c.lane = $2 \
             ORDER BY c.name",
        );
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .fetch_all(self.pool())
            .await
            .map_err(pg("list consumers"))?;
        let now = self.now_ms();
        Ok(rows
            .into_iter()
            .map(|(name, pending, seen)| ConsumerInfo {
                name,
                pending: as_u64(pending),
                idle_ms: as_u64(now.saturating_sub(seen)),
            })
            .collect())
    }

    /// Whether the queue is paused.
    pub(crate) async fn is_paused(&self) -> Result<bool, QueueError> {
        let sql = self.sql("SELECT paused_ms FROM @schema@.queues WHERE q = $1");
        let paused: Option<Option<i64>> =
            sqlx::query_scalar(&sql).bind(&*self.q).fetch_optional(self.pool()).await.map_err(pg("read the pause"))?;
        Ok(paused.flatten().is_some())
    }

    /// Pauses the queue at `now_ms`; whether it was running.
    pub(crate) async fn pause_queue(&self, now_ms: u64) -> Result<bool, QueueError> {
        let sql = self.sql(
            "INSERT INTO @schema@.queues AS x (q, paused_ms) VALUES ($1, $2) ON CONFLICT (q) DO UPDATE \
             SET paused_ms = excluded.paused_ms WHERE x.paused_ms IS NULL",
        );
        let done =
            sqlx::query(&sql).bind(&*self.q).bind(as_i64(now_ms)).execute(self.pool()).await.map_err(pg("pause"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Resumes the queue; whether it was paused.
    pub(crate) async fn resume_queue(&self) -> Result<bool, QueueError> {
        let sql = self.sql("UPDATE @schema@.queues SET paused_ms = NULL WHERE q = $1 AND paused_ms IS NOT NULL");
        let done = sqlx::query(&sql).bind(&*self.q).execute(self.pool()).await.map_err(pg("resume"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets ended jobs whose records expired: their places in the ended sets (how many is
    /// the answer), and, in bounded batches, their records and expired unique keys, tick marks
    /// and rate buckets.
    pub(crate) async fn trim_ended(&self) -> Result<u64, QueueError> {
        let op = "trim ended jobs";
        self.sync_clock().await?;
        let now = self.now_ms();
        let mut gone = 0;
        for state in ["done", "parked", "cancelled"] {
            gone += self.trim_state(state, now).await?;
        }
        for table in ["jobs", "uniques", "ticks", "buckets", "rate_pauses", "rate_starts"] {
            let sql = self.sql(&format!(
                "WITH expired AS MATERIALIZED (SELECT ctid FROM @schema@.{table} WHERE q = $1 AND expires_ms <= $2 \
                 LIMIT $3) DELETE FROM @schema@.{table} t USING expired WHERE t.ctid = expired.ctid AND t.expires_ms <= $2"
            ));
            // Batch after batch, each its own short statement, until one comes up short.
            for _ in 0..TRIM_BATCHES {
                let done = sqlx::query(&sql)
                    .bind(&*self.q)
                    .bind(now)
                    .bind(TRIM_BATCH)
                    .execute(self.pool())
                    .await
                    .map_err(pg(op))?;
                if done.rows_affected() < crate::as_u64(TRIM_BATCH) {
                    break;
                }
            }
        }
        Ok(gone)
    }

    /// Forgets the jobs that ended in `state` longer ago than it keeps them, and those beyond
    /// the newest it keeps, with their records (a record marked `keep` stays until it
    /// expires); how many.
    async fn trim_state(&self, state: &str, now: i64) -> Result<u64, QueueError> {
        let op = "trim ended jobs";
        let Some(keep) = self.keep(state) else { return Ok(0) };
        let mut gone = 0;
        if let Some(age) = keep.age_ms {
            let sql = self.sql("DELETE FROM @schema@.job_sets WHERE q = $1 AND state = $2 AND at_ms <= $3");
            let before = now.saturating_sub(as_i64(age));
            let done = sqlx::query(&sql).bind(&*self.q).bind(state).bind(before).execute(self.pool()).await;
            gone += done.map_err(pg(op))?.rows_affected();
        }
        if let Some(count) = keep.count.filter(|&n| n > 0) {
            let sql = self.sql(
                "WITH over AS (SELECT job_id FROM @schema@.job_sets WHERE q = $1 AND state = $2                  ORDER BY at_ms DESC, job_id DESC OFFSET $3 LIMIT $4),                  d AS (DELETE FROM @schema@.job_sets s USING over WHERE s.q = $1 AND s.state = $2                  AND s.job_id = over.job_id RETURNING s.job_id),                  r AS (DELETE FROM @schema@.jobs j USING d WHERE j.q = $1 AND j.id = d.job_id                  AND NOT j.hash ? 'keep' RETURNING 1)                  SELECT count(*) FROM d",
            );
            for _ in 0..TRIM_BATCHES {
                let n: i64 = sqlx::query_scalar(&sql)
                    .bind(&*self.q)
                    .bind(state)
                    .bind(as_i64(count))
                    .bind(TRIM_BATCH)
                    .fetch_one(self.pool())
                    .await
                    .map_err(pg(op))?;
                gone += crate::as_u64(n);
                if n < TRIM_BATCH {
                    break;
                }
            }
        }
        Ok(gone)
    }

    /// Removes the lane's consumers other than `consumer` that hold nothing and have not read
    /// for `min_idle`; how many.
    pub(crate) async fn prune_consumers(
        &self,
        lane: Lane,
        consumer: &str,
        min_idle: std::time::Duration,
    ) -> Result<u64, QueueError> {
        let sql = self.sql(
            "DELETE FROM @schema@.consumers c WHERE c.q = $1 AND c.lane = $2 AND c.name <> $3 AND c.seen_ms <= $4 \
             AND NOT EXISTS (SELECT 1 FROM @schema@.entries e WHERE e.q = c.q AND e.lane = c.lane \
             AND e.consumer = c.name)",
        );
        let done = sqlx::query(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(consumer)
            .bind(self.now_ms().saturating_sub(crate::ms_of(min_idle)))
            .execute(self.pool())
            .await
            .map_err(pg("prune consumers"))?;
        Ok(done.rows_affected())
    }

    /// Removes `consumer` from the lane unless it holds entries; whether it holds none.
    pub(crate) async fn remove_consumer_if_idle(&self, lane: Lane, consumer: &str) -> Result<bool, QueueError> {
        let op = "remove a consumer";
        let sql = self.sql(
            "WITH held AS (SELECT 1 FROM @schema@.entries WHERE q = $1 AND lane = $2 AND consumer = $3 LIMIT 1), \
             gone AS (DELETE FROM @schema@.consumers WHERE q = $1 AND lane = $2 AND name = $3 \
             AND NOT EXISTS (SELECT 1 FROM held) RETURNING 1) SELECT NOT EXISTS (SELECT 1 FROM held)",
        );
        sqlx::query_scalar(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(consumer)
            .fetch_one(self.pool())
            .await
            .map_err(pg(op))
    }
}

/// A score as a float.
#[expect(clippy::cast_precision_loss, reason = "ms since the epoch stay far below 2^53, where f64 is exact")]
fn score_f64(ms: i64) -> f64 {
    ms as f64
}
