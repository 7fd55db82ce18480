//! A run's writes, each fenced by its entry and token (see the prelude's `holder`): marked
//! running, leases renewed, acknowledged with its result, or ended otherwise (retried later,
//! parked, cancelled); and the claims that take entries over from a crashed or stalled
//! consumer, or back from a forgotten run of this one.

use dual_mode_jobs::backend::{Claimed, DoneRun, Ending, MarkRun, Marked, Renewed, RunRef, Written};
use std::time::Duration;

use redis::Value;

use super::scripts::{self, STATE_SETS};
use super::{Store, millis, one_each, redis, reply, stream_id};
use dual_mode_jobs::QueueError;

/// What a fenced write's script answered.
fn written(answer: i64) -> Written {
    match answer {
        1 => Written::Done,
        3 => Written::Landed,
        2 => Written::Gone,
        _ => Written::Other,
    }
}

impl Store {
    /// Marks a batch of runs as running (fenced).
    pub(crate) async fn mark(&self, consumer: &str, runs: &[MarkRun]) -> Result<Vec<Marked>, QueueError> {
        let mut inv = scripts::MARK.prepare_invoke();
        self.base_keys(&mut inv);
        inv.arg(&self.group).arg(consumer);
        for r in runs {
            inv.key(self.record_key(&r.job_id));
            inv.arg(&r.entry_id).arg(r.token).arg(&r.job_id).arg(r.attempt).arg(r.started_ms);
        }
        let out: Vec<i64> = inv.invoke_async(&mut self.con()).await.map_err(redis("mark runs"))?;
        Ok(one_each("mark runs", out, runs.len())?
            .into_iter()
            .map(|a| match a {
                1 => Marked::Yes,
                2 => Marked::CancelRequested,
                _ => Marked::NotOwned,
            })
            .collect())
    }

    /// Renews the leases of these runs (resets their idle time, keeps their tokens); a run
    /// without a job id passes its entry id as `job` (it has no record).
    pub(crate) async fn renew(&self, consumer: &str, runs: &[(&str, u64, &str)]) -> Result<Vec<Renewed>, QueueError> {
        let mut inv = scripts::RENEW.prepare_invoke();
        inv.key(self.stream()).arg(&self.group).arg(consumer);
        for (entry_id, token, job_id) in runs {
            inv.key(self.record_key(job_id)).arg(*entry_id).arg(*token);
        }
        let out: Vec<i64> = inv.invoke_async(&mut self.con()).await.map_err(redis("renew leases"))?;
        Ok(one_each("renew leases", out, runs.len())?
            .into_iter()
            .map(|a| match a {
                1 => Renewed::Yes,
                2 => Renewed::CancelRequested,
                _ => Renewed::Lost,
            })
            .collect())
    }

