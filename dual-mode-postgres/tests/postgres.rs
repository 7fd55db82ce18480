//! The Postgres store's own tests, on a throwaway cluster of this test binary: migrations
//! (versioned, in a named schema, serialized across connections, a newer schema refused),
//! pushes in the caller's transaction, and a drain's rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use dual_mode_jobs::{JobInfo, JobState, PushOptions, Queue, QueueConfig, QueueError, Worker, WorkerConfig, typed};
use dual_mode_postgres::{MigrateError, PostgresTarget, SCHEMA_VERSION};
use dual_mode_test_support::{PostgresServer, wait_until};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The binary's Postgres, stopped when no running test holds it.
static POSTGRES: Mutex<Weak<PostgresServer>> = Mutex::new(Weak::new());

fn server() -> Arc<PostgresServer> {
    let mut shared = POSTGRES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(server) = shared.upgrade() {
        return server;
    }
    let server = Arc::new(PostgresServer::start());
    *shared = Arc::downgrade(&server);
    server
}

/// A name unique within this test process.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

async fn pool(server: &PostgresServer) -> PgPool {
    PgPoolOptions::new().max_connections(12).connect(&server.url).await.expect("connect to postgres")
}

fn worker() -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(8)
        .lease(Duration::from_secs(2))
        .block(Duration::from_millis(100))
        .poll_delayed_every(Duration::from_millis(20))
        .shutdown_deadline(Duration::from_secs(5))
}

/// Counts the runs of each job (by payload).
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<u64>>>);

impl Runs {
    fn worker(&self, q: Queue) -> Worker {
        let runs = self.clone();
        Worker::new(q, worker()).handle(
            "Unit",
            typed(move |n: u64, _job: JobInfo| {
                runs.0.lock().unwrap_or_else(PoisonError::into_inner).push(n);
                async { Ok(()) }
            }),
        )
    }

