//! Job mode: the queue, the worker (a [`Context`] of warm clients), the schedule, and the
//! status records `GET /jobs/{id}` reads.

use std::sync::Arc;
use std::time::Duration;

use dual_mode::jobs::{
    Clients, PushOptions, Queue, QueueConfig, QueueError, Schedule, Scheduler, SchedulerConfig, Worker, WorkerConfig,
};
use dual_mode::{Context, Secret};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::aggregate::{ContractAggregationService, aggregation_spec};
use crate::settings::{EsiToken, RedisUrl, Settings};
use crate::timestamp::Timestamp;

/// The queue of aggregation jobs.
pub const QUEUE: &str = "esi-aggregate";

/// How long a job's status record is kept.
const STATUS_TTL_SECS: u64 = 7 * 24 * 60 * 60;

/// A boxed error for setup code.
pub use dual_mode::BoxError;

/// The secrets this process holds, handed to the services it builds.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The ESI token (may be empty).
    pub token: Secret<EsiToken>,
    /// The Redis URL.
    pub redis_url: Secret<RedisUrl>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (also after a failed attempt that will be retried).
    Queued,
    /// A worker runs it.
    Running,
    /// The summary is stored.
    Done,
    /// Given up: the error will not go away by retrying, or the attempts are used up.
    Parked,
}

impl JobState {
    /// Whether the job will not change any more.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Parked)
    }
}

/// A job's status record, `esi:job:{job_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job layer's job id.
    pub job_id: String,
    /// The region it aggregates.
    pub region_id: i32,
    /// Where it is.
    pub state: JobState,
    /// The attempt that wrote this record (0: not started).
    pub attempt: u32,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When this record was written.
    pub updated_at: Timestamp,
}

/// The Redis key of a job's status record.
#[must_use]
pub fn status_key(job_id: &str) -> String {
    format!("esi:job:{job_id}")
}

/// Writes a job's status record.
///
/// # Errors
/// Redis fails.
pub async fn set_status(
    redis: &ConnectionManager,
    job_id: &str,
    region_id: i32,
    state: JobState,
    attempt: u32,
    error: Option<String>,
) -> Result<(), redis::RedisError> {
    let record =
        JobStatus { job_id: job_id.to_owned(), region_id, state, attempt, error, updated_at: Timestamp::now() };
    let json = serde_json::to_string(&record).unwrap_or_default();
    let mut cmd = redis::cmd("SET");
    cmd.arg(status_key(job_id)).arg(json).arg("EX").arg(STATUS_TTL_SECS);
    if state == JobState::Queued && attempt == 0 {
        // The producer's record never overwrites a worker's, whichever is written first.
        cmd.arg("NX");
    }
    cmd.query_async::<()>(&mut redis.clone()).await
}

/// A job's status record, if any.
///
/// # Errors
/// Redis fails.
pub async fn get_status(redis: &ConnectionManager, job_id: &str) -> Result<Option<JobStatus>, redis::RedisError> {
    let raw: Option<String> = redis::cmd("GET").arg(status_key(job_id)).query_async(&mut redis.clone()).await?;
    Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
}

/// Enqueues an aggregation of `region_id` and writes its `queued` record. Returns the job id.
///
/// # Errors
/// Redis fails.
pub async fn enqueue(
    queue: &Queue,
    redis: &ConnectionManager,
    settings: &Settings,
    region_id: i32,
) -> Result<String, BoxError> {
    let pushed = queue.push_spec(&aggregation_spec(region_id, settings), PushOptions::new()).await?;
    set_status(redis, &pushed.job_id, region_id, JobState::Queued, 0, None).await?;
    Ok(pushed.job_id)
}

/// Opens the aggregation queue on `redis_url`.
///
/// # Errors
/// Redis is unreachable.
pub async fn connect_queue(redis_url: &RedisUrl) -> Result<Queue, BoxError> {
    let client = redis::Client::open(&**redis_url)?;
    Ok(Queue::connect(client, QueueConfig::new(QUEUE).max_attempts(5)).await?)
}

/// The worker's settings: the job layer's defaults, with a short back-off for the demo.
#[must_use]
pub fn worker_config(concurrency: usize) -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(concurrency)
        .block(Duration::from_millis(250))
        .backoff(Duration::from_millis(500), Duration::from_secs(60))
        .shutdown_deadline(Duration::from_secs(10))
}

/// A worker of the aggregation jobs with its own warm clients.
///
/// The [`Context`] holds one HTTP client, one Redis connection and the secrets for the
/// worker's whole life; every job borrows them (`Clients::Context`). Secrets sit in the
/// context under their source's name, so a worker also runs where they are not in the
/// environment (the main job, whose Redis may be a temporary one).
///
/// # Errors
/// The Redis connection or the HTTP client cannot be opened.
pub async fn worker(
    queue: Queue,
    settings: &Settings,
    secrets: Secrets,
    config: WorkerConfig,
) -> Result<Worker, BoxError> {
    let mut ctx = Context::new();
    ctx.open::<reqwest::Client>(&settings.http).await?;
    ctx.open::<ConnectionManager>(secrets.redis_url.expose()).await?;
    ctx.insert_keyed("ESI_TOKEN", secrets.token).insert_keyed("REDIS_URL", secrets.redis_url);
    Ok(Worker::new(queue, config).service::<ContractAggregationService>(Clients::Context(Arc::new(ctx))))
}

/// A scheduler that enqueues an aggregation of every region of `settings` at each tick of
/// `cron`. Any number of schedulers may run: each tick is enqueued once.
///
/// # Errors
/// The cron expression does not parse.
pub fn scheduler(queue: Queue, settings: &Settings, cron: &str) -> Result<Scheduler, QueueError> {
    let mut scheduler = Scheduler::new(queue, SchedulerConfig::new());
    for &region_id in &settings.regions {
        let schedule =
            Schedule::for_spec(format!("aggregate-{region_id}"), cron, &aggregation_spec(region_id, settings))?;
        scheduler = scheduler.schedule(schedule);
    }
    Ok(scheduler)
}
