//! Worker processes on one Postgres, killed with `SIGKILL` mid-run: every job completes, none
//! is lost, and only the runs that were cut off run twice.
//!
//! The workers are this test binary again, in the role `role` selects by environment; they
//! note each start and each end in a table of the test's, in the same database.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dual_mode_jobs::{JobInfo, PushOptions, Queue, QueueConfig, Worker, WorkerConfig, typed};
use dual_mode_postgres::PostgresTarget;
use dual_mode_test_support::{PostgresServer, wait_until};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// How long a job runs.
const WORK: Duration = Duration::from_millis(1500);

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new().max_connections(8).connect(url).await.expect("connect to postgres")
}

/// A worker process's life: run `Work` jobs, noting their starts and ends, until the test
/// writes a stop row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role() {
    let (Ok(url), Ok(name)) = (std::env::var("DM_PG_URL"), std::env::var("DM_PG_QUEUE")) else { return };
    let db = pool(&url).await;
    let queue = Queue::connect(PostgresTarget::new(db.clone()), QueueConfig::new(&name)).await.expect("queue");
    let config = WorkerConfig::new()
        .concurrency(4)
        .lease(Duration::from_secs(1))
        .renew_every(Duration::from_millis(250))
        .block(Duration::from_millis(100))
        .poll_delayed_every(Duration::from_millis(20));
    let worker = Worker::new(queue, config);
    let me = worker.consumer().to_owned();
    note(&db, "ready", i64::from(std::process::id()), &me).await;
    let notes = db.clone();
    let worker = worker.handle(
        "Work",
        typed(move |n: i64, _job: JobInfo| {
            let (db, me) = (notes.clone(), me.clone());
            async move {
                note(&db, "start", n, &me).await;
                tokio::time::sleep(WORK).await;
                note(&db, "end", n, &me).await;
                Ok(())
            }
        }),
    );
    let stop = async move {
        loop {
            let stop: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM notes WHERE what = 'stop'").fetch_optional(&db).await.ok().flatten();
            if stop.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    worker.run(stop).await.expect("the worker runs");
}

async fn note(db: &PgPool, what: &str, n: i64, who: &str) {
    sqlx::query("INSERT INTO notes (what, n, who) VALUES ($1, $2, $3)")
        .bind(what)
        .bind(n)
        .bind(who)
        .execute(db)
        .await
        .expect("note");
}

/// A worker process, killed on drop.
struct Process(Child);

impl Process {
    fn spawn(url: &str, name: &str) -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let child = Command::new(exe)
            .args(["role", "--exact", "--nocapture", "--test-threads=1"])
            .env("DM_PG_URL", url)
            .env("DM_PG_QUEUE", name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a worker process");
        Self(child)
    }

    fn kill_9(&mut self) {
        let status = Command::new("kill").arg("-KILL").arg(self.0.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -9 {}", self.0.id());
        let _ = self.0.wait();
    }

    fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return false,
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The notes of `what`: job numbers and who wrote them.
async fn notes(db: &PgPool, what: &str) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT n, who FROM notes WHERE what = $1 ORDER BY n").bind(what).fetch_all(db).await.expect("notes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_worker_process_killed_mid_run_are_completed_by_another() {
    let server = PostgresServer::start();
    let db = pool(&server.url).await;
    sqlx::query("CREATE TABLE notes (what text NOT NULL, n bigint NOT NULL, who text NOT NULL)")
        .execute(&db)
        .await
        .expect("notes table");
    let name = "killed";
    let queue = Queue::connect(PostgresTarget::new(db.clone()), QueueConfig::new(name)).await.expect("queue");
    for n in 0..12_i64 {
        queue.push("Work", 1, &n, PushOptions::new()).await.expect("push");
    }
    let mut a = Process::spawn(&server.url, name);
    let mut b = Process::spawn(&server.url, name);
    wait_until(Duration::from_secs(30), "worker A running its jobs", async || {
        let ready = notes(&db, "ready").await;
        let Some((_, a_name)) = ready.iter().find(|(pid, _)| *pid == i64::from(a.0.id())) else { return false };
        notes(&db, "start").await.iter().filter(|(_, who)| who == a_name).count() >= 2
    })
    .await;
    let a_pid = i64::from(a.0.id());
    a.kill_9();
    let ready = notes(&db, "ready").await;
    let killed = ready.iter().find(|(pid, _)| *pid == a_pid).map(|(_, who)| who.clone()).expect("A's name");
    wait_until(Duration::from_secs(60), "every job ended", async || {
        let mut ended: Vec<i64> = notes(&db, "end").await.into_iter().map(|(n, _)| n).collect();
        ended.dedup();
        ended.len() == 12
    })
    .await;
    sqlx::query("INSERT INTO notes (what, n, who) VALUES ('stop', 0, 'test')").execute(&db).await.expect("stop");
    assert!(b.wait_exit(Duration::from_secs(20)), "the survivor stops cleanly");

    let starts = notes(&db, "start").await;
    let ends = notes(&db, "end").await;
    let ended: Vec<i64> = ends.iter().map(|(n, _)| *n).collect();
    assert_eq!(ended, (0..12).collect::<Vec<_>>(), "every job ended exactly once: none lost, none twice");
    // A's runs that did not end were cut off by the kill: each ran once more, elsewhere.
    let cut_off: Vec<i64> = starts
        .iter()
        .filter(|(n, who)| *who == killed && !ends.iter().any(|(m, w)| m == n && *w == killed))
        .map(|(n, _)| *n)
        .collect();
    assert!(!cut_off.is_empty(), "the kill cut runs off");
    for n in &cut_off {
        let again = starts.iter().filter(|(m, who)| m == n && *who != killed).count();
        assert_eq!(again, 1, "job {n}, cut off by the kill, ran once more");
    }
    assert_eq!(starts.len(), 12 + cut_off.len(), "a job runs twice only where its run was cut off");
    assert_eq!(queue.stats().await.expect("stats").parked, 0);
}
