//! Job mode: the queue, the worker (a [`Context`] of warm clients), the schedule, unique
//! aggregations per region, the flow control every worker shares (one aggregation per region
//! at a time, starts within ESI's rate limit), and the view of a job's record that
//! `GET /jobs/{id}` answers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dual_mode::jobs::{
    Clients, JobRecord, JobState, Lane, PushOptions, Pushed, Queue, QueueConfig, QueueError, RateLimit, RateScope,
    Schedule, Scheduler, SchedulerConfig, TraceParent, Worker, WorkerConfig,
};
use dual_mode::{Context, Secret, Spec};
use serde::{Deserialize, Serialize};

use crate::aggregate::{ContractAggregationService, ContractAggregationServiceSpec, aggregation_spec};
use crate::settings::{DatabaseUrl, EsiToken, RedisUrl, Settings};
use crate::timestamp::Timestamp;

/// The queue of aggregation jobs.
pub const QUEUE: &str = "esi-aggregate";

/// A boxed error for setup code.
pub use dual_mode::BoxError;

/// The secrets this process holds, handed to the services it builds.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The ESI token (may be empty).
    pub token: Secret<EsiToken>,
    /// The database URL: the page cache, the shared pauses, the summaries.
    pub database_url: Secret<DatabaseUrl>,
}

/// How long a region's unique key is held at most. The key is released when its job ends;
/// this only bounds how long a job lost to an operator's mistake blocks new aggregations of
/// its region.
pub const UNIQUE_TTL: Duration = Duration::from_secs(60 * 60);

/// The unique key of an aggregation of `region_id`: of the jobs pushed by [`enqueue`], one per
/// region is queued, delayed or running at a time. (Scheduled ticks are pushed without it, and
/// without a [rate key](rate_key): a [`Schedule`] has no push options. They fall under the
/// type's rate limit only.)
#[must_use]
pub fn unique_key(region_id: i32) -> String {
    format!("aggregate:{region_id}")
}

/// The prefix of the regions' rate keys: the queue runs one job of each at a time.
pub const REGION_KEY_PREFIX: &str = "region:";

/// The rate key of an aggregation of `region_id`, `region:<id>`: of the jobs pushed with it,
/// one runs at a time across every worker; the others wait in the delayed set, holding no
/// worker slot ([`queue_config`]).
#[must_use]
pub fn rate_key(region_id: i32) -> String {
    format!("{REGION_KEY_PREFIX}{region_id}")
}

/// How fast aggregations may start, across every worker: 75 per 15 minutes, all of them at
/// once after a quiet spell.
///
/// ESI's rate limit is a token bucket per route group, e.g. `150/15m`, in which a `2xx` costs
/// 2 tokens. Public contracts had no group yet in September 2026, but may get one at any time;
/// this takes ESI's published figure, 150 tokens per 15 minutes. An aggregation spends at
/// least 2 of them (its first page), so at most 75 starts fit in the bucket, and a full
/// bucket takes all 75 at once. Walks of several pages cost more: the client paces those from
/// the `X-Ratelimit-*` headers ESI sends, and a `429` pauses the route for everyone.
pub const AGGREGATION_RATE: RateLimit = RateLimit { count: 75, per: Duration::from_secs(15 * 60), burst: 75 };

/// The settings of the aggregation queue, the same wherever it is opened (the API, workers,
/// schedulers): 5 attempts, one running aggregation per [region key](rate_key), and the
/// aggregation type's starts within [`AGGREGATION_RATE`]. Workers check the limits, so they
/// must all see the same ones: open the queue with [`connect_queue`].
#[must_use]
pub fn queue_config() -> QueueConfig {
    QueueConfig::new(QUEUE)
        .max_attempts(5)
        .key_concurrency(REGION_KEY_PREFIX, 1)
        .rate_limit(RateScope::Type(ContractAggregationServiceSpec::NAME.to_owned()), AGGREGATION_RATE)
}

/// Enqueues an aggregation of `region_id` in the high lane (someone asked for it and may be
/// waiting), unless one is queued, delayed or running already: then [`Pushed::duplicate`] is
/// set and [`Pushed::job_id`] is that job's id. The job carries the region's
/// [rate key](rate_key), and `traceparent`, the trace context of the request that asked for
/// it, so that the job's span continues the request's trace.
///
/// # Errors
/// The queue's store fails.
pub async fn enqueue(
    queue: &Queue,
    settings: &Settings,
    region_id: i32,
    traceparent: Option<TraceParent>,
) -> Result<Pushed, QueueError> {
    let mut options =
        PushOptions::new().lane(Lane::High).unique(unique_key(region_id), UNIQUE_TTL).rate_key(rate_key(region_id));
    options.traceparent = traceparent;
    queue.push_spec(&aggregation_spec(region_id, settings), options).await
}

