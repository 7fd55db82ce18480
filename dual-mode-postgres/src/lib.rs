//! The Postgres store of [`dual-mode`](https://docs.rs/dual-mode)'s job layer, behind
//! [`dual_mode_jobs::backend::Backend`]. Depend on the facade `dual-mode` with its feature
//! `jobs-postgres`, which lets [`Queue::connect`](dual_mode_jobs::Queue::connect) take a
//! [`PostgresTarget`] or an `sqlx::PgPool` as they are:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use dual_mode_jobs::{PushOptions, Queue, QueueConfig};
//! use dual_mode_postgres::PostgresTarget;
//!
//! let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
//! let target = PostgresTarget::new(pool.clone()).schema("jobs")?;
//! let queue = Queue::connect(target.clone(), QueueConfig::new("mail")).await?;
//!
//! // A job that exists only if the order's transaction commits.
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await?;
//! target.push_in(&mut tx, &queue, "Mail", 1, &"order 1", PushOptions::new()).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! # Schema and migrations
//!
//! The tables live in a schema of their own (`dual_mode` unless [`PostgresTarget::schema`]
//! names another), created and upgraded by this crate's versioned migrations when a queue is
//! opened, or by [`PostgresTarget::migrate`]. Their version table is in that schema
//! (`<schema>.migrations`), never sqlx's `_sqlx_migrations`, so the application's own
//! migrations are left alone. Migrations run under a transaction-scoped advisory lock, so
//! several processes opening queues at once apply each migration once. A schema newer than
//! this binary knows is refused with [`MigrateError::TooNew`], naming both versions.
//!
//! # How the guarantees are kept
//!
//! | guarantee | here |
//! |---|---|
//! | a transition is atomic with its record | one transaction per operation (a read, an acknowledgement of a batch and a push without a unique key: one statement) |
//! | a lease, fenced | the entry row's owner and delivery count, checked under `FOR UPDATE` |
//! | a read | `FOR UPDATE SKIP LOCKED` over the ready entries' partial index |
//! | wake-up | `LISTEN/NOTIFY` (sent at commit), a bounded poll as a floor |
//! | unique key | the primary key of the unique keys' table, claimed by `INSERT ... ON CONFLICT` |
//! | rate limits, key concurrency | rows locked `FOR UPDATE` on the queue's home |
//! | schedule ticks | a primary key on (schedule, tick time): one enqueue per tick |
//! | leases under a busy pool | marks and renewals on a few connections of their own |
//!
//! Times (leases, delays, rate limits, records) are the database's: each target measures
//! Postgres's clock against its process's when it opens a queue and again at each upkeep of
//! ended jobs, so workers on machines whose clocks disagree still agree on a lease.
//!
//! Where the operations are, one file per concern: `migrations.rs`, `push.rs` (pushes,
//! delayed pushes, promotion, re-drive, the push in the caller's transaction), `runs.rs`
//! (reads, claims, marks, renewals, acknowledgements, ends), `gates.rs`, `schedules.rs`,
//! `records.rs` (records and cancellation), `admin.rs` (the operator's reads and upkeep),
//! `notify.rs` (the one `LISTEN` connection of a target) and `partition.rs`, the `Backend`
//! implementation over them. The SQL of more than a line is in `sql/` and `migrations/`.

mod admin;
mod codec;
mod gates;
mod migrations;
mod notify;
mod partition;
mod push;
mod records;
mod runs;
mod schedules;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use sqlx::PgPool;

use dual_mode_jobs::backend::{Backend, Connect, KeepMs, Opened, Retention, millis, unix_ms};
use dual_mode_jobs::{QueueConfig, QueueError, QueueKeys};

pub use migrations::{MigrateError, SCHEMA_VERSION};

use notify::Hub;
use partition::PostgresPartition;

/// How many connections of their own lease renewals may hold.
const LEASE_CONNECTIONS: u32 = 4;

/// The schema a target uses unless [`PostgresTarget::schema`] names another.
pub const DEFAULT_SCHEMA: &str = "dual_mode";

/// Names the Postgres store in [`Connect`]: what lets
/// [`Queue::connect`](dual_mode_jobs::Queue::connect) take a [`PostgresTarget`] or a `PgPool`.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

