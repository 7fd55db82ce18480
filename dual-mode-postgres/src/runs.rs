//! Runs and leases: reads of ready entries (`FOR UPDATE SKIP LOCKED`), the wait for more,
//! claims of expired leases, a consumer's own entries, marks, renewals, acknowledgements and
//! the other ends of a run. Every write for a run is fenced: it happens only while the run's
//! consumer holds the entry with the run's token, checked on the entry's row locked
//! `FOR UPDATE` (or deleted only where the consumer and token match).
//!
//! The drain's path is one statement per step, each its own transaction: a read (pause check,
//! the consumer's mark and the takes of its lanes) and an acknowledgement of a batch (the
//! entries deleted, the records written, the news sent) are one round trip each.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgConnection;

use dual_mode_jobs::backend::{
    Answer, Claimed, DoneRun, Ending, Entry, MarkRun, Marked, Passed, Read, Reader, Renewed, RunRef, Written,
};
use dual_mode_jobs::{Lane, QueueError};

use crate::codec::{self, decode_fields, encode_envelope, hash_json, id_text, lane_no, parse_id};
use crate::push::{put_delayed, release_unique, transit, transit_many};
use crate::{Store, as_i64, pg};

/// The longest a reader's wait goes without reading again, whatever its block time: what a
/// lost notification costs at most.
pub(crate) const POLL_FLOOR: Duration = Duration::from_secs(1);

/// How long a read that follows one that took fewer entries than asked waits, from that one,
/// and how long a few acknowledgements wait for more: every write is a commit that waits for
/// the WAL's flush, and one commit of several jobs costs little more than one of one.
pub(crate) const GATHER: Duration = Duration::from_millis(2);

/// An acknowledgement, in one statement, around `$writes` (the record writes: CTEs over `u`,
/// each followed by a comma; Postgres runs a writing CTE whether or not it is read): deletes the
/// entries of lane `$2` that consumer `$6` holds with the runs' tokens (`$3`, `$4`, `$5`: ms,
/// seq, token); for the jobs of those taken (`u`; `$7`: ids, empty for an entry without one;
/// `$8`: their done records' items; `$9`: their unique keys; a job named twice in a batch
/// once, from its last run) takes the job out of the running set, tells `$12` (payload `$13`
/// and the ids, space-separated, 64 at most per notification) of those whose record is marked
/// `keep` (`m`, which each variant's writes define: a waiter marks the record before it reads
/// it, so a job no one waits for costs no notification, and every transaction that notifies
/// takes the database's notification lock at its commit) and releases the unique key. The
/// ids of the entries taken.
macro_rules! ack {
    ($writes:literal) => {
        concat!(
            "WITH t AS (DELETE FROM @schema@.entries e \
             USING unnest($3::int8[], $4::int8[], $5::int8[]) AS u(ms, seq, token) \
             WHERE e.q = $1 AND e.lane = $2 AND e.ms = ANY($3) AND e.seq = ANY($4) AND e.ms = u.ms \
             AND e.seq = u.seq AND e.consumer = $6 AND e.deliveries = u.token RETURNING e.ms, e.seq), \
             u AS (SELECT DISTINCT ON (r.id) r.id, r.hash, r.key \
             FROM unnest($3::int8[], $4::int8[], $7::text[], $8::text[], $9::text[]) \
             WITH ORDINALITY AS r(ms, seq, id, hash, key, i) \
             JOIN t ON t.ms = r.ms AND t.seq = r.seq WHERE r.id <> '' ORDER BY r.id, r.i DESC), ",
            $writes,
            " r AS (DELETE FROM @schema@.job_sets WHERE q = $1 AND state = 'running' \
             AND job_id IN (SELECT id FROM u) RETURNING 1), \
             n AS (SELECT pg_notify($12, $13 || string_agg(b.id, ' ')) \
             FROM (SELECT m.id, (row_number() OVER ()) / 64 AS chunk FROM m) b GROUP BY b.chunk), \
             k AS (DELETE FROM @schema@.uniques x USING u WHERE x.q = $1 AND x.key = u.key AND x.job_id = u.id) \
             SELECT t.ms, t.seq FROM t, (SELECT count(*) FROM n) cn"
        )
    };
}

/// [`ack!`] that writes each done record (kept until `$10`, null for no time limit; a record
/// marked `keep` at least that long past `$11`) and puts the job in the done set at `$11`.
const ACK: &str = ack!(
    "w AS (INSERT INTO @schema@.jobs AS j (q, id, hash, expires_ms) SELECT $1, u.id, u.hash::jsonb, $10 \
     FROM u ON CONFLICT (q, id) DO UPDATE SET hash = CASE WHEN j.expires_ms <= $11 THEN excluded.hash \
     ELSE j.hash || excluded.hash END, expires_ms = CASE WHEN j.hash ? 'keep' AND $10 IS NOT NULL \
     THEN GREATEST($10, $11 + (j.hash->>'keep')::bigint) ELSE excluded.expires_ms END \
     RETURNING j.id, j.hash ? 'keep' AS marked), m AS (SELECT id FROM w WHERE marked), \
     d AS (INSERT INTO @schema@.job_sets (q, state, job_id, at_ms) SELECT $1, 'done', u.id, $11 FROM u \
     ON CONFLICT (q, state, job_id) DO UPDATE SET at_ms = excluded.at_ms RETURNING 1),"
);

