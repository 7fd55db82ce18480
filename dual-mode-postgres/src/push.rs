//! Entries in: pushes, delayed pushes, promotion of due entries, re-drives of parked ones,
//! and the push in the caller's own transaction.

use std::time::{Duration, SystemTime};

use sqlx::{Acquire as _, PgConnection};

use dual_mode_jobs::backend::{PushAnswer, millis, unix_ms};
use dual_mode_jobs::{Envelope, Lane, PushOptions, Pushed, Queue, QueueError, RawFields};

use crate::codec::{self, encode_envelope, field, hash_json, lane_no};
use crate::{PostgresTarget, Store, as_i64, ms_of, partition_key, pg};

/// Adds an entry to `lane` of the store's partition and tells its readers (at commit); the
/// entry's id.
pub(crate) async fn add_entry(
    con: &mut PgConnection,
    s: &Store,
    lane: Lane,
    job_id: Option<&str>,
    fields: &[u8],
    now: i64,
) -> Result<String, QueueError> {
    let sql = s.sql(
        "WITH e AS (INSERT INTO @schema@.entries (q, lane, ms, seq, job_id, fields) \
         VALUES ($1, $2, $3, nextval('@schema@.entry_seq'), $4, $5) RETURNING ms, seq), \
         n AS (SELECT pg_notify($6, $1)) SELECT e.ms, e.seq FROM e, n",
    );
    let (ms, seq): (i64, i64) = sqlx::query_as(&sql)
        .bind(&*s.q)
        .bind(lane_no(lane))
        .bind(now)
        .bind(job_id)
        .bind(fields)
        .bind(s.added_channel())
        .fetch_one(&mut *con)
        .await
        .map_err(pg("add an entry"))?;
    Ok(codec::id_text(ms, seq))
}

/// Moves job `id`'s record to `state` with `items` (see the schema's `transit`).
pub(crate) async fn transit<'a>(
    con: &mut PgConnection,
    s: &Store,
    id: &str,
    state: &str,
    now: i64,
    items: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), QueueError> {
    let sql = s.sql("SELECT @schema@.transit($1, $2, $3, $4, $5::jsonb, $6)");
    sqlx::query(&sql)
        .bind(&*s.q)
        .bind(id)
        .bind(state)
        .bind(now)
        .bind(hash_json(items))
        .bind(s.age_ms(state))
        .execute(&mut *con)
        .await
        .map_err(pg("write a job record"))?;
    Ok(())
}

/// [`transit`] of several jobs to one `state`: `(job id, items as JSON)`, in one statement.
pub(crate) async fn transit_many(
    con: &mut PgConnection,
    s: &Store,
    state: &str,
    now: i64,
    jobs: &[(&str, String)],
) -> Result<(), QueueError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let (ids, items): (Vec<&str>, Vec<&str>) = jobs.iter().map(|(id, items)| (*id, items.as_str())).unzip();
    let sql = s.sql(
        "SELECT @schema@.transit($1, u.id, $2, $3, u.items::jsonb, $4) FROM unnest($5::text[], $6::text[]) AS u(id, items)",
    );
    sqlx::query(&sql)
        .bind(&*s.q)
        .bind(state)
        .bind(now)
        .bind(s.age_ms(state))
        .bind(ids)
        .bind(items)
        .execute(&mut *con)
        .await
        .map_err(pg("write job records"))?;
    Ok(())
}

/// Claims `unique` for job `id` for `ttl_ms` (0: not unique); the id of the job that holds it
/// already, if one does.
pub(crate) async fn claim_unique(
    con: &mut PgConnection,
    s: &Store,
    unique: Option<&str>,
    id: &str,
    ttl_ms: i64,
    now: i64,
) -> Result<Option<String>, QueueError> {
    let Some(key) = unique.filter(|_| ttl_ms > 0) else { return Ok(None) };
    let sql = s.sql("SELECT @schema@.claim_unique($1, $2, $3, $4, $5)");
    sqlx::query_scalar(&sql)
        .bind(&*s.q)
        .bind(key)
        .bind(id)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .fetch_one(&mut *con)
        .await
        .map_err(pg("claim a unique key"))
}

/// Releases `unique` if it still names job `id`.
pub(crate) async fn release_unique(
    con: &mut PgConnection,
    s: &Store,
    unique: Option<&str>,
    id: &str,
) -> Result<(), QueueError> {
    let Some(key) = unique else { return Ok(()) };
    let sql = s.sql("DELETE FROM @schema@.uniques WHERE q = $1 AND key = $2 AND job_id = $3");
    sqlx::query(&sql).bind(&*s.q).bind(key).bind(id).execute(&mut *con).await.map_err(pg("release a unique key"))?;
    Ok(())
}