/// Where queues live in Postgres: a pool and the schema of the job layer's tables.
///
/// Clones share the pool and the one `LISTEN` connection that wakes this process's workers.
#[derive(Clone)]
pub struct PostgresTarget {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTarget").field("schema", &self.shared.schema).finish_non_exhaustive()
    }
}

/// What a target's clones and the stores of its queues share.
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    /// The connections of marks and lease renewals (a few, opened on first use with the pool's
    /// options): renewals go on while the application's code holds every connection of its
    /// pool.
    lease_pool: std::sync::OnceLock<PgPool>,
    /// Postgres's clock less this process's, in ms, as last measured: the store's times are
    /// the database's, whatever the clock of the machine that asks.
    skew_ms: AtomicI64,
    /// Whether the skew was measured.
    synced: AtomicBool,
    /// The schema's name, checked to be a plain identifier.
    pub(crate) schema: String,
    /// The `LISTEN` connection and who waits on it.
    pub(crate) hub: Hub,
    /// The queues opened through this target (or a clone of it): those `push_in` pushes to.
    pub(crate) opened: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl PostgresTarget {
    /// Queues on `pool`, in the schema [`DEFAULT_SCHEMA`].
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self::with_schema(pool, DEFAULT_SCHEMA.to_owned())
    }

    fn with_schema(pool: PgPool, schema: String) -> Self {
        let hub = Hub::new(pool.clone(), &schema);
        let shared = Shared {
            pool,
            lease_pool: std::sync::OnceLock::new(),
            skew_ms: AtomicI64::new(0),
            synced: AtomicBool::new(false),
            schema,
            hub,
            opened: std::sync::Mutex::default(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// The same pool, with the job layer's tables in schema `name`: lower-case ASCII letters,
    /// digits and `_`, starting with a letter or `_`, at most 63 bytes (so that it needs no
    /// quoting anywhere).
    ///
    /// # Errors
    /// [`MigrateError::BadSchemaName`] for any other name.
    pub fn schema(self, name: &str) -> Result<Self, MigrateError> {
        migrations::check_schema_name(name)?;
        Ok(Self::with_schema(self.shared.pool.clone(), name.to_owned()))
    }

    /// The schema of the job layer's tables.
    #[must_use]
    pub fn schema_name(&self) -> &str {
        &self.shared.schema
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Creates the schema or upgrades it to [`SCHEMA_VERSION`]; the version it was at before
    /// (0: none). Opening a queue does this too; call it from a deploy step to do it first.
    ///
    /// # Errors
    /// [`MigrateError::TooNew`] when the schema is of a newer version than this binary knows;
    /// [`MigrateError::Database`] when Postgres fails.
    pub async fn migrate(&self) -> Result<u32, MigrateError> {
        migrations::migrate(&self.shared.pool, &self.shared.schema).await
    }
}

impl From<PgPool> for PostgresTarget {
    fn from(pool: PgPool) -> Self {
        Self::new(pool)
    }
}

/// One partition of one queue in the target's schema.
#[derive(Clone)]
pub(crate) struct Store {
    pub(crate) shared: Arc<Shared>,
    /// This partition's key (`q` in every table).
    pub(crate) q: Arc<str>,
    /// The queue's home partition's key: the channel of its ended jobs.
    pub(crate) home: Arc<str>,
    /// What is kept of ended jobs.
    pub(crate) retention: Retention,
    /// The most entries the parked list keeps.
    pub(crate) parked_max_len: i64,
}

impl Store {
    /// `text` with the schema in place of `@schema@`.
    pub(crate) fn sql(&self, text: &str) -> String {
        sql_in(&self.shared.schema, text)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// The database's time in ms since the epoch: this process's clock and the last measured
    /// skew.
    /// What is kept of jobs that ended in `state`; `None` for a state that does not end a job.
    pub(crate) fn keep(&self, state: &str) -> Option<KeepMs> {
        self.retention.of(state)
    }

    /// How long a record of a job that ended in `state` lives, in ms; `None` for no time
    /// limit, or a state that does not end a job.
    pub(crate) fn age_ms(&self, state: &str) -> Option<i64> {
        self.keep(state)?.age_ms.map(as_i64)
    }

    pub(crate) fn now_ms(&self) -> i64 {
        local_ms().saturating_add(self.shared.skew_ms.load(Ordering::Relaxed))
    }

    /// Measures the database's clock against this process's (half a round trip is the error).
    pub(crate) async fn sync_clock(&self) -> Result<(), QueueError> {
        let before = local_ms();
        let db: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
            .fetch_one(self.pool())
            .await
            .map_err(pg("read the database's clock"))?;
        let after = local_ms();
        let local = before + (after - before) / 2;
        self.shared.skew_ms.store(db.saturating_sub(local), Ordering::Relaxed);
        self.shared.synced.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// [`Store::sync_clock`] unless it was measured already.
    pub(crate) async fn sync_clock_once(&self) -> Result<(), QueueError> {
        if self.shared.synced.load(Ordering::Relaxed) { Ok(()) } else { self.sync_clock().await }
    }

    /// The pool of lease renewals (made on first use, inside the runtime).
    pub(crate) fn lease_pool(&self) -> &PgPool {
        self.shared.lease_pool.get_or_init(|| {
            let options = self.shared.pool.connect_options().as_ref().clone();
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(LEASE_CONNECTIONS)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(options)
        })
    }

    /// The channel that wakes readers of this target's partitions.
    pub(crate) fn added_channel(&self) -> String {
        notify::added_channel(&self.shared.schema)
    }

    /// The channel of ended jobs.
    pub(crate) fn ended_channel(&self) -> String {
        notify::ended_channel(&self.shared.schema)
    }
}

/// `text` with `schema` in place of `@schema@`.
pub(crate) fn sql_in(schema: &str, text: &str) -> String {
    text.replace("@schema@", schema)
}

/// The key of a queue's partition: the stream name of its keys (unique per queue and
/// partition, as on Redis).
fn partition_key(keys: &QueueKeys) -> Arc<str> {
    Arc::from(keys.stream.as_str())
}

/// This process's time in ms since the epoch, as a database number.
fn local_ms() -> i64 {
    as_i64(unix_ms(SystemTime::now()))
}

/// A count or a time as a database number (saturating).
pub(crate) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A duration in ms as a database number.
pub(crate) fn ms_of(d: Duration) -> i64 {
    as_i64(millis(d))
}

/// A database number as a count (negative ones as 0).
pub(crate) fn as_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The error of `op` for a failure of Postgres: unreachable (I/O, the pool) or refused.
pub(crate) fn pg(op: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
    move |source| match source {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            QueueError::Unavailable { op, source: Box::new(source) }
        }
        other => QueueError::Store { op, source: Box::new(other) },
    }
}

impl Connect<Postgres> for PostgresTarget {
    async fn open(self, config: &QueueConfig) -> Result<Opened, QueueError> {
        migrations::migrate(&self.shared.pool, &self.shared.schema)
            .await
            .map_err(|e| QueueError::Store { op: "migrate the job schema", source: Box::new(e) })?;
        let keys = QueueKeys::new(&config.name);
        let retention = config.retention();
        let home_q = partition_key(&keys);
        let store = |q: Arc<str>| Store {
            shared: self.shared.clone(),
            q,
            home: home_q.clone(),
            retention,
            parked_max_len: as_i64(retention.parked_max_len.max(1)),
        };
        let home = store(home_q.clone());
        home.sync_clock().await?;
        let known = home.claim_partitions(config.partitions).await?;
        if known != config.partitions {
            return Err(QueueError::Config(format!(
                "queue {:?} has {known} partitions in Postgres (schema {}), not {}: every process must open a \
                 queue with its number of partitions",
                config.name, self.shared.schema, config.partitions
            )));
        }
        let home_part: Arc<dyn Backend> = Arc::new(PostgresPartition::new(home));
        let parts = if config.partitions == 1 {
            vec![home_part.clone()]
        } else {
            let n = usize::from(config.partitions);
            (0..n)
                .map(|i| {
                    let q = partition_key(&QueueKeys::partition(&config.name, i, n));
                    Arc::new(PostgresPartition::new(store(q))) as Arc<dyn Backend>
                })
                .collect()
        };
        self.shared.opened.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(config.name.clone());
        Ok(Opened { home: home_part, parts })
    }
}

/// A pool as it is, in the schema [`DEFAULT_SCHEMA`]. Each call makes a target of its own,
/// with its own `LISTEN` connection: to open several queues, open them on one
/// [`PostgresTarget`] (and its clones), which share it.
impl Connect<Postgres> for PgPool {
    fn open(self, config: &QueueConfig) -> impl std::future::Future<Output = Result<Opened, QueueError>> + Send {
        PostgresTarget::new(self).open(config)
    }
}