/// [`ack!`] in a queue that keeps no done jobs: a record is deleted rather than written,
/// unless a waiter or its push marked it `keep` (then it is written and lives that long past
/// `$11`, at least until `$10`, out of the set of done jobs).
const ACK_NOT_KEPT: &str = ack!(
    "g AS (DELETE FROM @schema@.jobs j USING u WHERE j.q = $1 AND j.id = u.id \
     AND NOT (j.hash ? 'keep' AND (j.expires_ms IS NULL OR j.expires_ms > $11)) RETURNING 1), \
     w AS (UPDATE @schema@.jobs j SET hash = j.hash || u.hash::jsonb, \
     expires_ms = GREATEST(COALESCE($10, 0), $11 + (j.hash->>'keep')::bigint) FROM u \
     WHERE j.q = $1 AND j.id = u.id AND j.hash ? 'keep' AND (j.expires_ms IS NULL OR j.expires_ms > $11) \
     RETURNING j.id), m AS (SELECT id FROM w),"
);

/// Who holds an entry, as a fenced write sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The consumer asking, with the same token.
    Owned,
    /// Another consumer, or a later delivery.
    Other,
    /// No one: acknowledged, or never delivered.
    Gone,
}

/// Entry ids as two arrays, for `ms = ANY($a) AND seq = ANY($b)`: every `seq` comes from one
/// sequence, so no row matches but those named (and the primary key's index finds them).
fn id_arrays(ids: &[(i64, i64)]) -> (Vec<i64>, Vec<i64>) {
    ids.iter().copied().unzip()
}

impl Store {
    /// Notes that `consumer` read or claimed in `lanes` at `now`.
    pub(crate) async fn seen(
        &self,
        con: &mut PgConnection,
        lanes: &[Lane],
        consumer: &str,
        now: i64,
    ) -> Result<(), QueueError> {
        if lanes.is_empty() {
            return Ok(());
        }
        let sql = self.sql(
            "INSERT INTO @schema@.consumers (q, lane, name, seen_ms) SELECT $1, l, $3, $4 FROM unnest($2::int2[]) l \
             ON CONFLICT (q, lane, name) DO UPDATE SET seen_ms = excluded.seen_ms",
        );
        let lanes: Vec<i16> = lanes.iter().map(|l| lane_no(*l)).collect();
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(lanes)
            .bind(consumer)
            .bind(now)
            .execute(&mut *con)
            .await
            .map_err(pg("note a consumer"))?;
        Ok(())
    }

    /// Who holds each of these entries of `lane` for `consumer` with `token`, the rows locked
    /// until the transaction ends.
    async fn holders(
        &self,
        con: &mut PgConnection,
        lane: Lane,
        consumer: &str,
        runs: &[((i64, i64), u64)],
        op: &'static str,
    ) -> Result<Vec<Holder>, QueueError> {
        let ids: Vec<(i64, i64)> = runs.iter().map(|(id, _)| *id).collect();
        let (ms, seq) = id_arrays(&ids);
        let sql = self.sql(
            "SELECT ms, seq, consumer, deliveries FROM @schema@.entries WHERE q = $1 AND lane = $2 \
             AND ms = ANY($3) AND seq = ANY($4) ORDER BY ms, seq FOR UPDATE",
        );
        let rows: Vec<(i64, i64, Option<String>, i64)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(ms)
            .bind(seq)
            .fetch_all(&mut *con)
            .await
            .map_err(pg(op))?;
        let found: HashMap<(i64, i64), (Option<String>, i64)> =
            rows.into_iter().map(|(ms, seq, c, d)| ((ms, seq), (c, d))).collect();
        Ok(runs
            .iter()
            .map(|(id, token)| match found.get(id) {
                None | Some((None, _)) => Holder::Gone,
                Some((Some(c), d)) if c != consumer || *d != as_i64(*token) => Holder::Other,
                Some(_) => Holder::Owned,
            })
            .collect())
    }

    /// Fields of job records that are alive at `now`, by job id.
    async fn record_fields(
        &self,
        con: &mut PgConnection,
        ids: &[&str],
        names: &[&str],
        now: i64,
        op: &'static str,
    ) -> Result<HashMap<String, Vec<Option<String>>>, QueueError> {
        let sql = self.sql(
            "SELECT id, array(SELECT hash->>n FROM unnest($3::text[]) n) FROM @schema@.jobs \
             WHERE q = $1 AND id = ANY($2) AND (expires_ms IS NULL OR expires_ms > $4)",
        );
        let rows: Vec<(String, Vec<Option<String>>)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(ids)
            .bind(names)
            .bind(now)
            .fetch_all(&mut *con)
            .await
            .map_err(pg(op))?;
        Ok(rows.into_iter().collect())
    }

