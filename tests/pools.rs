//! sqlx pools as built-in resources, on real servers started here: a Postgres (`initdb` +
//! `postgres`), a MariaDB (`mariadbd`) and SQLite files. The servers' own connection counts
//! (`pg_stat_activity`, `Threads_connected`) come back to their baseline after 1,000 jobs with
//! temporary pools, whether the jobs succeed, return `Err`, panic, time out or are cancelled;
//! with a worker's `Context`, they stay at the pool's size for the whole run.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::RedisServer;
use dual_mode::jobs::{Clients, Job, JobError, JobInfo, PushOptions, Queue, QueueConfig, Worker};
use dual_mode::{Context, DualMode, EnterErrorKind, Secret};
use dual_mode_test_support::{MariaDbServer, PostgresServer, TempDir};
use jobs_support::{fast_worker, queue, unique, wait_for};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, MySqlConnection, PgConnection};
use tokio::sync::oneshot;

/// The secret's source name: the database URL (with its password) is never in a spec.
const URL_SOURCE: &str = "POOLS_TEST_DATABASE_URL";
/// What the panicking jobs say, kept out of the test's output.
const DELIBERATE: &str = "deliberate panic in a pool job";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Mode {
    Ok,
    Fail,
    Panic,
    /// Runs past its push's timeout.
    Slow,
    /// Waits to be cancelled.
    Stuck,
}

/// Ids of the `Stuck` jobs that are running, for the test to cancel.
static STUCK: Mutex<Vec<String>> = Mutex::new(Vec::new());

async fn behave(mode: Mode, job: &JobInfo) -> Result<(), JobError> {
    match mode {
        Mode::Ok => Ok(()),
        Mode::Fail => Err(JobError::failed("a failing pool job")),
        Mode::Panic => panic!("{DELIBERATE}"),
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        Mode::Stuck => {
            STUCK.lock().expect("lock").push(job.id().to_owned());
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
    }
}

/// A job that queries through its pool, then behaves as its mode says.
#[derive(DualMode)]
struct PgTask {
    mode: Mode,
    #[dual_mode(shared, config = database_url)]
    db: sqlx::PgPool,
    #[dual_mode(secret, env = "POOLS_TEST_DATABASE_URL")]
    database_url: Secret<String>,
}

impl Job for PgTask {
    type Output = ();

    async fn run(&self, job: &JobInfo) -> Result<(), JobError> {
        sqlx::query("SELECT 1").execute(&self.db).await.map_err(JobError::failed)?;
        behave(self.mode, job).await
    }
}

/// [`PgTask`] on MariaDB.
#[derive(DualMode)]
struct MyTask {
    mode: Mode,
    #[dual_mode(shared, config = database_url)]
    db: sqlx::MySqlPool,
    #[dual_mode(secret, env = "POOLS_TEST_DATABASE_URL")]
    database_url: Secret<String>,
}

impl Job for MyTask {
    type Output = ();

    async fn run(&self, job: &JobInfo) -> Result<(), JobError> {
        sqlx::query("SELECT 1").execute(&self.db).await.map_err(JobError::failed)?;
        behave(self.mode, job).await
    }
}

/// A connection that asks a server how many client connections it has, itself left out.
enum Counter {
    Pg(PgConnection),
    My(MySqlConnection),
}

impl Counter {
    async fn pg(url: &str) -> Self {
        Self::Pg(PgConnection::connect(url).await.expect("connect to postgres"))
    }

    async fn mysql(url: &str) -> Self {
        Self::My(MySqlConnection::connect(url).await.expect("connect to mariadb"))
    }

    async fn count(&mut self) -> i64 {
        match self {
            Self::Pg(c) => sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .fetch_one(c)
            .await
            .expect("pg_stat_activity"),
            Self::My(c) => {
                let (_, value): (String, String) =
                    sqlx::query_as("SHOW STATUS LIKE 'Threads_connected'").fetch_one(c).await.expect("SHOW STATUS");
                value.parse::<i64>().expect("a number") - 1
            }
        }
    }

    /// Polls until the count is `want` (a closed connection leaves the server a moment later);
    /// returns the last count seen.
    async fn settles_at(&mut self, want: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.count().await;
            if got == want || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What a sampler returns: its counter, the least and most connections seen, the samples taken.
type Sampled = (Counter, i64, i64, usize);

/// Samples a server's count every 10 ms until told to stop.
fn sample(mut counter: Counter) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Sampled>) {
    let (tx, mut rx) = oneshot::channel::<()>();
    let h = tokio::spawn(async move {
        let (mut min, mut max, mut n) = (i64::MAX, i64::MIN, 0);
        loop {
            let c = counter.count().await;
            (min, max, n) = (min.min(c), max.max(c), n + 1);
            tokio::select! {
                _ = &mut rx => return (counter, min, max, n),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    (tx, h)
}

/// Every value this Redis holds, as text: what a queue stored.
async fn everything_stored(redis: &RedisServer) -> String {
    let mut con = jobs_support::con(&redis.url).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.expect("KEYS");
    let mut all = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.expect("TYPE");
        let values: Vec<redis::Value> = match kind.as_str() {
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut con).await.expect("XRANGE"),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await.expect("HGETALL"),
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut con).await.expect("GET")],
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.expect("ZRANGE"),
            _ => Vec::new(),
        };
        let _ = writeln!(all, "{key}: {values:?}");
    }
    all
}

fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info.payload().downcast_ref::<String>().is_some_and(|m| m == DELIBERATE);
            if !deliberate {
                default(info);
            }
        }));
    });
}