/// The unique key's lifetime in ms: 0 when the job is not unique, a day when none was set.
pub(crate) fn unique_ttl_ms(env: &Envelope, ttl: Duration) -> i64 {
    match (&env.unique, ms_of(ttl)) {
        (None, _) => 0,
        (Some(_), 0) => 24 * 3600 * 1000,
        (Some(_), ms) => ms,
    }
}

/// The record items a push writes: type, idempotency key, attempt, enqueue time, and the
/// maximum attempts, unique key and lane when set.
pub(crate) fn record_items(env: &Envelope) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        ("type", env.type_name.as_bytes().to_vec()),
        ("key", env.idempotency_key.as_bytes().to_vec()),
        ("attempt", env.attempt.to_string().into_bytes()),
        ("enq", env.enqueued_at_ms.to_string().into_bytes()),
    ];
    if let Some(max) = env.max_attempts {
        out.push(("max", max.to_string().into_bytes()));
    }
    if let Some(unique) = &env.unique {
        out.push(("unique", unique.as_bytes().to_vec()));
    }
    if env.lane != Lane::Normal {
        out.push(("lane", env.lane.as_str().as_bytes().to_vec()));
    }
    if let Some(keep) = env.keep_ms {
        out.push(("keep", keep.to_string().into_bytes()));
    }
    out
}