    /// Claims up to `count` of the lane's entries idle for `min_idle` ms or more, scanning
    /// from `cursor` a page of four times `count`, never `consumer`'s own.
    pub(crate) async fn claim(
        &self,
        lane: Lane,
        consumer: &str,
        min_idle: u64,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<Claimed>), QueueError> {
        let op = "claim expired leases";
        let (cms, cseq) = parse_id(cursor, op)?;
        let page = count.saturating_mul(4);
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let idle_before = now.saturating_sub(as_i64(min_idle));
        let sql = self.sql(
            "SELECT ms, seq, consumer FROM @schema@.entries WHERE q = $1 AND lane = $2 AND consumer IS NOT NULL \
             AND (ms, seq) > ($3, $4) AND delivered_ms <= $5 ORDER BY ms, seq LIMIT $6",
        );
        let idle: Vec<(i64, i64, String)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(cms)
            .bind(cseq)
            .bind(idle_before)
            .bind(as_i64(page as u64))
            .fetch_all(&mut *tx)
            .await
            .map_err(pg(op))?;
        let mut ids = Vec::new();
        let (mut last, mut scanned) = (None, 0usize);
        for (ms, seq, owner) in idle {
            scanned += 1;
            last = Some((ms, seq));
            if owner != consumer {
                ids.push((ms, seq));
            }
            if ids.len() >= count {
                break;
            }
        }
        let next = match last {
            Some((ms, seq)) if ids.len() >= count || scanned >= page => id_text(ms, seq),
            _ => "0-0".to_owned(),
        };
        self.seen(&mut tx, &[lane], consumer, now).await?;
        let claimed = if ids.is_empty() {
            Vec::new()
        } else {
            let (ms, seq) = id_arrays(&ids);
            let sql = self.sql(
                "UPDATE @schema@.entries SET consumer = $5, delivered_ms = $6, deliveries = deliveries + 1 \
                 WHERE q = $1 AND lane = $2 AND ms = ANY($3) AND seq = ANY($4) AND consumer IS NOT NULL \
                 AND delivered_ms <= $7 RETURNING ms, seq, fields, deliveries",
            );
            let rows: Vec<(i64, i64, Vec<u8>, i64)> = sqlx::query_as(&sql)
                .bind(&*self.q)
                .bind(lane_no(lane))
                .bind(ms)
                .bind(seq)
                .bind(consumer)
                .bind(now)
                .bind(idle_before)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg(op))?;
            claimed_of(rows, op)?
        };
        tx.commit().await.map_err(pg(op))?;
        Ok((next, claimed))
    }

    /// `consumer`'s entries of the lane idle for `min_idle` or more, up to `count`.
    pub(crate) async fn own_pending(
        &self,
        lane: Lane,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<String>, QueueError> {
        let op = "list own entries";
        let sql = self.sql(
            "SELECT ms, seq FROM @schema@.entries WHERE q = $1 AND lane = $2 AND consumer = $3 \
             AND delivered_ms <= $4 ORDER BY ms, seq LIMIT $5",
        );
        let rows: Vec<(i64, i64)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(consumer)
            .bind(self.now_ms().saturating_sub(crate::ms_of(min_idle)))
            .bind(as_i64(count as u64))
            .fetch_all(self.pool())
            .await
            .map_err(pg(op))?;
        Ok(rows.into_iter().map(|(ms, seq)| id_text(ms, seq)).collect())
    }

    /// Claims these of `consumer`'s own entries again, raising their tokens; those it held.
    pub(crate) async fn reclaim(&self, lane: Lane, consumer: &str, ids: &[String]) -> Result<Vec<Claimed>, QueueError> {
        let op = "reclaim own entries";
        let ids = ids.iter().map(|id| parse_id(id, op)).collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        self.seen(&mut tx, &[lane], consumer, now).await?;
        let (ms, seq) = id_arrays(&ids);
        let sql = self.sql(
            "UPDATE @schema@.entries SET delivered_ms = $6, deliveries = deliveries + 1 \
             WHERE q = $1 AND lane = $2 AND ms = ANY($3) AND seq = ANY($4) AND consumer = $5 \
             RETURNING ms, seq, fields, deliveries",
        );
        let rows: Vec<(i64, i64, Vec<u8>, i64)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(ms)
            .bind(seq)
            .bind(consumer)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(pg(op))?;
        let claimed = claimed_of(rows, op)?;
        tx.commit().await.map_err(pg(op))?;
        Ok(claimed)
    }

    /// Marks runs as running: those `consumer` still owns, unless a cancellation was asked. On
    /// the leases' own connections: the worker marks and renews in one loop.
    pub(crate) async fn mark(&self, lane: Lane, consumer: &str, runs: &[MarkRun]) -> Result<Vec<Marked>, QueueError> {
        let op = "mark runs";
        let keyed =
            runs.iter().map(|r| Ok((parse_id(&r.entry_id, op)?, r.token))).collect::<Result<Vec<_>, QueueError>>()?;
        let mut tx = self.lease_pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let holders = self.holders(&mut tx, lane, consumer, &keyed, op).await?;
        let ids: Vec<&str> = runs.iter().map(|r| r.job_id.as_str()).collect();
        let fields = self.record_fields(&mut tx, &ids, &["state", "cancel"], now, op).await?;
        let mut out = Vec::with_capacity(runs.len());
        let mut running = Vec::new();
        for (r, holder) in runs.iter().zip(holders) {
            if holder != Holder::Owned {
                out.push(Marked::NotOwned);
                continue;
            }
            let f = fields.get(&r.job_id);
            let field = |i: usize| f.and_then(|f| f.get(i)).and_then(Option::as_deref);
            if field(0) == Some("cancelled") || field(1) == Some("1") {
                out.push(Marked::CancelRequested);
                continue;
            }
            let (started, attempt) = (r.started_ms.to_string(), r.attempt.to_string());
            let items = [
                ("started", started.as_bytes()),
                ("worker", consumer.as_bytes()),
                ("attempt", attempt.as_bytes()),
                ("entry", r.entry_id.as_bytes()),
            ];
            running.push((r.job_id.as_str(), hash_json(items)));
            out.push(Marked::Yes);
        }
        transit_many(&mut tx, self, "running", now, &running).await?;
        tx.commit().await.map_err(pg(op))?;
        Ok(out)
    }

    /// Renews the leases of the runs `consumer` still owns (their idle time reset, their
    /// tokens kept); per run what was answered. On the leases' own connections.
    pub(crate) async fn renew(
        &self,
        lane: Lane,
        consumer: &str,
        runs: &[(&str, u64, &str)],
    ) -> Result<Vec<Renewed>, QueueError> {
        let op = "renew leases";
        let keyed = runs.iter().map(|(e, t, _)| Ok((parse_id(e, op)?, *t))).collect::<Result<Vec<_>, QueueError>>()?;
        let mut tx = self.lease_pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let holders = self.holders(&mut tx, lane, consumer, &keyed, op).await?;
        let jobs: Vec<&str> = runs.iter().map(|(_, _, j)| *j).collect();
        let fields = self.record_fields(&mut tx, &jobs, &["cancel"], now, op).await?;
        let mut owned = Vec::new();
        let mut out = Vec::with_capacity(runs.len());
        for (((_, _, job), holder), (id, _)) in runs.iter().zip(holders).zip(&keyed) {
            if holder == Holder::Owned {
                owned.push(*id);
                let cancel = fields.get(*job).and_then(|f| f.first()).and_then(Option::as_deref) == Some("1");
                out.push(if cancel { Renewed::CancelRequested } else { Renewed::Yes });
            } else {
                out.push(Renewed::Lost);
            }
        }
        if !owned.is_empty() {
            let (ms, seq) = id_arrays(&owned);
            let sql = self.sql(
                "UPDATE @schema@.entries SET delivered_ms = $5 WHERE q = $1 AND lane = $2 \
                 AND ms = ANY($3) AND seq = ANY($4)",
            );
            sqlx::query(&sql)
                .bind(&*self.q)
                .bind(lane_no(lane))
                .bind(ms)
                .bind(seq)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(pg(op))?;
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(out)
    }

    /// What a run that no longer holds its entry is told: [`Written::Landed`] when its record
    /// shows that this consumer already wrote `state` for this entry, else who holds it.
    async fn refused(
        &self,
        con: &mut PgConnection,
        (job_id, consumer, entry): (&str, &str, &str),
        state: &str,
        who: Holder,
        now: i64,
        op: &'static str,
    ) -> Result<Written, QueueError> {
        let fields = self.record_fields(con, &[job_id], &["state", "worker", "entry"], now, op).await?;
        let landed = fields.get(job_id).is_some_and(|f| {
            f.first().and_then(Option::as_deref) == Some(state)
                && f.get(1).and_then(Option::as_deref) == Some(consumer)
                && f.get(2).and_then(Option::as_deref) == Some(entry)
        });
        Ok(match who {
            _ if landed => Written::Landed,
            Holder::Gone => Written::Gone,
            _ => Written::Other,
        })
    }

    /// Deletes entries of `lane` (acknowledged).
    async fn delete_entries(
        &self,
        con: &mut PgConnection,
        lane: Lane,
        ids: &[(i64, i64)],
        op: &'static str,
    ) -> Result<(), QueueError> {
        let (ms, seq) = id_arrays(ids);
        let sql =
            self.sql("DELETE FROM @schema@.entries WHERE q = $1 AND lane = $2 AND ms = ANY($3) AND seq = ANY($4)");
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(ms)
            .bind(seq)
            .execute(&mut *con)
            .await
            .map_err(pg(op))?;
        Ok(())
    }

    /// Tells listeners that job `id` ended (at commit).
    pub(crate) async fn announce_end(&self, con: &mut PgConnection, id: &str) -> Result<(), QueueError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(self.ended_channel())
            .bind(format!("{}\n{id}", self.home))
            .execute(&mut *con)
            .await
            .map_err(pg("announce an ended job"))?;
        Ok(())
    }

    /// The end of a job: its record to `state`, its unique key released, and the news.
    pub(crate) async fn finish<'a>(
        &self,
        con: &mut PgConnection,
        (id, unique): (&str, Option<&str>),
        state: &str,
        now: i64,
        items: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), QueueError> {
        transit(con, self, id, state, now, items).await?;
        self.retire(con, state, &[id], now).await?;
        release_unique(con, self, unique, id).await?;
        self.announce_end(con, id).await
    }

    /// Keeps the records of jobs `ids`, which just ended in `state`, as the queue's retention
    /// says: deleted (and out of the state's set) when the state keeps none, else living the
    /// state's time; a record marked `keep` (by a waiter, or its push) lives at least that
    /// long, and when the state keeps none, it stays out of the set. The state's count is
    /// held by the sweep ([`trim_ended`](Self::trim_ended)).
    pub(crate) async fn retire(
        &self,
        con: &mut PgConnection,
        state: &str,
        ids: &[&str],
        now: i64,
    ) -> Result<(), QueueError> {
        let Some(keep) = self.keep(state) else { return Ok(()) };
        let sql = self.sql(
            "WITH ended AS (SELECT id, (hash->>'keep')::bigint AS pin FROM @schema@.jobs              WHERE q = $1 AND id = ANY($2) FOR UPDATE),              gone AS (DELETE FROM @schema@.jobs j USING ended e WHERE $5 = 0 AND e.pin IS NULL              AND j.q = $1 AND j.id = e.id RETURNING 1),              unlisted AS (DELETE FROM @schema@.job_sets WHERE $5 = 0 AND q = $1 AND state = $3              AND job_id = ANY($2) RETURNING 1),              timed AS (UPDATE @schema@.jobs j SET expires_ms = CASE              WHEN e.pin IS NOT NULL AND $4 >= 0 THEN $6 + GREATEST(e.pin, $4)              WHEN e.pin IS NOT NULL AND $5 >= 0 THEN $6 + e.pin              WHEN $4 >= 0 THEN $6 + $4 END              FROM ended e WHERE NOT ($5 = 0 AND e.pin IS NULL) AND j.q = $1 AND j.id = e.id RETURNING 1)              SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM unlisted) + (SELECT count(*) FROM timed)",
        );
        sqlx::query(&sql)
            .bind(&*self.q)
            .bind(ids)
            .bind(state)
            .bind(keep.age_ms.map_or(-1, as_i64))
            .bind(keep.count.map_or(-1, as_i64))
            .bind(now)
            .execute(&mut *con)
            .await
            .map_err(pg("keep ended jobs' records"))?;
        Ok(())
    }

    /// Acknowledges and deletes the entries of the runs `consumer` still owns and records
    /// them `done` with their results, releasing their unique keys: one statement, [`ACK`], so
    /// a batch costs one round trip. Only the runs whose entries it did not take are looked at
    /// again, to tell each who holds its entry.
    pub(crate) async fn ack(&self, lane: Lane, consumer: &str, runs: &[DoneRun]) -> Result<Vec<Written>, QueueError> {
        let op = "acknowledge";
        let keyed =
            runs.iter().map(|r| Ok((parse_id(&r.entry_id, op)?, r.token))).collect::<Result<Vec<_>, QueueError>>()?;
        let now = self.now_ms();
        let text = now.to_string();
        let hashes: Vec<String> = runs
            .iter()
            .map(|r| {
                if r.job_id.is_empty() {
                    return String::new();
                }
                let (started, attempt) = (r.started_ms.to_string(), r.attempt.to_string());
                hash_json([
                    ("state", b"done".as_slice()),
                    ("updated", text.as_bytes()),
                    ("finished", text.as_bytes()),
                    ("result", r.result.as_slice()),
                    ("started", started.as_bytes()),
                    ("attempt", attempt.as_bytes()),
                    ("worker", consumer.as_bytes()),
                    ("entry", r.entry_id.as_bytes()),
                ])
            })
            .collect();
        let ids: Vec<(i64, i64)> = keyed.iter().map(|(id, _)| *id).collect();
        let (ms, seq) = id_arrays(&ids);
        let tokens: Vec<i64> = keyed.iter().map(|(_, t)| as_i64(*t)).collect();
        let jobs: Vec<&str> = runs.iter().map(|r| r.job_id.as_str()).collect();
        let uniques: Vec<Option<&str>> = runs.iter().map(|r| r.unique.as_deref()).collect();
        let not_kept = self.retention.done.count == Some(0);
        let sql = self.sql(if not_kept { ACK_NOT_KEPT } else { ACK });
        let write = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(lane_no(lane))
            .bind(ms)
            .bind(seq)
            .bind(tokens)
            .bind(consumer)
            .bind(jobs)
            .bind(hashes)
            .bind(uniques)
            .bind(self.age_ms("done").map(|age| now.saturating_add(age)))
            .bind(now)
            .bind(self.ended_channel())
            .bind(format!("{}\n", self.home));
        // Kept for a time (the default), or not at all: written or deleted by the statement, a
        // waiter's mark included. Kept by count: retired in the same transaction.
        let taken: std::collections::HashSet<(i64, i64)> = if self.retention.done.count.is_some() && !not_kept {
            let mut tx = self.pool().begin().await.map_err(pg(op))?;
            let taken: std::collections::HashSet<(i64, i64)> =
                write.fetch_all(&mut *tx).await.map_err(pg(op))?.into_iter().collect();
            let mut done: Vec<&str> = runs
                .iter()
                .zip(&keyed)
                .filter(|(r, (id, _))| !r.job_id.is_empty() && taken.contains(id))
                .map(|(r, _)| r.job_id.as_str())
                .collect();
            done.sort_unstable();
            done.dedup();
            self.retire(&mut tx, "done", &done, now).await?;
            tx.commit().await.map_err(pg(op))?;
            taken
        } else {
            write.fetch_all(self.pool()).await.map_err(pg(op))?.into_iter().collect()
        };
        let others: Vec<((i64, i64), u64)> = keyed.iter().filter(|(id, _)| !taken.contains(id)).copied().collect();
        if others.is_empty() {
            return Ok(vec![Written::Done; runs.len()]);
        }
        // Not taken: another consumer or token holds it, or no one does.
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let mut holders = self.holders(&mut tx, lane, consumer, &others, op).await?.into_iter();
        let mut out = Vec::with_capacity(runs.len());
        for (r, (id, _)) in runs.iter().zip(&keyed) {
            if taken.contains(id) {
                out.push(Written::Done);
            } else {
                let holder = match holders.next() {
                    Some(Holder::Owned) | None => Holder::Other,
                    Some(other) => other,
                };
                let who = (r.job_id.as_str(), consumer, r.entry_id.as_str());
                out.push(self.refused(&mut tx, who, "done", holder, now, op).await?);
            }
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(out)
    }

    /// Ends a run without success: later (back to the delayed set as `next`), parked (to the
    /// parked list, capped) or cancelled, with `record` items for its record.
    pub(crate) async fn end(
        &self,
        lane: Lane,
        consumer: &str,
        run: &RunRef<'_>,
        ending: &Ending<'_>,
        record: &[(&str, Vec<u8>)],
    ) -> Result<Written, QueueError> {
        let op = "end a run";
        let (id, unique) = run.job.unwrap_or(("", None));
        let state = match ending {
            Ending::Later { retry: true, .. } => "retrying",
            Ending::Later { retry: false, .. } => "delayed",
            Ending::Parked { .. } => "parked",
            Ending::Cancelled => "cancelled",
        };
        let entry = parse_id(run.entry_id, op)?;
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let who = self
            .holders(&mut tx, lane, consumer, &[(entry, run.token)], op)
            .await?
            .first()
            .copied()
            .unwrap_or(Holder::Gone);
        if who != Holder::Owned {
            let answer = if id.is_empty() {
                if who == Holder::Gone { Written::Gone } else { Written::Other }
            } else {
                self.refused(&mut tx, (id, consumer, run.entry_id), state, who, now, op).await?
            };
            tx.commit().await.map_err(pg(op))?;
            return Ok(answer);
        }
        let mut items: Vec<(&str, Vec<u8>)> = record.to_vec();
        match ending {
            Ending::Parked { fields } => {
                self.park(
                    &mut tx,
                    &codec::encode_fields(fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
                    now,
                )
                .await?;
            }
            Ending::Later { delay, next, .. } => {
                let due = now.saturating_add(crate::ms_of(*delay));
                put_delayed(&mut tx, self, id, due, &encode_envelope(next)).await?;
                items.push(("due", due.to_string().into_bytes()));
            }
            Ending::Cancelled => {}
        }
        self.delete_entries(&mut tx, lane, &[entry], op).await?;
        if !id.is_empty() {
            let borrowed = crate::push::borrowed(&items);
            if matches!(state, "parked" | "cancelled") {
                let finished = now.to_string();
                let all = borrowed.chain([("finished", finished.as_bytes())]);
                self.finish(&mut tx, (id, unique), state, now, all).await?;
            } else {
                transit(&mut tx, self, id, state, now, borrowed).await?;
            }
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(Written::Done)
    }

    /// Adds a parked entry and drops the oldest past the cap, counting them.
    async fn park(&self, con: &mut PgConnection, fields: &[u8], now: i64) -> Result<(), QueueError> {
        let op = "park an entry";
        // Parks of one partition take turns on its row, so that each trim counts the others'.
        let sql = self.sql(
            "INSERT INTO @schema@.queues AS x (q) VALUES ($1) ON CONFLICT (q) DO UPDATE SET parked_dropped = x.parked_dropped",
        );
        sqlx::query(&sql).bind(&*self.q).execute(&mut *con).await.map_err(pg(op))?;
        let sql = self
            .sql("INSERT INTO @schema@.parked (q, ms, seq, fields) VALUES ($1, $2, nextval('@schema@.entry_seq'), $3)");
        sqlx::query(&sql).bind(&*self.q).bind(now).bind(fields).execute(&mut *con).await.map_err(pg(op))?;
        let sql = self.sql(
            "WITH excess AS MATERIALIZED (SELECT ms, seq FROM @schema@.parked WHERE q = $1 \
             ORDER BY ms DESC, seq DESC OFFSET $2), dropped AS (DELETE FROM @schema@.parked p USING excess \
             WHERE p.q = $1 AND p.ms = excess.ms AND p.seq = excess.seq RETURNING 1) \
             INSERT INTO @schema@.queues AS x (q, parked_dropped) SELECT $1, count(*) FROM dropped \
             ON CONFLICT (q) DO UPDATE SET parked_dropped = x.parked_dropped + excluded.parked_dropped",
        );
        sqlx::query(&sql).bind(&*self.q).bind(self.parked_max_len).execute(&mut *con).await.map_err(pg(op))?;
        Ok(())
    }
}

/// Claimed entries from their rows, in id order.
fn claimed_of(mut rows: Vec<(i64, i64, Vec<u8>, i64)>, op: &'static str) -> Result<Vec<Claimed>, QueueError> {
    rows.sort_by_key(|(ms, seq, _, _)| (*ms, *seq));
    rows.into_iter()
        .map(|(ms, seq, fields, deliveries)| {
            Ok((id_text(ms, seq), decode_fields(&fields, op)?, crate::as_u64(deliveries)))
        })
        .collect()
}

/// A partition's reader: reads ready entries for a consumer, and waits for more.
pub(crate) struct PostgresReader {
    pub(crate) store: Store,
    /// The text of [`read_sql`] in the store's schema.
    pub(crate) read: String,
    pub(crate) block: Duration,
    /// Whether the last read found fewer entries than it asked for.
    pub(crate) short: bool,
    /// When the last read took some entries but fewer than it asked for: the ready ones are
    /// coming in one by one.
    pub(crate) trickle: Option<std::time::Instant>,
}

/// The read: the pause check, the consumer's mark and a take from each lane in `$5`, `$6`,
/// `$7` in turn (each lane up to what the ones before left of `$4`), in one statement, so a
/// read is one round trip whatever the lanes hold. A paused partition takes nothing and marks
/// no one. One row when nothing was taken (its lane null), else one per entry, each with the
/// pause flag.
///
/// The consumer's mark (its `seen_ms`) is written at most once a second: a read that takes
/// nothing then writes nothing, so it commits without waiting for the WAL's flush. Woken by
/// every push, idle workers read often, and with `fsync` on a write per read cost more than
/// the reads themselves.
///
/// The rows locked are updated by their row addresses (`ctid`, stable while the lock is held):
/// a join on the key could be planned as a scan of the whole lane per take when the table's
/// statistics are from before a large push, making a drain quadratic.
pub(crate) fn read_sql() -> String {
    // `less`: what the takes before this one took, off the read's count.
    let take = |name: &str, lane: &str, less: &str| {
        format!(
            "{name} AS (UPDATE @schema@.entries SET consumer = $2, delivered_ms = $3, deliveries = 1 \
             WHERE ctid = ANY (ARRAY (SELECT ctid FROM @schema@.entries WHERE q = $1 AND lane = {lane} \
             AND consumer IS NULL ORDER BY ms, seq LIMIT (SELECT n FROM n){less} FOR UPDATE SKIP LOCKED)) \
             RETURNING lane, ms, seq, fields)"
        )
    };
    format!(
        "WITH p AS (SELECT 1 FROM @schema@.queues WHERE q = $1 AND paused_ms IS NOT NULL), \
         n AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM p) THEN 0 ELSE $4 END AS n), \
         seen AS (INSERT INTO @schema@.consumers (q, lane, name, seen_ms) SELECT $1, l, $2, $3 \
         FROM unnest(ARRAY[$5, $6, $7]::int2[]) l WHERE NOT EXISTS (SELECT 1 FROM p) \
         ON CONFLICT (q, lane, name) DO UPDATE SET seen_ms = excluded.seen_ms \
         WHERE @schema@.consumers.seen_ms <= excluded.seen_ms - 1000), {}, {}, {} \
         SELECT EXISTS (SELECT 1 FROM p), t.lane, t.ms, t.seq, t.fields FROM (SELECT) one LEFT JOIN \
         (SELECT * FROM t0 UNION ALL SELECT * FROM t1 UNION ALL SELECT * FROM t2) t ON true",
        take("t0", "$5", ""),
        take("t1", "$6", " - (SELECT count(*) FROM t0)"),
        take("t2", "$7", " - (SELECT count(*) FROM t0) - (SELECT count(*) FROM t1)"),
    )
}

/// A row of [`read_sql`]: the pause flag, and the lane, id and fields of an entry taken.
type ReadRow = (bool, Option<i16>, Option<i64>, Option<i64>, Option<Vec<u8>>);

impl PostgresReader {
    /// Reads in one statement, [`read_sql`], without a transaction of its own (a read whose
    /// reply is lost left its entries with this consumer, which the worker's reconciliation
    /// finds, as on Redis).
    async fn read_now(&mut self, consumer: &str, count: usize, order: [Lane; 3]) -> Result<Read, QueueError> {
        let op = "read entries";
        // Right after a read that took a few of what it asked for, let more come in first, so
        // that one take (one commit) gets several: the first read after a wait goes at once.
        if let Some(at) = self.trickle.take() {
            tokio::time::sleep(GATHER.saturating_sub(at.elapsed())).await;
        }
        let s = &self.store;
        let [l0, l1, l2] = order.map(lane_no);
        let rows: Vec<ReadRow> = sqlx::query_as(&self.read)
            .bind(&*s.q)
            .bind(consumer)
            .bind(s.now_ms())
            .bind(as_i64(count as u64))
            .bind(l0)
            .bind(l1)
            .bind(l2)
            .fetch_all(s.pool())
            .await
            .map_err(pg(op))?;
        if rows.first().is_some_and(|(paused, ..)| *paused) {
            return Ok(Read::Paused);
        }
        let mut taken: Vec<(usize, i64, i64, Vec<u8>)> = rows
            .into_iter()
            .filter_map(|(_, lane, ms, seq, fields)| {
                let place = order.iter().position(|l| Some(lane_no(*l)) == lane)?;
                Some((place, ms?, seq?, fields?))
            })
            .collect();
        // Lane by lane in the order asked, each lane's entries by id.
        taken.sort_by_key(|(place, ms, seq, _)| (*place, *ms, *seq));
        self.short = taken.len() < count;
        if self.short && !taken.is_empty() {
            self.trickle = Some(std::time::Instant::now());
        }
        let out = taken
            .into_iter()
            .map(|(place, ms, seq, fields)| Ok((order[place], (id_text(ms, seq), decode_fields(&fields, op)?), None)))
            .collect::<Result<Vec<(Lane, Entry, Option<Passed>)>, QueueError>>()?;
        Ok(Read::Entries(out))
    }

    async fn wait_now(&mut self) -> Result<(), QueueError> {
        if !self.short {
            return Ok(());
        }
        let s = &self.store;
        let bound = self.block.min(POLL_FLOOR);
        if s.shared.hub.start().await.is_err() {
            // No listener yet: the poll is the floor.
            tokio::time::sleep(bound).await;
            return Ok(());
        }
        let waker = s.shared.hub.waker(&s.q);
        let added = waker.notified();
        tokio::pin!(added);
        // Registered before the check, so that a push between the two is not missed.
        added.as_mut().enable();
        // `min(lane)`, not `EXISTS`: the ready entries' index answers it at once, where an
        // `EXISTS` may be planned as a scan of the whole table (every queue's entries, and
        // the dead rows of a drain) when the statistics count many ready rows.
        let sql = s.sql("SELECT min(lane) IS NOT NULL FROM @schema@.entries WHERE q = $1 AND consumer IS NULL");
        let ready: bool =
            sqlx::query_scalar(&sql).bind(&*s.q).fetch_one(s.pool()).await.map_err(pg("wait for entries"))?;
        if ready {
            return Ok(());
        }
        tokio::select! {
            () = &mut added => {}
            () = tokio::time::sleep(bound) => {}
        }
        Ok(())
    }
}

impl Reader for PostgresReader {
    fn read<'a>(&'a mut self, consumer: &'a str, count: usize, order: [Lane; 3]) -> Answer<'a, Read> {
        Box::pin(self.read_now(consumer, count, order))
    }

    fn wait(&mut self) -> Answer<'_, ()> {
        Box::pin(self.wait_now())
    }
}