/// A job's record as `GET /jobs/{id}` answers it: the job layer's [`JobRecord`], times in
/// RFC 3339, the result as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The job id.
    pub id: String,
    /// Where the job is: `queued`, `delayed`, `running`, `retrying`, `done`, `parked` or
    /// `cancelled`.
    #[serde(with = "state_name")]
    pub state: JobState,
    /// The payload's type name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The attempt it is on or ended on, from 1.
    pub attempt: u32,
    /// The attempts it gets.
    pub max_attempts: u32,
    /// When it was pushed.
    pub enqueued_at: Timestamp,
    /// When its current or last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// When a delayed or retrying job is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// When the record last changed.
    pub updated_at: Timestamp,
    /// The consumer that runs or ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The last error: of a failed attempt, a wait, or why it was parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was parked (`rejected`, `exhausted`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub park_reason: Option<String>,
    /// Whether a cancellation was requested.
    pub cancel_requested: bool,
    /// Its unique key (`aggregate:<region>` for jobs pushed by [`enqueue`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Its priority lane: `high` for jobs from the API, `low` for scheduled ones.
    pub lane: String,
    /// Its result once done: for an aggregation, the [`StoredSummary`](crate::aggregate::StoredSummary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl JobView {
    /// The view of `record`; `max_attempts` is the queue's, for a job pushed without its own.
    #[must_use]
    pub fn new(record: &JobRecord, max_attempts: u32) -> Self {
        let time = |t: Option<SystemTime>| t.map(Timestamp::from_system_time);
        Self {
            id: record.id.clone(),
            state: record.state,
            type_name: record.type_name.clone(),
            attempt: record.attempt,
            max_attempts: record.max_attempts.unwrap_or(max_attempts),
            enqueued_at: Timestamp::from_system_time(record.enqueued_at),
            started_at: time(record.started_at),
            finished_at: time(record.finished_at),
            due_at: time(record.due_at),
            updated_at: Timestamp::from_system_time(record.updated_at),
            worker: record.worker.clone(),
            error: record.error.clone(),
            park_reason: record.park_reason.map(|r| r.code().to_owned()),
            cancel_requested: record.cancel_requested,
            unique_key: record.unique_key.clone(),
            lane: record.lane.to_string(),
            result: record.result.as_deref().and_then(|json| serde_json::from_slice(json).ok()),
        }
    }
}

/// [`JobState`] as its name, `"running"`.
mod state_name {
    use dual_mode::jobs::JobState;
    use serde::{Deserialize, Deserializer, Serializer, de};

    #[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's `with` passes a reference")]
    pub fn serialize<S: Serializer>(state: &JobState, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(state.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<JobState, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(de::Error::custom)
    }
}

/// Opens the aggregation queue, with [`queue_config`], on the first store it is given: Redis
/// at `redis_url`; else Postgres, when `database_url` is a `postgres://` URL (the queue's
/// tables in the schema `dual_mode` beside the example's own); else this process only
/// ([`Queue::in_process`]: the main job, whose API and workers are tasks of one process).
/// Every process of a deployment must open the same store.
///
/// # Errors
/// A URL that does not parse, or a store that is unreachable.
pub async fn connect_queue(
    redis_url: Option<&RedisUrl>,
    database_url: Option<&DatabaseUrl>,
) -> Result<Queue, BoxError> {
    if let Some(url) = redis_url {
        let client = redis::Client::open(&**url)?;
        return Ok(Queue::connect(client, queue_config()).await?);
    }
    match database_url.filter(|url| is_postgres(url)) {
        Some(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(QUEUE_POOL_SIZE).connect(url).await?;
            Ok(Queue::connect(pool, queue_config()).await?)
        }
        None => Ok(Queue::in_process(queue_config())?),
    }
}

/// The connections of the queue's own pool when the queue is on Postgres.
pub const QUEUE_POOL_SIZE: u32 = 8;

/// Whether `url` names a Postgres database.
#[must_use]
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
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

/// The connections of a worker's database pool: a job holds one at a time (its reads and
/// writes are one statement each).
pub const WORKER_POOL_SIZE: u32 = 4;

/// A worker of the aggregation jobs with its own warm clients.
///
/// The [`Context`] holds one HTTP client, one database pool of [`WORKER_POOL_SIZE`]
/// connections and the secrets for the worker's whole life; every job borrows them
/// (`Clients::Context`) and opens nothing. Secrets sit in the context under their source's
/// name, so a worker also runs where they are not in the environment (the main job, whose
/// database may be a temporary one).
///
/// # Errors
/// The database pool or the HTTP client cannot be opened, or the tables cannot be created.
pub async fn worker(
    queue: Queue,
    settings: &Settings,
    secrets: Secrets,
    config: WorkerConfig,
) -> Result<Worker, BoxError> {
    let mut ctx = Context::new();
    ctx.open::<reqwest::Client>(&settings.http).await?;
    let pool_url = crate::store::with_pool_size(secrets.database_url.expose(), WORKER_POOL_SIZE);
    let db = <sqlx::AnyPool as dual_mode::Resource>::open(&pool_url).await?;
    crate::store::migrate(&db).await?;
    ctx.insert(db);
    ctx.insert_keyed("ESI_TOKEN", secrets.token).insert_keyed("DATABASE_URL", secrets.database_url);
    Ok(Worker::new(queue, config).service::<ContractAggregationService>(Clients::Context(Arc::new(ctx))))
}

/// A scheduler that enqueues an aggregation of every region of `settings` at each tick of
/// `cron`, read on the wall clock of the IANA time zone `zone` (UTC when `None`). Any number
/// of schedulers may run: each tick is enqueued once. A tick's job goes to the low lane (no one
/// waits for it: requests from the API pass it) and takes its region's unique key and rate
/// key, as [`enqueue`] does: while an aggregation of the region is queued or running (from an
/// API call or an earlier tick), the tick adds none.
///
/// # Errors
/// The cron expression does not parse, or the zone is unknown.
pub fn scheduler(queue: Queue, settings: &Settings, cron: &str, zone: Option<&str>) -> Result<Scheduler, QueueError> {
    let mut scheduler = Scheduler::new(queue, SchedulerConfig::new());
    for &region_id in &settings.regions {
        let spec = aggregation_spec(region_id, settings);
        let mut schedule = Schedule::for_spec(format!("aggregate-{region_id}"), cron, &spec)?.push_options(
            PushOptions::new().lane(Lane::Low).unique(unique_key(region_id), UNIQUE_TTL).rate_key(rate_key(region_id)),
        )?;
        if let Some(zone) = zone {
            schedule = schedule.in_zone(zone)?;
        }
        scheduler = scheduler.schedule(schedule);
    }
    Ok(scheduler)
}
