//! The dual-mode contender of the side-by-side bench, written as a user's crate would be.
//!
//! One binary, one role per process (the driver, `benches/peers/run.py`, starts each):
//!
//! - `enqueue <backend> <url> <queue> <n>`: pushes `n` no-op jobs on the bulk path
//!   (`Queue::push_bulk`), then exits;
//! - `worker <backend> <url> <queue> <concurrency>`: opens the queue, prints `ready`, waits for
//!   a line on stdin, runs a worker of `concurrency` until SIGTERM or SIGINT, printing
//!   `count <n> <unix ms of the last run>` at most every 20 ms while it changes, and
//!   `final <n>` once the worker has stopped;
//! - `produce <backend> <url> <queue> <n> <producers>`: prints `ready`, waits for a line on
//!   stdin, then `producers` tasks push `n` jobs one by one (each awaits its push), prints
//!   `pushed <n>`;
//! - `left <backend> <url> <queue>`: prints the jobs left (waiting, running, delayed, parked);
//! - `txpush <url> <n> <mode>`: `n` transactions one by one on one connection, each pushing one
//!   job with `push_in` (`mode` = `push_in`) or inserting one row of the same size with a plain
//!   `INSERT` (`mode` = `insert`); prints `ready`, waits for a line, then `done <seconds>`.
//!
//! `<backend>` is `postgres` or `redis`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dual_mode::jobs::{JobInfo, PostgresTarget, PushOptions, Queue, QueueConfig, Worker, WorkerConfig, handler_fn};
use tokio::io::{AsyncBufReadExt, BufReader};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn usage() -> ! {
    eprintln!(
        "usage: peers-dual-mode enqueue|worker|produce|left <postgres|redis> <url> <queue> [n|concurrency] [producers]\n       peers-dual-mode txpush <postgres url> <n> <push_in|insert>"
    );
    std::process::exit(2)
}

/// The queue on the named backend; on Postgres each process has a pool of its own.
async fn open(backend: &str, url: &str, queue: &str, connections: u32) -> Result<(Queue, Option<PostgresTarget>), Error> {
    let config = QueueConfig::new(queue);
    match backend {
        "postgres" => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(connections).connect(url).await?;
            let target = PostgresTarget::new(pool);
            Ok((Queue::connect(target.clone(), config).await?, Some(target)))
        }
        "redis" => {
            let q = Queue::connect(redis::Client::open(url)?, config).await?;
            q.ensure_group().await?;
            Ok((q, None))
        }
        _ => usage(),
    }
}

/// Waits for the driver's go: one line on stdin.
async fn wait_go() -> Result<(), Error> {
    println!("ready");
    let mut line = String::new();
    BufReader::new(tokio::io::stdin()).read_line(&mut line).await?;
    Ok(())
}

fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    let num = |i: usize| arg(i).parse::<usize>().unwrap_or_else(|_| usage());
    match arg(0) {
        "enqueue" => {
            let (q, _) = open(arg(1), arg(2), arg(3), 8).await?;
            let n = num(4);
            let pushed = q.push_bulk("noop", 1, std::iter::repeat_n(&(), n), PushOptions::new()).await?;
            println!("pushed {}", pushed.len());
        }
        "worker" => {
            let (q, _) = open(arg(1), arg(2), arg(3), 8).await?;
            let concurrency = num(4);
            let count = Arc::new(AtomicU64::new(0));
            let last = Arc::new(AtomicU64::new(0));
            let (c, l) = (count.clone(), last.clone());
            let worker = Worker::new(q, WorkerConfig::new().concurrency(concurrency).consumer_prefix("peers")).handle(
                "noop",
                handler_fn(move |_job: JobInfo| {
                    c.fetch_add(1, Ordering::Relaxed);
                    l.store(unix_ms(), Ordering::Relaxed);
                    async { Ok(()) }
                }),
            );
            wait_go().await?;
            let reporter = {
                let (count, last) = (count.clone(), last.clone());
                tokio::spawn(async move {
                    let mut shown = 0;
                    loop {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let n = count.load(Ordering::Relaxed);
                        if n != shown {
                            shown = n;
                            println!("count {n} {}", last.load(Ordering::Relaxed));
                        }
                    }
                })
            };
            worker.run(stopped()).await?;
            reporter.abort();
            println!("final {}", count.load(Ordering::Relaxed));
        }
        "produce" => {
            let (q, _) = open(arg(1), arg(2), arg(3), u32::try_from(num(5)).unwrap_or(8)).await?;
            let (n, producers) = (num(4), num(5));
            wait_go().await?;
            let tasks: Vec<_> = (0..producers)
                .map(|i| {
                    let q = q.clone();
                    let share = n / producers + usize::from(i < n % producers);
                    tokio::spawn(async move {
                        for _ in 0..share {
                            q.push("noop", 1, &(), PushOptions::new()).await?;
                        }
                        Ok::<_, dual_mode::jobs::QueueError>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await??;
            }
            println!("pushed {n}");
        }
        "left" => {
            let (q, _) = open(arg(1), arg(2), arg(3), 2).await?;
            let s = q.stats().await?;
            println!("left {} running {} delayed {} parked {}", s.length, s.pending, s.delayed, s.parked);
        }
        "txpush" => txpush(arg(1), num(2), arg(3)).await?,
        _ => usage(),
    }
    Ok(())
}

/// Transactions one by one on one connection: a `push_in`, or a plain `INSERT` of a row of the
/// same size as the job's entry (the columns of `dual_mode.entries`, its `fields` as long as a
/// pushed job's, its job id as long).
async fn txpush(url: &str, n: usize, mode: &str) -> Result<(), Error> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(url).await?;
    let target = PostgresTarget::new(pool.clone());
    let q = Queue::connect(target.clone(), QueueConfig::new("txpush")).await?;
    // One job pushed and committed, to measure the entry the plain row copies.
    let mut tx = pool.begin().await?;
    target.push_in(&mut tx, &q, "noop", 1, &(), PushOptions::new()).await?;
    tx.commit().await?;
    let (fields_len, id_len): (i32, i32) =
        sqlx::query_as("SELECT octet_length(fields), octet_length(job_id) FROM dual_mode.entries LIMIT 1")
            .fetch_one(&pool)
            .await?;
    sqlx::query(
        "CREATE TABLE plain_rows (q text NOT NULL, lane smallint NOT NULL, ms bigint NOT NULL, seq bigserial, \
         job_id text, fields bytea NOT NULL, PRIMARY KEY (q, lane, ms, seq))",
    )
    .execute(&pool)
    .await?;
    let fields = vec![b'x'; usize::try_from(fields_len).unwrap_or(0)];
    let id = "x".repeat(usize::try_from(id_len).unwrap_or(0));
    let mut con = pool.acquire().await?;
    wait_go().await?;
    let t = Instant::now();
    for _ in 0..n {
        let mut tx = sqlx::Connection::begin(&mut *con).await?;
        match mode {
            "push_in" => {
                target.push_in(&mut tx, &q, "noop", 1, &(), PushOptions::new()).await?;
            }
            "insert" => {
                sqlx::query(
                    "INSERT INTO plain_rows (q, lane, ms, job_id, fields) \
                     VALUES ($1, 1, (extract(epoch from clock_timestamp()) * 1000)::bigint, $2, $3)",
                )
                .bind("txpush")
                .bind(&id)
                .bind(&fields)
                .execute(&mut *tx)
                .await?;
            }
            _ => usage(),
        }
        tx.commit().await?;
    }
    println!("done {:.6}", t.elapsed().as_secs_f64());
    println!("entry fields {fields_len} bytes, job id {id_len} bytes");
    Ok(())
}
