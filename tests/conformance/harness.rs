//! The store a case runs on, the macro that makes one test per backend of each case, and the
//! reads the cases share.

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use dual_mode::jobs::{JobRecord, JobState, Queue, QueueConfig, WorkerConfig};
use dual_mode_postgres::PostgresTarget;
use dual_mode_test_support::{PostgresServer, RedisServer};

pub use crate::jobs_support::{start, stop, unique, wait_for};

/// `cases! { a, b }` in a module of `async fn a(store: &Store)` and `async fn b(store: &Store)`:
/// one test per backend of each, `redis::a`, `in_process::a` and `postgres::a`, on a runtime of
/// two threads.
macro_rules! cases {
    ($($case:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&$crate::harness::Store::postgres()).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&$crate::harness::Store::redis()).await;
                }
            )+
        }
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&$crate::harness::Store::InProcess).await;
                }
            )+
        }
    };
}

/// Where a case's queues live.
pub enum Store {
    /// A `redis-server` of the case's own, stopped when the case ends.
    Redis(RedisServer),
    /// The in-process backend: the queues live in this process, in their handles.
    InProcess,
    /// A schema of the case's own in the test binary's Postgres.
    Postgres(PgCase),
}

/// A case's place in Postgres: the binary's server (kept while a case runs) and a schema.
pub struct PgCase {
    server: Arc<PostgresServer>,
    schema: String,
}

/// The binary's Postgres: started by the first case that needs it, stopped when no running
/// case holds it.
static POSTGRES: Mutex<Weak<PostgresServer>> = Mutex::new(Weak::new());

/// A number for each case's schema.
static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

impl Store {
    /// A fresh `redis-server` (or the one `REDIS_URL` names).
    pub fn redis() -> Self {
        Self::Redis(RedisServer::start())
    }

    /// A schema of the case's own in the binary's Postgres (or the one `DATABASE_URL` names).
    pub fn postgres() -> Self {
        let server = {
            let mut shared = POSTGRES.lock().unwrap_or_else(PoisonError::into_inner);
            match shared.upgrade() {
                Some(server) => server,
                None => {
                    let server = Arc::new(PostgresServer::start());
                    *shared = Arc::downgrade(&server);
                    server
                }
            }
        };
        let schema = format!("case_{}_{}", std::process::id(), SCHEMAS.fetch_add(1, Ordering::Relaxed));
        Self::Postgres(PgCase { server, schema })
    }

    /// The backend's name, for what a case prints.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::InProcess => "in process",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Opens a queue on this store.
    pub async fn queue(&self, config: QueueConfig) -> Queue {
        match self {
            Self::Redis(redis) => crate::jobs_support::queue(&redis.url, config).await,
            Self::InProcess => Queue::in_process(config).expect("open an in-process queue"),
            Self::Postgres(case) => Queue::connect(case.target().await, config).await.expect("open a postgres queue"),
        }
    }

    /// Another handle on `q`, as another process of the application holds it: on Redis and
    /// Postgres a connection of its own; in process, where no other process can reach the
    /// queue, a clone.
    pub async fn other_handle(&self, q: &Queue) -> Queue {
        match self {
            Self::Redis(redis) => crate::jobs_support::queue(&redis.url, q.config().clone()).await,
            Self::InProcess => q.clone(),
            Self::Postgres(_) => self.queue(q.config().clone()).await,
        }
    }
}

impl PgCase {
    /// A target on a pool of its own, in the case's schema.
    pub async fn target(&self) -> PostgresTarget {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(12)
            .connect(&self.server.url)
            .await
            .expect("connect to postgres");
        PostgresTarget::new(pool).schema(&self.schema).expect("a valid schema name")
    }
}

/// Waits up to 10 s for each of `ids` to reach `want` in its record.
pub async fn wait_state(q: &Queue, ids: &[&str], want: JobState) {
    crate::jobs_support::wait_state(q, ids, want, Duration::from_secs(10)).await;
}

/// The state of job `id`, `None` without a record.
pub async fn state(q: &Queue, id: &str) -> Option<JobState> {
    q.job(id).await.expect("read record").map(|r| r.state)
}

/// How many entries are parked, if the stats can be read.
pub async fn parked_count(q: &Queue) -> Option<u64> {
    Some(q.stats().await.ok()?.parked)
}

/// Every queued job's record, as the operator pages list them: lane after lane (high first),
/// each lane in queue order.
pub async fn queued(q: &Queue) -> Vec<JobRecord> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = q.jobs_page(JobState::Queued, after.as_deref(), 100).await.expect("a page of queued jobs");
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

/// The tick (ms) a schedule's job was enqueued for, from its idempotency key
/// (`sched:<name>:<tick ms>`).
pub fn tick_ms(record: &JobRecord) -> i64 {
    let key = &record.idempotency_key;
    key.rsplit(':').next().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no tick in {key:?}"))
}

/// The ticks of every queued job, in queue order.
pub async fn queued_ticks(q: &Queue) -> Vec<i64> {
    queued(q).await.iter().map(tick_ms).collect()
}

/// A worker for the cases: 8 slots, a 2 s lease, 200 ms blocking reads, delayed entries
/// polled every 20 ms, retries after 50 ms to 2 s.
pub fn fast_worker() -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(8)
        .lease(Duration::from_secs(2))
        .block(Duration::from_millis(200))
        .poll_delayed_every(Duration::from_millis(20))
        .backoff(Duration::from_millis(50), Duration::from_secs(2))
        .shutdown_deadline(Duration::from_secs(5))
}