/// How the 1,000 jobs behave, and how many of each end parked.
const MIX: [(Mode, usize); 5] =
    [(Mode::Ok, 800), (Mode::Fail, 80), (Mode::Panic, 40), (Mode::Slow, 40), (Mode::Stuck, 40)];

/// Pushes 1,000 jobs whose pools are temporary (opened from the secret URL in `ctx`), runs
/// them on 8 slots, cancels the stuck ones as they start, and returns the server's count
/// (baseline, peak during, after).
async fn thousand_jobs<S: Job>(
    what: &str,
    mut counter: Counter,
    ctx: Context,
    password: &str,
    spec: fn(Mode) -> S::Spec,
) -> (i64, i64, i64) {
    quiet_deliberate_panics();
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique(what)).max_attempts(1)).await;
    let baseline = counter.count().await;
    let mut stuck_ids = HashSet::new();
    for (mode, n) in MIX {
        let options = if mode == Mode::Slow {
            PushOptions::new().timeout(Duration::from_millis(100))
        } else {
            PushOptions::new()
        };
        let specs: Vec<S::Spec> = (0..n).map(|_| spec(mode)).collect();
        let pushed = q.push_specs(&specs, options).await.expect("push");
        if mode == Mode::Stuck {
            stuck_ids.extend(pushed.into_iter().map(|p| p.job_id));
        }
    }
    let stored = everything_stored(&redis).await;
    assert!(stored.contains("Panic"), "the payloads are readable here");
    assert!(!stored.contains(password), "the database password reached the queue");

    let (stop_sampling, sampler) = sample(counter);
    let worker = Worker::new(q.clone(), fast_worker(8)).service::<S>(Clients::Context(Arc::new(ctx)));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let parked: u64 =
        MIX.iter().filter(|(m, _)| matches!(m, Mode::Fail | Mode::Panic | Mode::Slow)).map(|(_, n)| *n as u64).sum();
    let mut cancelled = HashSet::new();
    wait_for(Duration::from_secs(120), "1,000 jobs to end", async || {
        let started: Vec<String> = STUCK.lock().expect("lock").clone();
        for id in started.into_iter().filter(|id| stuck_ids.contains(id)) {
            if cancelled.insert(id.clone()) {
                q.cancel(&id).await.expect("cancel");
            }
        }
        let s = q.stats().await.ok()?;
        (s.is_idle() && s.parked == parked).then_some(())
    })
    .await;
    assert_eq!(cancelled.len(), 40, "every stuck job ran and was cancelled");
    let _ = stop.send(());
    running.await.expect("worker task").expect("worker");
    let _ = stop_sampling.send(());
    let (mut counter, _, peak, n_samples) = sampler.await.expect("sampler");
    let after = counter.settles_at(baseline).await;
    eprintln!("{what}: {n_samples} samples; connections baseline {baseline}, peak during {peak}, after {after}");
    (baseline, peak, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_return_to_baseline_after_1000_jobs_with_temporary_pools() {
    let pg = PostgresServer::start();
    let url = pg.url.replace("postgres@", "postgres:pg-pw-4711@");
    let ctx = Context::new().with_keyed(URL_SOURCE, Secret::new(url));
    let counter = Counter::pg(&pg.url).await;
    let (baseline, peak, after) =
        thousand_jobs::<PgTask>("pg-1000", counter, ctx, "pg-pw-4711", |mode| PgTaskSpec { mode }).await;
    assert!(peak > baseline, "the jobs' pools were seen by the server");
    // One connection per running job (8 slots), and a closed one lingers until its server
    // process has exited: a leak would grow with the jobs, far past this.
    assert!(peak <= baseline + 16, "one connection per running job, saw {peak}");
    assert_eq!(after, baseline, "every temporary pool was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connections_return_to_baseline_after_1000_jobs_with_temporary_pools() {
    let db = MariaDbServer::start();
    let url = db.url.replace("root@", "root:my-pw-4711@");
    let ctx = Context::new().with_keyed(URL_SOURCE, Secret::new(url));
    let counter = Counter::mysql(&db.url).await;
    let (baseline, peak, after) =
        thousand_jobs::<MyTask>("my-1000", counter, ctx, "my-pw-4711", |mode| MyTaskSpec { mode }).await;
    assert!(peak > baseline, "the jobs' pools were seen by the server");
    // One connection per running job (8 slots), and a closed one lingers until its server
    // process has exited: a leak would grow with the jobs, far past this.
    assert!(peak <= baseline + 16, "one connection per running job, saw {peak}");
    assert_eq!(after, baseline, "every temporary pool was closed");
}

/// 300 jobs on a worker whose context holds a warm pool of 3: the server sees 3 connections
/// at every sample of the run, and the pool is still open after it.
async fn warm_pool_run<S: Job, P: Clone + Send + Sync + 'static>(
    what: &str,
    mut counter: Counter,
    pool: P,
    size: i64,
    spec: fn(Mode) -> S::Spec,
) -> (i64, i64, i64) {
    let redis = RedisServer::start();
    let q: Queue = queue(&redis.url, QueueConfig::new(unique(what))).await;
    assert_eq!(counter.settles_at(size).await, size, "the warm pool holds its connections");
    let specs: Vec<S::Spec> = (0..300).map(|_| spec(Mode::Ok)).collect();
    q.push_specs(&specs, PushOptions::new()).await.expect("push");
    let (stop_sampling, sampler) = sample(counter);
    let ctx = Arc::new(Context::new().with(pool));
    let worker = Worker::new(q.clone(), fast_worker(8)).service::<S>(Clients::Context(ctx));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    wait_for(Duration::from_secs(60), "300 jobs", async || q.stats().await.ok()?.is_idle().then_some(())).await;
    let _ = stop.send(());
    running.await.expect("worker task").expect("worker");
    let _ = stop_sampling.send(());
    let (mut counter, min, max, n_samples) = sampler.await.expect("sampler");
    let after = counter.count().await;
    eprintln!("{what}: {n_samples} samples; connections min {min}, max {max} during, {after} after the run");
    (min, max, after)
}

/// A pool of `size` connections, all open.
async fn warm<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, size: usize) {
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(pool.acquire().await.expect("acquire"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_context_keeps_one_warm_postgres_pool_for_all_jobs() {
    let pg = PostgresServer::start();
    let url = format!("{}?max_connections=3&min_connections=3", pg.url);
    let pool = <sqlx::PgPool as dual_mode::Resource>::open(&url).await.expect("open");
    warm(&pool, 3).await;
    let counter = Counter::pg(&pg.url).await;
    let (min, max, after) =
        warm_pool_run::<PgTask, _>("pg-warm", counter, pool.clone(), 3, |mode| PgTaskSpec { mode }).await;
    assert_eq!((min, max, after), (3, 3, 3), "the pool's size for the whole run, and open after it");
    dual_mode::Resource::close(pool).await.expect("close");
    assert_eq!(Counter::pg(&pg.url).await.settles_at(0).await, 0, "closed at the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_context_keeps_one_warm_mariadb_pool_for_all_jobs() {
    let db = MariaDbServer::start();
    let url = format!("{}?max_connections=3&min_connections=3", db.url);
    let pool = <sqlx::MySqlPool as dual_mode::Resource>::open(&url).await.expect("open");
    warm(&pool, 3).await;
    let counter = Counter::mysql(&db.url).await;
    let (min, max, after) =
        warm_pool_run::<MyTask, _>("my-warm", counter, pool.clone(), 3, |mode| MyTaskSpec { mode }).await;
    assert_eq!((min, max, after), (3, 3, 3), "the pool's size for the whole run, and open after it");
    dual_mode::Resource::close(pool).await.expect("close");
    assert_eq!(Counter::mysql(&db.url).await.settles_at(0).await, 0, "closed at the end");
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    database_url: String,
}

#[derive(DualMode)]
struct Ledger {
    settings: Settings,
    #[dual_mode(shared, config = settings.database_url)]
    db: sqlx::PgPool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_database_url_is_an_enter_error_naming_the_field() {
    let pg = PostgresServer::start();
    let cases = [
        ("not a url", "no scheme"),
        (&*format!("{}?max_connections=many", pg.url), "a pool parameter that is not a number"),
        (&*pg.url.replace("/postgres", "/no_such_database"), "a database that does not exist"),
        (
            &*format!("postgres://postgres@127.0.0.1:{}/postgres?acquire_timeout_ms=300", common::free_port()),
            "no server",
        ),
    ];
    for (url, what) in cases {
        let spec = LedgerSpec { settings: Settings { database_url: url.to_owned() } };
        let started = Instant::now();
        let Err(e) = LedgerParts::from(spec).enter().await else { panic!("{what}: entered") };
        assert_eq!((e.site().service, e.site().field), ("Ledger", "db"), "{what}: {e}");
        assert!(matches!(e.kind(), EnterErrorKind::Open(_)), "{what}: {e:?}");
        assert!(e.to_string().contains("`Ledger.db`"), "{what}: {e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: failed at once, not later");
    }
    assert_eq!(Counter::pg(&pg.url).await.settles_at(0).await, 0, "no connection left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_closes_the_pool_it_opened_and_leaves_an_injected_one_open() {
    let pg = PostgresServer::start();
    let mut counter = Counter::pg(&pg.url).await;
    let spec = LedgerSpec { settings: Settings { database_url: pg.url.clone() } };

    let guard = LedgerParts::from(spec.clone()).enter().await.expect("enter");
    let n: i32 = sqlx::query_scalar("SELECT 41 + 1").fetch_one(&guard.db).await.expect("query");
    assert_eq!(n, 42);
    assert_eq!(counter.settles_at(1).await, 1, "a temporary pool holds one connection");
    // A clone that outlives the guard (kept by a task, a cache) would keep a dropped pool's
    // connection open; a closed pool is closed for every clone.
    let kept = guard.db.clone();
    guard.exit().await.expect("exit");
    assert_eq!(counter.settles_at(0).await, 0, "exit closed it");
    assert!(kept.is_closed(), "closed, not only dropped");

    let failed: Result<(), dual_mode::BoxError> = spec
        .clone()
        .run(async |l: &Ledger| {
            Err(sqlx::query("SELECT nope").execute(&l.db).await.err().map_or("".into(), Into::into))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(counter.settles_at(0).await, 0, "closed after an Err");

    let injected = <sqlx::PgPool as dual_mode::Resource>::open(&pg.url).await.expect("open");
    let guard = LedgerParts { db: Some(injected.clone()), ..spec.into() }.enter().await.expect("enter");
    guard.exit().await.expect("exit");
    assert!(!injected.is_closed(), "an injected pool is not closed");
    assert_eq!(counter.settles_at(1).await, 1, "its connection is still there");
    injected.close().await;
    assert_eq!(counter.settles_at(0).await, 0);
}

#[derive(DualMode)]
struct Anywhere {
    settings: Settings,
    #[dual_mode(shared, config = settings.database_url)]
    db: sqlx::AnyPool,
}

/// One service, two databases: the URL's scheme picks the driver; the pool a guard opened is
/// closed on exit (the server sees its connection go), on Postgres as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_any_pool_takes_its_driver_from_the_url_and_closes_on_exit() {
    let pg = PostgresServer::start();
    let mut counter = Counter::pg(&pg.url).await;
    let dir = TempDir::new("any-pool").expect("temp dir");
    let sqlite = format!("sqlite://{}?mode=rwc", dir.0.join("any.db").display());
    for url in [pg.url.clone(), sqlite] {
        let spec = AnywhereSpec { settings: Settings { database_url: url.clone() } };
        let guard = AnywhereParts::from(spec).enter().await.expect("enter");
        assert_eq!(guard.opened(), 1);
        let n: i64 = sqlx::query_scalar("SELECT CAST(41 + 1 AS BIGINT)").fetch_one(&guard.db).await.expect("query");
        assert_eq!(n, 42, "{url}");
        let kept = guard.db.clone();
        guard.exit().await.expect("exit");
        assert!(kept.is_closed(), "{url}: closed, not only dropped");
    }
    assert_eq!(counter.settles_at(0).await, 0, "Postgres saw the connection go");
    let wrong = AnywhereSpec { settings: Settings { database_url: "nosuchdb://127.0.0.1/x".into() } };
    let err = AnywhereParts::from(wrong).enter().await.err().expect("an unknown scheme fails on enter");
    let chain = dual_mode::jobs::error_chain(&err);
    assert!(chain.contains("`Anywhere.db`") && chain.contains("nosuchdb"), "names the field and the scheme: {chain}");
}

#[derive(DualMode)]
struct Notes {
    settings: Settings,
    #[dual_mode(shared, config = settings.database_url)]
    db: sqlx::SqlitePool,
}

/// Open descriptors of this process on files under `dir`: SQLite's connections, seen by the
/// kernel.
fn open_files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|target| target.starts_with(dir)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_sqlite_pool_closes_its_files_on_every_path() {
    let dir = TempDir::new("sqlite").expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.0.join("notes.db").display());
    let spec = NotesSpec { settings: Settings { database_url: url } };
    let files = async || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = open_files_under(&dir.0);
            if n == 0 || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    let guard = NotesParts::from(spec.clone()).enter().await.expect("enter");
    sqlx::query("CREATE TABLE note (body TEXT)").execute(&guard.db).await.expect("create");
    sqlx::query("INSERT INTO note VALUES ('kept')").execute(&guard.db).await.expect("insert");
    assert!(open_files_under(&dir.0) > 0, "the pool holds the file open");
    guard.exit().await.expect("exit");
    assert_eq!(files().await, 0, "exit closed the file");

    let err: Result<(), dual_mode::BoxError> = spec
        .clone()
        .run(async |n: &Notes| {
            let body: String = sqlx::query_scalar("SELECT body FROM note").fetch_one(&n.db).await?;
            assert_eq!(body, "kept");
            Err("the body failed".into())
        })
        .await;
    assert!(err.is_err());
    assert_eq!(files().await, 0, "closed after an Err");

    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        spec.run(async |n: &Notes| -> Result<(), dual_mode::BoxError> {
            sqlx::query("SELECT 1").execute(&n.db).await?;
            std::future::pending::<()>().await;
            Ok(())
        }),
    )
    .await;
    assert!(cancelled.is_err(), "the body never ends");
    assert_eq!(files().await, 0, "closed after a cancellation");
}

#[derive(DualMode)]
struct Orders {
    settings: Settings,
    #[dual_mode(shared, config = settings.database_url)]
    db: deadpool_postgres::Pool,
    #[dual_mode(shared, config = settings.database_url)]
    orm: sea_orm::DatabaseConnection,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_and_sea_orm_pools_are_opened_at_once_and_closed_on_exit() {
    let pg = PostgresServer::start();
    let mut counter = Counter::pg(&pg.url).await;
    let spec = OrdersSpec { settings: Settings { database_url: pg.url.clone() } };

    let guard = OrdersParts::from(spec.clone()).enter().await.expect("enter");
    assert_eq!(counter.settles_at(2).await, 2, "one connection each, opened on enter");
    let client = guard.db.get().await.expect("get");
    let row = client.query_one("SELECT 40 + 2", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 42);
    drop(client);
    sea_orm::ConnectionTrait::execute_unprepared(&guard.orm, "SELECT 1").await.expect("sea-orm query");
    let kept = guard.db.clone();
    guard.exit().await.expect("exit");
    assert!(kept.is_closed(), "closed, not only dropped");
    assert_eq!(counter.settles_at(0).await, 0, "exit closed both");

    let wrong = OrdersSpec { settings: Settings { database_url: pg.url.replace("/postgres", "/no_such_database") } };
    let Err(e) = OrdersParts::from(wrong).enter().await else { panic!("entered a database that does not exist") };
    assert_eq!(e.site().field, "db", "{e}");
    assert_eq!(counter.settles_at(0).await, 0, "no connection left behind");
}

/// Requests seen by the middleware of [`with_stack`].
static THROUGH_MIDDLEWARE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(DualMode)]
struct Fetcher {
    http_config: dual_mode::HttpConfig,
    base_url: String,
    #[dual_mode(shared, open = with_stack)]
    http: reqwest_middleware::ClientWithMiddleware,
}

/// A middleware that counts the requests it sees.
fn count<'a>(
    req: reqwest::Request,
    ext: &'a mut axum::http::Extensions,
    next: reqwest_middleware::Next<'a>,
) -> std::pin::Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>> {
    THROUGH_MIDDLEWARE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Box::pin(next.run(req, ext))
}

/// The middleware stack, from the spec.
#[allow(clippy::unused_async, reason = "an `open = path` function is async")]
async fn with_stack(spec: &FetcherSpec) -> Result<reqwest_middleware::ClientWithMiddleware, reqwest::Error> {
    Ok(spec.http_config.middleware()?.with(count).build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middleware_client_gets_its_stack_from_the_spec_and_closes_its_connections() {
    let server = dual_mode_test_support::CountingHttp::start().await;
    let spec = FetcherSpec { http_config: dual_mode::HttpConfig::default(), base_url: server.url() };
    let status = spec
        .run(async |f: &Fetcher| -> Result<u16, dual_mode::BoxError> {
            Ok(f.http.get(&f.base_url).send().await?.status().as_u16())
        })
        .await
        .expect("run");
    assert_eq!(status, 200);
    assert_eq!(THROUGH_MIDDLEWARE.load(std::sync::atomic::Ordering::SeqCst), 1, "through the spec's stack");
    assert_eq!(server.accepted(), 1);
    assert_eq!(common::eventually(0, async || server.open()).await, 0, "its connection closed after the run");
}
