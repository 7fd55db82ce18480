//! Job records: one job's, a page of a state's, and the stream of jobs as they end; and a
//! cancellation by id, which writes the record in the same script.

use redis::Value;

use super::connection::Connection;
use super::{Store, redis, reply, scripts};
use dual_mode_jobs::backend::record;
use dual_mode_jobs::backend::{field, field_of};
use dual_mode_jobs::{CancelOutcome, JobRecord, JobState};
use dual_mode_jobs::{QueueError, ReplyError};

impl Store {
    /// Cancels a job by id.
    pub(crate) async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, QueueError> {
        let mut con = self.con();
        let unique: Option<String> = redis::cmd("HGET")
            .arg(self.record_key(job_id))
            .arg(record::UNIQUE)
            .query_async(&mut con)
            .await
            .map_err(redis("cancel"))?;
        let mut inv = scripts::CANCEL.prepare_invoke();
        self.normal_base_keys(&mut inv);
        inv.key(&self.keys.delayed).key(self.delayed_key(job_id));
        let has_unique = self.job_keys(&mut inv, job_id, unique.as_deref());
        self.lane_keys(&mut inv);
        inv.arg(&self.group).arg(self.keep("cancelled")).arg(&self.keys.finished_channel).arg(job_id).arg(has_unique);
        let answer: String = inv.invoke_async(&mut con).await.map_err(redis("cancel"))?;
        Ok(match answer.as_str() {
            "removed" => CancelOutcome::Removed,
            "requested" => CancelOutcome::Requested,
            "unknown" => CancelOutcome::Unknown,
            other => match other.parse::<JobState>() {
                Ok(state) => CancelOutcome::AlreadyEnded(state),
                Err(_) => return Err(QueueError::protocol("cancel", ReplyError::UnknownAnswer(other.to_owned()))),
            },
        })
    }

    /// A job's record, if it has one.
    pub(crate) async fn record(&self, job_id: &str) -> Result<Option<JobRecord>, QueueError> {
        let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.record_key(job_id))
            .query_async(&mut self.con())
            .await
            .map_err(redis("read job record"))?;
        Ok(JobRecord::from_hash(job_id, fields))
    }

    /// Marks the record of a job that has not ended to be kept at least the queue's
    /// `keep_waited` once it ends; whether the job has a record.
    pub(crate) async fn keep_waited(&self, job_id: &str) -> Result<bool, QueueError> {
        let mut inv = scripts::KEEP_WAITED.prepare_invoke();
        inv.key(self.record_key(job_id)).arg(self.retention.waited_ms);
        let found: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("mark a waited job"))?;
        Ok(found == 1)
    }

    /// Up to `count` records of jobs in `state` from position `start`, and how many jobs
    /// are in that state. Running and ended jobs come from their state sets (oldest transition
    /// first); queued jobs from the stream (in queue order; the total is the stream's entries
    /// not yet delivered); delayed and retrying jobs from the delayed set (by due time; the
    /// total counts both states).
    pub(crate) async fn records(
        &self,
        state: JobState,
        start: usize,
        count: usize,
    ) -> Result<(Vec<JobRecord>, u64), QueueError> {
        let mut con = self.con();
        let window = start.saturating_add(count);
        let (ids, total, filter): (Vec<String>, u64, bool) = match state {
            JobState::Queued => {
                // Lane after lane, in reading order.
                let mut ids = Vec::new();
                for stream in &self.lanes {
                    let want = window.saturating_mul(2).max(1).saturating_sub(ids.len());
                    if want == 0 {
                        break;
                    }
                    let entries: Value = redis::cmd("XRANGE")
                        .arg(stream)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(want)
                        .query_async(&mut con)
                        .await
                        .map_err(redis("list jobs"))?;
                    let entries = reply::entries(entries).map_err(|d| QueueError::protocol("list jobs", d))?;
                    ids.extend(
                        entries
                            .iter()
                            .filter_map(|(_, f)| Some(std::str::from_utf8(field_of(f, field::ID)?).ok()?.to_owned())),
                    );
                }
                let counts = self.stats().await?;
                (ids, counts.length.saturating_sub(counts.pending), true)
            }
            JobState::Delayed | JobState::Retrying => {
                let (ids, total): (Vec<String>, u64) = redis::pipe()
                    .cmd("ZRANGE")
                    .arg(&self.keys.delayed)
                    .arg(0)
                    .arg(window.saturating_mul(2))
                    .cmd("ZCARD")
                    .arg(&self.keys.delayed)
                    .query_async(&mut con)
                    .await
                    .map_err(redis("list jobs"))?;
                (ids, total, true)
            }
            _ => {
                let set = format!("{}{}", self.keys.state_prefix, state.as_str());
                let (ids, total): (Vec<String>, u64) = redis::pipe()
                    .cmd("ZRANGE")
                    .arg(&set)
                    .arg(start)
                    .arg(window.saturating_sub(1))
                    .cmd("ZCARD")
                    .arg(&set)
                    .query_async(&mut con)
                    .await
                    .map_err(redis("list jobs"))?;
                (ids, total, false)
            }
        };
        if ids.is_empty() || count == 0 {
            return Ok((Vec::new(), total));
        }
        let records = self.records_of(&ids).await?.into_iter().flatten();
        let records: Vec<JobRecord> = if filter {
            records.filter(|r| r.state == state).skip(start).take(count).collect()
        } else {
            records.collect()
        };
        Ok((records, total))
    }

    /// A stream of the ids of jobs as they end, on a Pub/Sub connection of its own.
    pub(crate) async fn finished(&self) -> Result<redis::aio::PubSubStream, QueueError> {
        let mut pubsub = Connection::pubsub(&self.target).await.map_err(redis("subscribe"))?;
        pubsub.subscribe(&self.keys.finished_channel).await.map_err(redis("subscribe"))?;
        Ok(pubsub.into_on_message())
    }
}