    fn of(&self, n: u64) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().filter(|r| **r == n).count()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_create_the_schema_once_with_their_own_version_table() {
    let server = server();
    let pool = pool(&server).await;
    let schema = unique("mig");
    let target = PostgresTarget::new(pool.clone()).schema(&schema).expect("valid name");
    assert_eq!(target.migrate().await.expect("migrate"), 0, "a fresh schema was at version 0");
    assert_eq!(target.migrate().await.expect("migrate again"), SCHEMA_VERSION, "nothing left to apply");
    let versions: Vec<i32> = sqlx::query_scalar(&format!("SELECT version FROM {schema}.migrations ORDER BY 1"))
        .fetch_all(&pool)
        .await
        .expect("read the version table");
    assert_eq!(versions, (1..=i32::try_from(SCHEMA_VERSION).expect("small")).collect::<Vec<_>>());
    let sqlx_table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(&pool)
        .await
        .expect("look for sqlx's table");
    assert_eq!(sqlx_table, None, "the user's migration table is left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_from_many_connections_at_once_apply_once() {
    let server = server();
    let schema = unique("race");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let pool = pool(&server).await;
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            PostgresTarget::new(pool).schema(&schema).expect("valid name").migrate().await
        }));
    }
    let mut from = Vec::new();
    for task in tasks {
        from.push(task.await.expect("task ran").expect("every migration succeeds"));
    }
    from.sort_unstable();
    assert_eq!(from[0], 0, "one of them created the schema");
    assert!(from[1..].iter().all(|v| *v == SCHEMA_VERSION), "the others found it done: {from:?}");
    let pool = pool(&server).await;
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.migrations"))
        .fetch_one(&pool)
        .await
        .expect("count versions");
    assert_eq!(rows, i64::from(SCHEMA_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused_by_name() {
    let server = server();
    let pool = pool(&server).await;
    let schema = unique("newer");
    let target = PostgresTarget::new(pool.clone()).schema(&schema).expect("valid name");
    target.migrate().await.expect("migrate");
    sqlx::query(&format!("INSERT INTO {schema}.migrations (version, name) VALUES (99, 'from the future')"))
        .execute(&pool)
        .await
        .expect("a newer version");
    match target.migrate().await {
        Err(MigrateError::TooNew { schema: s, found: 99, known }) => {
            assert_eq!((s, known), (schema.clone(), SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let err = Queue::connect(target, QueueConfig::new("q")).await.expect_err("refused");
    let QueueError::Store { source, .. } = &err else { panic!("expected a store error, got {err:?}") };
    let migrate = source.downcast_ref::<MigrateError>().expect("the migration's error");
    let text = migrate.to_string();
    assert!(text.contains("version 99") && text.contains(&format!("version {SCHEMA_VERSION}")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schema_name_is_a_typed_error() {
    let server = server();
    let pool = pool(&server).await;
    for bad in ["", "Jobs", "a;drop table x", "9lives"] {
        let err = PostgresTarget::new(pool.clone()).schema(bad).expect_err(bad);
        assert!(matches!(&err, MigrateError::BadSchemaName { name } if name == bad), "{err}");
    }
}

/// A queue and its target in a schema of its own.
async fn queue(server: &PostgresServer, name: &str) -> (PostgresTarget, Queue) {
    let target = PostgresTarget::new(pool(server).await).schema(&unique("tx")).expect("valid name");
    let q = Queue::connect(target.clone(), QueueConfig::new(name)).await.expect("open a queue");
    (target, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_in_a_committed_transaction_runs_once() {
    let server = server();
    let (target, q) = queue(&server, "commit").await;
    let runs = Runs::default();
    let w = runs.worker(q.clone()).spawn();
    let mut tx = target.pool().begin().await.expect("begin");
    let pushed = target.push_in(&mut tx, &q, "Unit", 1, &7u64, PushOptions::new()).await.expect("push");
    tx.commit().await.expect("commit");
    wait_until(Duration::from_secs(10), "the job to run", async || runs.of(7) == 1).await;
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    wait_until(Duration::from_secs(5), "the job to be done", async || {
        q.job(&pushed.job_id).await.ok().flatten().is_some_and(|r| r.state == JobState::Done)
    })
    .await;
    w.stop().await.expect("stop");
    assert_eq!(runs.of(7), 1, "ran exactly once: {record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_in_a_rolled_back_transaction_never_exists() {
    let server = server();
    let (target, q) = queue(&server, "rollback").await;
    let runs = Runs::default();
    let w = runs.worker(q.clone()).spawn();
    let mut tx = target.pool().begin().await.expect("begin");
    let pushed = target.push_in(&mut tx, &q, "Unit", 1, &8u64, PushOptions::new()).await.expect("push");
    let delayed = target
        .push_in(&mut tx, &q, "Unit", 1, &9u64, PushOptions::new().delay(Duration::from_millis(10)))
        .await
        .expect("delayed push");
    tx.rollback().await.expect("rollback");
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop().await.expect("stop");
    assert_eq!(runs.len(), 0, "nothing ran");
    assert!(q.job(&pushed.job_id).await.expect("read").is_none(), "no record");
    assert!(q.job(&delayed.job_id).await.expect("read").is_none(), "no record of the delayed one");
    assert!(q.stats().await.expect("stats").is_idle());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_sees_a_job_of_an_open_transaction() {
    let server = server();
    let (target, q) = queue(&server, "open").await;
    let runs = Runs::default();
    let w = runs.worker(q.clone()).spawn();
    let mut tx = target.pool().begin().await.expect("begin");
    let pushed = target.push_in(&mut tx, &q, "Unit", 1, &10u64, PushOptions::new()).await.expect("push");
    // Open for two seconds while the worker reads and waits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.len(), 0, "the worker saw an uncommitted job");
    assert!(q.job(&pushed.job_id).await.expect("read").is_none(), "another connection sees no record");
    assert!(q.stats().await.expect("stats").is_idle(), "nor an entry");
    tx.commit().await.expect("commit");
    wait_until(Duration::from_secs(10), "the committed job to run", async || runs.of(10) == 1).await;
    w.stop().await.expect("stop");
    assert_eq!(runs.of(10), 1);
}

/// A push in a transaction goes to the target's tables: a queue opened elsewhere (another
/// schema, another store) is refused, and the caller's transaction goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_in_a_transaction_refuses_a_queue_not_opened_through_its_target() {
    let server = server();
    let (target, _) = queue(&server, "mine").await;
    let elsewhere = PostgresTarget::new(pool(&server).await).schema(&unique("other")).expect("schema");
    let other = Queue::connect(elsewhere, QueueConfig::new("theirs")).await.expect("queue");
    let in_process = Queue::in_process(QueueConfig::new("local")).expect("queue");
    let mut tx = target.pool().begin().await.expect("begin");
    for q in [&other, &in_process] {
        let err = target.push_in(&mut tx, q, "Unit", 1, &1u64, PushOptions::new()).await.expect_err("refused");
        assert!(matches!(err, QueueError::BadArgument { .. }), "{err}");
    }
    let n: i32 = sqlx::query_scalar("SELECT 41 + 1").fetch_one(&mut *tx).await.expect("the transaction goes on");
    assert_eq!(n, 42);
    tx.rollback().await.expect("rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_claimed_in_a_transaction_holds_against_a_plain_push() {
    let server = server();
    let (target, q) = queue(&server, "unique").await;
    let mut tx = target.pool().begin().await.expect("begin");
    let options = || PushOptions::new().unique("order-1", Duration::from_secs(60));
    let first = target.push_in(&mut tx, &q, "Unit", 1, &1u64, options()).await.expect("push");
    tx.commit().await.expect("commit");
    let second = q.push("Unit", 1, &2u64, options()).await.expect("push");
    assert!(second.duplicate, "the key is held");
    assert_eq!(second.job_id, first.job_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_two_thousand_jobs() {
    const N: usize = 2000;
    let server = server();
    let (_target, q) = queue(&server, "drain").await;
    let started = Instant::now();
    let payloads: Vec<u64> = (0..N as u64).collect();
    q.push_bulk("Unit", 1, &payloads, PushOptions::new()).await.expect("push");
    let pushed = started.elapsed();
    let runs = Runs::default();
    let begun = Instant::now();
    // The shape of the drain: 32 in flight.
    let recorder = runs.clone();
    let w = Worker::new(q.clone(), worker().concurrency(32))
        .handle(
            "Unit",
            typed(move |n: u64, _job: JobInfo| {
                recorder.0.lock().unwrap_or_else(PoisonError::into_inner).push(n);
                async { Ok(()) }
            }),
        )
        .spawn();
    wait_until(Duration::from_secs(60), "every job to run", async || runs.len() >= N).await;
    let drained = begun.elapsed();
    w.stop().await.expect("stop");
    let rate = |d: Duration| f64::from(u32::try_from(N).expect("small")) / d.as_secs_f64();
    println!(
        "bulk push of {N}: {pushed:?} ({:.0} jobs/s); drain with 32 in flight: {drained:?} ({:.0} jobs/s)",
        rate(pushed),
        rate(drained)
    );
    assert_eq!(runs.len(), N, "each ran once");
}

/// A queue's partition as the layer's backend, and a queue handle on the same target.
async fn backend(
    server: &PostgresServer,
    name: &str,
) -> (PostgresTarget, Queue, Arc<dyn dual_mode_jobs::backend::Backend>) {
    use dual_mode_jobs::backend::Connect as _;
    let target = PostgresTarget::new(pool(server).await).schema(&unique("be")).expect("valid name");
    let config = QueueConfig::new(name);
    let opened = target.clone().open(&config).await.expect("open");
    let q = Queue::connect(target.clone(), config).await.expect("open a queue");
    (target, q, opened.parts[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_one_unique_key_admit_one_job() {
    let server = server();
    let (target, q) = queue(&server, "race").await;
    let mut tasks = Vec::new();
    for n in 0..16u64 {
        // Each on a connection of its own, as many processes would push.
        let q = Queue::connect(
            PostgresTarget::new(pool(&server).await).schema(target.schema_name()).expect("name"),
            q.config().clone(),
        )
        .await
        .expect("open");
        tasks.push(tokio::spawn(async move {
            q.push("Unit", 1, &n, PushOptions::new().unique("the-key", Duration::from_secs(60))).await
        }));
    }
    let mut pushed = Vec::new();
    for task in tasks {
        pushed.push(task.await.expect("task ran").expect("push"));
    }
    let added: Vec<_> = pushed.iter().filter(|p| !p.duplicate).collect();
    assert_eq!(added.len(), 1, "one job holds the key: {pushed:?}");
    assert!(pushed.iter().all(|p| p.job_id == added[0].job_id), "every duplicate names the holder");
    assert_eq!(q.stats().await.expect("stats").length, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_is_enqueued_once_however_many_schedulers_race_for_it() {
    use dual_mode_jobs::backend::Ticked;
    let server = server();
    let (target, q, _) = backend(&server, "ticks").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        use dual_mode_jobs::backend::Connect as _;
        let other = PostgresTarget::new(pool(&server).await).schema(target.schema_name()).expect("name");
        let part = other.open(q.config()).await.expect("open").parts[0].clone();
        let (_, env) = q.envelope("Unit", 1, b"1".to_vec(), &PushOptions::new());
        tasks.push(tokio::spawn(async move {
            part.tick("nightly", Duration::from_secs(3600), 1_700_000_000_000, &env, Duration::ZERO).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task ran").expect("tick"));
    }
    let enqueued = answers.iter().filter(|a| matches!(a, Ticked::Enqueued(_))).count();
    let duplicates = answers.iter().filter(|a| **a == Ticked::Duplicate).count();
    assert_eq!((enqueued, duplicates), (1, 7), "{answers:?}");
    assert_eq!(q.stats().await.expect("stats").length, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_a_run_whose_lease_was_claimed_is_fenced_off() {
    use dual_mode_jobs::Lane;
    use dual_mode_jobs::backend::{DoneRun, Read, Written};
    let server = server();
    let (_target, q, part) = backend(&server, "fence").await;
    let pushed = q.push("Unit", 1, &1u64, PushOptions::new()).await.expect("push");
    let mut reader = part.reader(Duration::from_millis(100), Duration::from_secs(1)).await.expect("reader");
    let Read::Entries(got) = reader.read("first", 1, Lane::ALL).await.expect("read") else { panic!("paused") };
    let (lane, (entry, _), _) = got.into_iter().next().expect("an entry");
    // The first consumer stalls; the second claims the expired lease, with a higher token.
    let (_, claimed) = part.claim(lane, "second", 0, "0-0", 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].2, 2, "the token grew");
    let done = |token| DoneRun { entry_id: entry.clone(), token, job_id: pushed.job_id.clone(), ..DoneRun::default() };
    assert_eq!(part.ack(lane, "first", &[done(1)]).await.expect("ack"), vec![Written::Other], "the stale run");
    assert_eq!(part.ack(lane, "second", &[done(2)]).await.expect("ack"), vec![Written::Done]);
    assert_eq!(part.ack(lane, "second", &[done(2)]).await.expect("ack"), vec![Written::Landed], "a retried ack");
    assert_eq!(part.ack(lane, "first", &[done(1)]).await.expect("ack"), vec![Written::Gone]);
    assert_eq!(q.job(&pushed.job_id).await.expect("read").expect("record").state, JobState::Done);
}

/// An acknowledgement tells the ended jobs' listeners only of jobs someone waits for (a wait
/// marks the record before it reads it): a job no one waits for costs no notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_job_someone_waits_for_is_announced_when_it_ends() {
    use dual_mode_jobs::Lane;
    use dual_mode_jobs::backend::{DoneRun, Read, Written};
    use futures_util::StreamExt as _;
    let server = server();
    let (_target, q, part) = backend(&server, "announce").await;
    let unwaited = q.push("Unit", 1, &1u64, PushOptions::new()).await.expect("push").job_id;
    let waited = q.push("Unit", 1, &2u64, PushOptions::new()).await.expect("push").job_id;
    let mut ended = part.finished().await.expect("listen");
    let mut reader = part.reader(Duration::from_millis(100), Duration::from_secs(1)).await.expect("reader");
    let Read::Entries(got) = reader.read("c1", 2, Lane::ALL).await.expect("read") else { panic!("paused") };
    assert_eq!(got.len(), 2);
    assert!(part.keep_waited(&waited).await.expect("mark"), "a live record is marked");
    // One acknowledgement each, the unwaited job's first: notifications come in commit order.
    for ((lane, (entry_id, _), _), job_id) in got.into_iter().zip([&unwaited, &waited]) {
        let run = DoneRun { entry_id, token: 1, job_id: job_id.clone(), attempt: 1, ..DoneRun::default() };
        assert_eq!(part.ack(lane, "c1", &[run]).await.expect("ack"), [Written::Done]);
    }
    let mut heard = Vec::new();
    while !heard.iter().any(|id: &Arc<str>| **id == *waited) {
        let id = tokio::time::timeout(Duration::from_secs(10), ended.next()).await.expect("announced").expect("open");
        heard.push(id);
    }
    assert!(!heard.iter().any(|id| **id == *unwaited), "the unwaited job was announced: {heard:?}");
    assert_eq!(q.job(&unwaited).await.expect("read").expect("record").state, JobState::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_wakes_on_notify_and_polls_when_notifications_are_lost() {
    let server = server();
    let (target, q) = queue(&server, "wake").await;
    let runs = Runs::default();
    let w = Worker::new(q.clone(), worker().block(Duration::from_secs(30))).handle("Unit", {
        let runs = runs.clone();
        typed(move |n: u64, _job: JobInfo| {
            runs.0.lock().unwrap_or_else(PoisonError::into_inner).push(n);
            async { Ok(()) }
        })
    });
    let w = w.spawn();
    // Let it go idle, then push: NOTIFY wakes it well before the one-second poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pushed_at = Instant::now();
    q.push("Unit", 1, &1u64, PushOptions::new()).await.expect("push");
    wait_until(Duration::from_secs(5), "the job to run", async || runs.of(1) == 1).await;
    let woke = pushed_at.elapsed();
    assert!(woke < Duration::from_millis(700), "woken by NOTIFY, not the poll: {woke:?}");
    // Kill the listening connection: pushes meanwhile are found by the bounded poll.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(target.pool())
    .await
    .expect("terminate the listener");
    assert!(killed.iter().any(|k| *k), "a LISTEN connection was there to kill");
    q.push("Unit", 1, &2u64, PushOptions::new()).await.expect("push");
    wait_until(Duration::from_secs(5), "the job pushed while the listener was down", async || runs.of(2) == 1).await;
    w.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_survives_its_connections_being_terminated() {
    const N: usize = 400;
    let server = server();
    let (target, q) = queue(&server, "terminate").await;
    let payloads: Vec<u64> = (0..N as u64).collect();
    q.push_bulk("Unit", 1, &payloads, PushOptions::new()).await.expect("push");
    let runs = Runs::default();
    let w = runs.worker(q.clone()).spawn();
    wait_until(Duration::from_secs(30), "a quarter to run", async || runs.len() >= N / 4).await;
    // Every other connection of the cluster, the worker's and the listener's among them.
    let admin = pool(&server).await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .fetch_all(&admin)
    .await
    .expect("terminate");
    assert!(terminated.len() > 1, "the worker had connections to terminate");
    wait_until(Duration::from_secs(60), "every job to be done", async || q.stats().await.is_ok_and(|s| s.is_idle()))
        .await;
    w.stop().await.expect("stop");
    let mut ran = runs.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
    ran.sort_unstable();
    ran.dedup();
    assert_eq!(ran.len(), N, "every job ran (a run cut off by the termination may have run twice)");
    let (done, total) = q.jobs(JobState::Done, 0, 0).await.expect("count done");
    assert!(done.is_empty());
    assert_eq!(total, N as u64, "every job is recorded done");
    drop(target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_racing_a_worker_and_a_promotion_all_answer() {
    const N: usize = 200;
    let server = server();
    let (_target, q) = queue(&server, "cancels").await;
    let payloads: Vec<u64> = (0..N as u64).collect();
    let mut ids: Vec<String> = q
        .push_bulk("Unit", 1, &payloads[..N / 2], PushOptions::new())
        .await
        .expect("push")
        .into_iter()
        .map(|p| p.job_id)
        .collect();
    for n in &payloads[N / 2..] {
        let p = q.push("Unit", 1, n, PushOptions::new().delay(Duration::from_millis(30))).await.expect("push");
        ids.push(p.job_id);
    }
    let runs = Runs::default();
    let w = runs.worker(q.clone()).spawn();
    let mut tasks = Vec::new();
    for chunk in ids.chunks(25) {
        let (q, chunk) = (q.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for id in chunk {
                out.push(q.cancel(&id).await);
            }
            out
        }));
    }
    for task in tasks {
        for answer in task.await.expect("task ran") {
            answer.expect("every cancellation answers");
        }
    }
    wait_until(Duration::from_secs(30), "the queue to settle", async || q.stats().await.is_ok_and(|s| s.is_idle()))
        .await;
    w.stop().await.expect("stop");
    for id in &ids {
        let state = q.job(id).await.expect("read").expect("a record").state;
        assert!(matches!(state, JobState::Done | JobState::Cancelled), "{id}: {state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_go_on_while_the_application_holds_every_connection_of_its_pool() {
    let server = server();
    let (target, q) = queue(&server, "exhaust").await;
    let runs = Runs::default();
    let slow = |runs: &Runs, q: Queue| {
        let runs = runs.clone();
        let config = worker()
            .lease(Duration::from_secs(1))
            .renew_every(Duration::from_millis(200))
            .claim_every(Duration::from_millis(200));
        Worker::new(q, config).handle(
            "Unit",
            typed(move |n: u64, _job: JobInfo| {
                runs.0.lock().unwrap_or_else(PoisonError::into_inner).push(n);
                async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok(())
                }
            }),
        )
    };
    let a = slow(&runs, q.clone()).spawn();
    let pushed = q.push("Unit", 1, &1u64, PushOptions::new()).await.expect("push");
    wait_until(Duration::from_secs(5), "the job to start", async || runs.of(1) == 1).await;
    // Another process's worker, ready to claim a lease that expires.
    let other = PostgresTarget::new(pool(&server).await).schema(target.schema_name()).expect("name");
    let b = slow(&runs, Queue::connect(other, q.config().clone()).await.expect("open")).spawn();
    // The application takes every connection of the pool the first worker shares with it.
    let mut held = Vec::new();
    for _ in 0..target.pool().options().get_max_connections() {
        match tokio::time::timeout(Duration::from_secs(1), target.pool().acquire()).await {
            Ok(Ok(con)) => held.push(con),
            _ => break,
        }
    }
    assert!(!held.is_empty());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(held);
    wait_until(Duration::from_secs(10), "the job to be done", async || {
        q.job(&pushed.job_id).await.ok().flatten().is_some_and(|r| r.state == JobState::Done)
    })
    .await;
    a.stop().await.expect("stop");
    b.stop().await.expect("stop");
    assert_eq!(runs.of(1), 1, "the lease held: no other worker ran the job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_queue_drains_every_partition_and_keeps_unique_keys_queue_wide() {
    const N: usize = 200;
    let server = server();
    let target = PostgresTarget::new(pool(&server).await).schema(&unique("parts")).expect("valid name");
    let config = QueueConfig::new("parts").partitions(4);
    let q = Queue::connect(target.clone(), config.clone()).await.expect("open");
    let again = Queue::connect(target.clone(), QueueConfig::new("parts").partitions(2)).await;
    assert!(matches!(again, Err(QueueError::Config(_))), "another partition count is refused");
    let payloads: Vec<u64> = (0..N as u64).collect();
    q.push_bulk("Unit", 1, &payloads, PushOptions::new()).await.expect("push");
    let first = q.push("Unit", 1, &1000u64, PushOptions::new().unique("one", Duration::from_secs(60))).await;
    let second = q.push("Unit", 1, &1001u64, PushOptions::new().unique("one", Duration::from_secs(60))).await;
    assert!(!first.expect("push").duplicate);
    assert!(second.expect("push").duplicate, "a unique key holds across partitions");
    let runs = Runs::default();
    let w = runs.worker(q.clone()).spawn();
    wait_until(Duration::from_secs(30), "every job to run", async || runs.len() > N).await;
    wait_until(Duration::from_secs(10), "the queue to settle", async || q.stats().await.is_ok_and(|s| s.is_idle()))
        .await;
    w.stop().await.expect("stop");
    assert_eq!(runs.len(), N + 1, "each ran once");
    let (_, done) = q.jobs(JobState::Done, 0, 0).await.expect("count");
    assert_eq!(done, (N + 1) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_resumes_after_postgres_stops_immediately_and_restarts() {
    const N: usize = 300;
    // A server of its own: it is stopped under the worker.
    let mut server = PostgresServer::start();
    let (_target, q) = queue(&server, "restart").await;
    let payloads: Vec<u64> = (0..N as u64).collect();
    q.push_bulk("Unit", 1, &payloads, PushOptions::new()).await.expect("push");
    let runs = Runs::default();
    let w = runs.worker(q.clone()).spawn();
    wait_until(Duration::from_secs(30), "a sixth to run", async || runs.len() >= N / 6).await;
    tokio::task::block_in_place(|| server.restart_immediate()).expect("restart postgres");
    wait_until(Duration::from_secs(60), "every job to be done", async || {
        q.jobs(JobState::Done, 0, 0).await.is_ok_and(|(_, done)| done == N as u64)
    })
    .await;
    w.stop().await.expect("stop");
    let mut ran = runs.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
    ran.sort_unstable();
    ran.dedup();
    assert_eq!(ran.len(), N, "every job ran (those cut off by the stop may have run twice)");
    assert!(q.stats().await.expect("stats").is_idle());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_leave_the_tables_once_their_records_expire() {
    const N: usize = 2500;
    let server = server();
    let schema = unique("retention");
    let target = PostgresTarget::new(pool(&server).await).schema(&schema).expect("valid name");
    let config = QueueConfig::new("retention").record_ttl(Duration::from_millis(300));
    let q = Queue::connect(target.clone(), config).await.expect("open");
    let payloads: Vec<u64> = (0..N as u64).collect();
    q.push_bulk("Unit", 1, &payloads, PushOptions::new()).await.expect("push");
    let runs = Runs::default();
    let w = Worker::new(q.clone(), worker().sweep_every(Duration::from_millis(200)))
        .handle("Unit", {
            let runs = runs.clone();
            typed(move |n: u64, _job: JobInfo| {
                runs.0.lock().unwrap_or_else(PoisonError::into_inner).push(n);
                async { Ok(()) }
            })
        })
        .spawn();
    wait_until(Duration::from_secs(60), "every job to run", async || runs.len() >= N).await;
    let rows = |table: &'static str| {
        let (pool, schema) = (target.pool().clone(), schema.clone());
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {schema}.{table}"))
                .fetch_one(&pool)
                .await
                .expect("count rows")
        }
    };
    wait_until(Duration::from_secs(30), "the records and sets to be trimmed", async || {
        rows("jobs").await == 0 && rows("job_sets").await == 0 && rows("entries").await == 0
    })
    .await;
    w.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_an_older_version_is_upgraded_by_the_migrations_it_lacks() {
    let server = server();
    let pool = pool(&server).await;
    let schema = unique("upgrade");
    let target = PostgresTarget::new(pool.clone()).schema(&schema).expect("valid name");
    target.migrate().await.expect("migrate");
    // As a schema that version 1 of this crate made: without what version 2 added.
    sqlx::raw_sql(&format!("DROP TABLE {schema}.rate_starts; DELETE FROM {schema}.migrations WHERE version = 2"))
        .execute(&pool)
        .await
        .expect("back to version 1");
    assert_eq!(target.migrate().await.expect("upgrade"), 1, "it was at version 1");
    let table: Option<String> = sqlx::query_scalar(&format!("SELECT to_regclass('{schema}.rate_starts')::text"))
        .fetch_one(&pool)
        .await
        .expect("look for the table");
    assert!(table.is_some(), "migration 2 ran");
    assert_eq!(target.migrate().await.expect("again"), SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_worker_that_dies_mid_run_are_claimed_and_completed_by_another() {
    const N: usize = 20;
    let server = server();
    let (target, q) = queue(&server, "crash").await;
    let payloads: Vec<u64> = (0..N as u64).collect();
    q.push_bulk("Unit", 1, &payloads, PushOptions::new()).await.expect("push");
    // The first worker lives in a runtime of its own, with its own pool, and dies with it
    // while its jobs run: nothing acknowledged, its connections gone.
    let started = Runs::default();
    let dying = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (url, schema, config) = (server.url.clone(), target.schema_name().to_owned(), q.config().clone());
    let seen = started.clone();
    dying.spawn(async move {
        let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.expect("connect");
        let target = PostgresTarget::new(pool).schema(&schema).expect("name");
        let q = Queue::connect(target, config).await.expect("open");
        let config = worker().lease(Duration::from_secs(1)).renew_every(Duration::from_millis(200));
        let w = Worker::new(q, config).handle(
            "Unit",
            typed(move |n: u64, _job: JobInfo| {
                seen.0.lock().unwrap_or_else(PoisonError::into_inner).push(n);
                async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(())
                }
            }),
        );
        let _running = w.spawn();
        std::future::pending::<()>().await;
    });
    wait_until(Duration::from_secs(10), "the first worker to start its jobs", async || started.len() >= 8).await;
    tokio::task::block_in_place(move || dying.shutdown_timeout(Duration::from_millis(100)));
    let cut_off = started.len();
    // A second worker claims the expired leases and runs every job.
    let runs = Runs::default();
    let config = worker().lease(Duration::from_secs(1)).claim_every(Duration::from_millis(200));
    let recorder = runs.clone();
    let w = Worker::new(q.clone(), config)
        .handle(
            "Unit",
            typed(move |n: u64, _job: JobInfo| {
                recorder.0.lock().unwrap_or_else(PoisonError::into_inner).push(n);
                async { Ok(()) }
            }),
        )
        .spawn();
    wait_until(Duration::from_secs(30), "every job to be done", async || {
        q.jobs(JobState::Done, 0, 0).await.is_ok_and(|(_, done)| done == N as u64)
    })
    .await;
    w.stop().await.expect("stop");
    let mut ran = runs.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
    ran.sort_unstable();
    assert_eq!(ran, payloads, "the second worker ran each job once, the {cut_off} cut off ones included");
    assert!(q.stats().await.expect("stats").is_idle());
}