/// Items as the record writes take them.
pub(crate) fn borrowed<'a>(items: &'a [(&'a str, Vec<u8>)]) -> impl Iterator<Item = (&'a str, &'a [u8])> {
    items.iter().map(|(k, v)| (*k, v.as_slice()))
}

/// Adds `env` to its lane and writes its `queued` record, unless its unique key is held.
pub(crate) async fn push_on(
    con: &mut PgConnection,
    s: &Store,
    env: &Envelope,
    unique_ttl: Duration,
    now: i64,
) -> Result<PushAnswer, QueueError> {
    let ttl = unique_ttl_ms(env, unique_ttl);
    if let Some(holder) = claim_unique(con, s, env.unique.as_deref(), &env.id, ttl, now).await? {
        return Ok(PushAnswer::Held { holder });
    }
    let entry = add_entry(con, s, env.lane, Some(&env.id), &encode_envelope(env), now).await?;
    let mut items = record_items(env);
    items.push(("entry", entry.clone().into_bytes()));
    transit(con, s, &env.id, "queued", now, borrowed(&items)).await?;
    Ok(PushAnswer::Added { entry_id: entry })
}

/// Puts `env` in the delayed set, due at `at_ms` or, when that is 0, `delay_ms` from now, and
/// writes its `delayed` record, unless its unique key is held.
pub(crate) async fn push_delayed_on(
    con: &mut PgConnection,
    s: &Store,
    env: &Envelope,
    unique_ttl: Duration,
    (at_ms, delay_ms): (u64, u64),
    now: i64,
) -> Result<PushAnswer, QueueError> {
    let ttl = unique_ttl_ms(env, unique_ttl);
    if let Some(holder) = claim_unique(con, s, env.unique.as_deref(), &env.id, ttl, now).await? {
        return Ok(PushAnswer::Held { holder });
    }
    let at = if at_ms == 0 { now.saturating_add(as_i64(delay_ms)) } else { as_i64(at_ms) };
    put_delayed(con, s, &env.id, at, &encode_envelope(env)).await?;
    let mut items = record_items(env);
    items.push(("due", at.to_string().into_bytes()));
    transit(con, s, &env.id, "delayed", now, borrowed(&items)).await?;
    Ok(PushAnswer::Delayed)
}

/// Puts job `id` in the delayed set, due at `at`, with the fields of its next entry.
pub(crate) async fn put_delayed(
    con: &mut PgConnection,
    s: &Store,
    id: &str,
    at: i64,
    fields: &[u8],
) -> Result<(), QueueError> {
    let sql = s.sql(
        "INSERT INTO @schema@.delayed (q, job_id, due_ms, fields) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (q, job_id) DO UPDATE SET due_ms = excluded.due_ms, fields = excluded.fields",
    );
    sqlx::query(&sql).bind(&*s.q).bind(id).bind(at).bind(fields).execute(&mut *con).await.map_err(pg("delay a job"))?;
    Ok(())
}

/// A push of a job without a unique key, in one statement: adds the entry to lane `$2` of
/// partition `$1` (pushed at `$3`, job `$4`, fields `$5`), tells the readers on `$6` (at commit)
/// and writes the job's `queued` record with items `$7` and the entry's id (see the schema's
/// `transit`; `$8`: the lifetime it takes, none for a state that does not end a job). The
/// entry's id.
const PUSH: &str = "WITH e AS (INSERT INTO @schema@.entries (q, lane, ms, seq, job_id, fields) \
     VALUES ($1, $2, $3, nextval('@schema@.entry_seq'), $4, $5) RETURNING ms, seq), \
     n AS (SELECT pg_notify($6, $1)) \
     SELECT e.ms, e.seq, @schema@.transit($1, $4, 'queued', $3, \
     $7::jsonb || jsonb_build_object('entry', e.ms::text || '-' || e.seq::text), $8)::text FROM e, n";

impl Store {
    pub(crate) async fn push(&self, env: &Envelope, unique_ttl: Duration) -> Result<PushAnswer, QueueError> {
        if env.unique.is_none() {
            return self.push_plain(env).await;
        }
        let mut tx = self.pool().begin().await.map_err(pg("push"))?;
        let answer = push_on(&mut tx, self, env, unique_ttl, self.now_ms()).await?;
        tx.commit().await.map_err(pg("push"))?;
        Ok(answer)
    }

    /// [`Store::push`] of a job without a unique key: [`PUSH`], one round trip (the statement
    /// is its own transaction).
    async fn push_plain(&self, env: &Envelope) -> Result<PushAnswer, QueueError> {
        let items = record_items(env);
        let (ms, seq, _): (i64, i64, String) = sqlx::query_as(&self.sql(PUSH))
            .bind(&*self.q)
            .bind(lane_no(env.lane))
            .bind(self.now_ms())
            .bind(&env.id)
            .bind(encode_envelope(env))
            .bind(self.added_channel())
            .bind(hash_json(borrowed(&items)))
            .bind(self.age_ms("queued"))
            .fetch_one(self.pool())
            .await
            .map_err(pg("push"))?;
        Ok(PushAnswer::Added { entry_id: codec::id_text(ms, seq) })
    }

    /// Pushes several envelopes in one transaction: their unique keys claimed one by one,
    /// then every entry added in one statement and every record written in another.
    pub(crate) async fn push_many(
        &self,
        envs: &[Envelope],
        unique_ttl: Duration,
    ) -> Result<Vec<PushAnswer>, QueueError> {
        let op = "push";
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let mut held: Vec<Option<String>> = Vec::with_capacity(envs.len());
        for env in envs {
            let ttl = unique_ttl_ms(env, unique_ttl);
            held.push(claim_unique(&mut tx, self, env.unique.as_deref(), &env.id, ttl, now).await?);
        }
        let fresh: Vec<&Envelope> = envs.iter().zip(&held).filter(|(_, h)| h.is_none()).map(|(e, _)| e).collect();
        let mut entries: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        if !fresh.is_empty() {
            let lanes: Vec<i16> = fresh.iter().map(|e| lane_no(e.lane)).collect();
            let ids: Vec<&str> = fresh.iter().map(|e| e.id.as_str()).collect();
            let fields: Vec<Vec<u8>> = fresh.iter().map(|e| encode_envelope(e)).collect();
            let sql = self.sql(
                "WITH e AS (INSERT INTO @schema@.entries (q, lane, ms, seq, job_id, fields) \
                 SELECT $1, u.lane, $2, nextval('@schema@.entry_seq'), u.id, u.fields FROM \
                 (SELECT * FROM unnest($3::int2[], $4::text[], $5::bytea[]) WITH ORDINALITY AS u(lane, id, fields, i) \
                 ORDER BY i) u RETURNING job_id, ms, seq), n AS (SELECT pg_notify($6, $1)) \
                 SELECT e.job_id, e.ms, e.seq FROM e, n",
            );
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(&sql)
                .bind(&*self.q)
                .bind(now)
                .bind(lanes)
                .bind(ids)
                .bind(fields)
                .bind(self.added_channel())
                .fetch_all(&mut *tx)
                .await
                .map_err(pg(op))?;
            entries = rows.into_iter().map(|(id, ms, seq)| (id, codec::id_text(ms, seq))).collect();
            let records: Vec<(&str, String)> = fresh
                .iter()
                .map(|env| {
                    let mut items = record_items(env);
                    if let Some(entry) = entries.get(&env.id) {
                        items.push(("entry", entry.clone().into_bytes()));
                    }
                    (env.id.as_str(), hash_json(borrowed(&items)))
                })
                .collect();
            transit_many(&mut tx, self, "queued", now, &records).await?;
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(envs
            .iter()
            .zip(held)
            .map(|(env, held)| match held {
                Some(holder) => PushAnswer::Held { holder },
                None => PushAnswer::Added { entry_id: entries.get(&env.id).cloned().unwrap_or_default() },
            })
            .collect())
    }

    pub(crate) async fn push_delayed(
        &self,
        env: &Envelope,
        unique_ttl: Duration,
        at_ms: u64,
        delay_ms: u64,
    ) -> Result<PushAnswer, QueueError> {
        let mut tx = self.pool().begin().await.map_err(pg("delayed push"))?;
        let answer = push_delayed_on(&mut tx, self, env, unique_ttl, (at_ms, delay_ms), self.now_ms()).await?;
        tx.commit().await.map_err(pg("delayed push"))?;
        Ok(answer)
    }

    /// Moves up to `max` due delayed entries into their lanes, by due time; how many moved.
    /// Entries another process is promoting are skipped, not waited for.
    pub(crate) async fn promote(&self, max: usize) -> Result<usize, QueueError> {
        let op = "promote due jobs";
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let sql = self.sql(
            "WITH picked AS MATERIALIZED (SELECT job_id FROM @schema@.delayed WHERE q = $1 AND due_ms <= $2 \
             ORDER BY due_ms, job_id LIMIT $3 FOR UPDATE SKIP LOCKED), \
             due AS (DELETE FROM @schema@.delayed d USING picked WHERE d.q = $1 AND d.job_id = picked.job_id \
             RETURNING d.job_id, d.fields, d.due_ms) SELECT job_id, fields FROM due ORDER BY due_ms, job_id",
        );
        let due: Vec<(String, Vec<u8>)> = sqlx::query_as(&sql)
            .bind(&*self.q)
            .bind(now)
            .bind(as_i64(max as u64))
            .fetch_all(&mut *tx)
            .await
            .map_err(pg(op))?;
        let exists = self.sql("SELECT EXISTS (SELECT 1 FROM @schema@.jobs WHERE q = $1 AND id = $2)");
        let mut moved = 0;
        for (id, bytes) in due {
            if bytes.is_empty() {
                continue;
            }
            let fields = codec::decode_fields(&bytes, op)?;
            let lane = codec::lane_of(field(&fields, "lane"));
            let entry = add_entry(&mut tx, self, lane, Some(&id), &bytes, now).await?;
            let has_record: bool =
                sqlx::query_scalar(&exists).bind(&*self.q).bind(&id).fetch_one(&mut *tx).await.map_err(pg(op))?;
            if has_record {
                transit(&mut tx, self, &id, "queued", now, [("entry", entry.as_bytes())]).await?;
            }
            moved += 1;
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(moved)
    }

    /// Moves a parked entry back to its lane: its fields named with `raw_prefix`, without the
    /// prefix, the attempt reset to 1; the job's record queued again and kept.
    pub(crate) async fn redrive(
        &self,
        parked_id: &str,
        raw_prefix: &str,
        job_id: Option<&str>,
    ) -> Result<Option<String>, QueueError> {
        let op = "re-drive";
        let (ms, seq) = codec::parse_id(parked_id, op)?;
        let mut tx = self.pool().begin().await.map_err(pg(op))?;
        let now = self.now_ms();
        let sql = self.sql("SELECT fields FROM @schema@.parked WHERE q = $1 AND ms = $2 AND seq = $3 FOR UPDATE");
        let parked: Option<Vec<u8>> = sqlx::query_scalar(&sql)
            .bind(&*self.q)
            .bind(ms)
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg(op))?;
        let Some(parked) = parked else { return Ok(None) };
        let fields: RawFields = codec::decode_fields(&parked, op)?
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(raw_prefix.as_bytes())?;
                let value = if name == b"attempt" { b"1".to_vec() } else { v };
                Some((name.to_vec(), value))
            })
            .collect();
        if fields.is_empty() {
            return Ok(None);
        }
        let lane = codec::lane_of(field(&fields, "lane"));
        let job = job_id.filter(|j| !j.is_empty());
        let entry = add_entry(&mut tx, self, lane, job, &codec::encode_raw(&fields), now).await?;
        let sql = self.sql("DELETE FROM @schema@.parked WHERE q = $1 AND ms = $2 AND seq = $3");
        sqlx::query(&sql).bind(&*self.q).bind(ms).bind(seq).execute(&mut *tx).await.map_err(pg(op))?;
        if let Some(job) = job {
            let sql = self.sql(
                "UPDATE @schema@.jobs SET hash = hash - 'cancel' - 'finished' - 'result', expires_ms = NULL \
                 WHERE q = $1 AND id = $2",
            );
            sqlx::query(&sql).bind(&*self.q).bind(job).execute(&mut *tx).await.map_err(pg(op))?;
            transit(&mut tx, self, job, "queued", now, [("entry", entry.as_bytes()), ("attempt", b"1".as_slice())])
                .await?;
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(Some(entry))
    }
}

impl PostgresTarget {
    /// Pushes a job in the caller's transaction: the job exists, and a worker can see it, only
    /// once that transaction commits; a rollback leaves no trace of it. `con` is the
    /// transaction's connection (`&mut tx` of a `sqlx::Transaction<'_, sqlx::Postgres>`, or
    /// `&mut *tx`); the push runs in a savepoint of it, so a failure of the push leaves the
    /// caller's transaction usable.
    ///
    /// `queue` must be a queue opened through this target or a clone of it (so, on its schema;
    /// a queue of a name no such open named is refused, as its workers would never read the
    /// job; the check goes by the name); the payload is serialized
    /// as JSON under `type_name` and schema `version`, as [`Queue::push`] does. Delays, unique
    /// keys and lanes in `options` work as on a plain push; a unique key is claimed in the
    /// transaction, so a concurrent push of the same key waits for it to end.
    ///
    /// # Errors
    /// [`QueueError::BadArgument`] for a queue not opened through this target, the payload
    /// does not serialize, or Postgres fails.
    pub async fn push_in<T: serde::Serialize + ?Sized>(
        &self,
        con: &mut PgConnection,
        queue: &Queue,
        type_name: &str,
        version: u32,
        payload: &T,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        let bytes = serde_json::to_vec(payload)
            .map_err(|source| QueueError::Encode { type_name: type_name.to_owned(), source })?;
        self.push_raw_in(con, queue, type_name, version, bytes, options).await
    }

    /// [`PostgresTarget::push_in`] of a spec, under its type name and schema version.
    ///
    /// # Errors
    /// The spec does not serialize, or Postgres fails.
    pub async fn push_spec_in<T: dual_mode_runtime::Spec>(
        &self,
        con: &mut PgConnection,
        queue: &Queue,
        spec: &T,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        self.push_in(con, queue, T::NAME, T::VERSION, spec, options).await
    }

    /// [`PostgresTarget::push_in`] of payload bytes as they are.
    ///
    /// # Errors
    /// As [`PostgresTarget::push_in`], but for the payload's serialization.
    pub async fn push_raw_in(
        &self,
        con: &mut PgConnection,
        queue: &Queue,
        type_name: &str,
        version: u32,
        payload: Vec<u8>,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        let config = queue.config();
        let opened =
            self.shared.opened.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&config.name);
        if !opened {
            return Err(QueueError::BadArgument {
                what: "the queue of a push in a transaction",
                reason: "it was not opened through this target or a clone of it: the job would go to tables its \
                         workers do not read",
            });
        }
        let (p, env) = queue.envelope(type_name, version, payload, &options);
        let keys = queue.partition_keys(p).unwrap_or_else(|| queue.keys());
        let retention = config.retention();
        let store = Store {
            shared: self.shared.clone(),
            q: partition_key(keys),
            home: partition_key(queue.keys()),
            retention,
            parked_max_len: as_i64(retention.parked_max_len.max(1)),
        };
        let op = "push in a transaction";
        store.sync_clock_once().await?;
        let mut savepoint = con.begin().await.map_err(pg(op))?;
        let now = store.now_ms();
        let stored = if options.is_delayed() {
            let at = options.not_before.map_or(0, |t: SystemTime| unix_ms(t));
            let delay = options.delay.map_or(0, millis);
            push_delayed_on(&mut savepoint, &store, &env, options.unique_ttl, (at, delay), now).await?
        } else {
            push_on(&mut savepoint, &store, &env, options.unique_ttl, now).await?
        };
        savepoint.commit().await.map_err(pg(op))?;
        Ok(Pushed::new(&env, stored))
    }
}