    /// Acknowledges and deletes these runs' entries and records them `done` with their
    /// results; per run what was written.
    pub(crate) async fn ack(&self, consumer: &str, runs: &[DoneRun]) -> Result<Vec<Written>, QueueError> {
        // Written straight into one command: the keys first, then the arguments.
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts::ACK.get_hash()).arg(1 + STATE_SETS.len() + 2 * runs.len()).arg(self.stream());
        cmd.arg(&self.state_keys);
        for r in runs {
            let record = self.record_key(&r.job_id);
            match &r.unique {
                Some(u) => cmd.arg(record).arg(self.unique_key(u)),
                None => cmd.arg(&record).arg(record),
            };
        }
        cmd.arg(&self.group).arg(consumer).arg(self.keep("done")).arg(&self.keys.finished_channel);
        // The range of this consumer's pending entries the script reads at once: from the
        // batch's lowest to its highest id, at most as many as run here and then some.
        let ordered = || runs.iter().filter_map(|r| Some((stream_id(&r.entry_id)?, r.entry_id.as_str())));
        let lo = ordered().min().map_or("-", |(_, id)| id);
        let hi = ordered().max().map_or("+", |(_, id)| id);
        cmd.arg(lo).arg(hi).arg(runs.len() * 4 + 64);
        // Whether a record's `keep` mark can matter: it cannot when done records are kept for
        // a time longer than any waiter's or this batch's pushes' mark.
        let (done, waited) = (self.retention.done, self.retention.waited_ms);
        let marks = match (done.count, done.age_ms) {
            (None, Some(age)) => waited > age || runs.iter().any(|r| r.keep_ms.is_some_and(|k| k > age)),
            _ => true,
        };
        cmd.arg(u8::from(marks));
        for r in runs {
            cmd.arg(&r.entry_id).arg(r.token).arg(&r.job_id).arg(u8::from(r.unique.is_some()));
            cmd.arg(r.result.as_slice()).arg(r.started_ms).arg(r.attempt);
        }
        let done: Vec<i64> = self.eval(&scripts::ACK, &cmd, "acknowledge").await?;
        Ok(one_each("acknowledge", done, runs.len())?.into_iter().map(written).collect())
    }

    /// Ends a run without success (see [`Ending`]), with `record` items for its record.
    pub(crate) async fn end(
        &self,
        consumer: &str,
        run: &RunRef<'_>,
        ending: &Ending<'_>,
        record: &[(&str, Vec<u8>)],
    ) -> Result<Written, QueueError> {
        let mut inv = scripts::END.prepare_invoke();
        self.base_keys(&mut inv);
        let (job_id, has_unique) = match run.job {
            Some((id, unique)) => (id, self.job_keys(&mut inv, id, unique)),
            None => {
                inv.key(self.stream()).key(self.stream());
                ("", 0)
            }
        };
        let (state, delay) = match ending {
            Ending::Later { retry, delay, .. } => {
                inv.key(&self.keys.delayed).key(self.delayed_key(job_id));
                (if *retry { "retrying" } else { "delayed" }, millis(*delay))
            }
            Ending::Parked { .. } => {
                inv.key(&self.keys.parked).key(&self.keys.parked_dropped);
                ("parked", self.parked_max_len)
            }
            Ending::Cancelled => ("cancelled", 0),
        };
        inv.arg(&self.group).arg(consumer).arg(self.keep(state)).arg(&self.keys.finished_channel);
        inv.arg(run.entry_id).arg(run.token).arg(job_id).arg(has_unique).arg(state).arg(delay);
        inv.arg(record.len() * 2);
        for (k, v) in record {
            inv.arg(*k).arg(v.as_slice());
        }
        match ending {
            Ending::Later { next, .. } => {
                for (k, v) in next.to_fields() {
                    inv.arg(k).arg(v.as_ref());
                }
            }
            Ending::Parked { fields } => {
                for (k, v) in *fields {
                    inv.arg(k.as_slice()).arg(v.as_slice());
                }
            }
            Ending::Cancelled => {}
        }
        let done: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis(state))?;
        Ok(written(done))
    }

    /// Claims up to `count` entries idle for `min_idle_ms` or more, scanning from `cursor`;
    /// returns the next cursor and the entries this consumer now owns.
    pub(crate) async fn claim(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<Claimed>), QueueError> {
        let res: Result<Value, _> = scripts::CLAIM
            .key(self.stream())
            .arg(&self.group)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(cursor)
            .arg(count)
            .invoke_async(&mut self.con())
            .await;
        match res {
            Ok(v) => reply::claim(v).map_err(|d| QueueError::protocol("claim", d)),
            Err(e) if e.code() == Some("NOGROUP") => Err(self.missing_group()),
            Err(e) => Err(redis("claim")(e)),
        }
    }

    /// This consumer's pending entries idle for `min_idle` or more, up to `count`.
    pub(crate) async fn own_pending(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<String>, QueueError> {
        let res: Result<Vec<(String, String, u64, u64)>, _> = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(&self.group)
            .arg("IDLE")
            .arg(millis(min_idle))
            .arg("-")
            .arg("+")
            .arg(count)
            .arg(consumer)
            .query_async(&mut self.con())
            .await;
        match res {
            Ok(entries) => Ok(entries.into_iter().map(|(id, ..)| id).collect()),
            Err(e) if e.code() == Some("NOGROUP") => Err(self.missing_group()),
            Err(e) => Err(redis("list own pending entries")(e)),
        }
    }

    /// Claims these of this consumer's own pending entries again (raising their delivery
    /// counts); returns those it still held.
    pub(crate) async fn reclaim(&self, consumer: &str, ids: &[String]) -> Result<Vec<Claimed>, QueueError> {
        let mut inv = scripts::RECLAIM.prepare_invoke();
        inv.key(self.stream()).arg(&self.group).arg(consumer);
        for id in ids {
            inv.arg(id);
        }
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("reclaim own entries"))?;
        reply::claimed(v).map_err(|d| QueueError::protocol("reclaim own entries", d))
    }
}
