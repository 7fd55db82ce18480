//! The apalis contender of the side-by-side bench (apalis 1.0, apalis-postgres 1.0), with the
//! same roles and protocol as `peers-dual-mode` (see `benches/peers/README.md`):
//!
//! - `enqueue <url> <queue> <n>`: pushes `n` no-op tasks with `TaskSink::push_bulk` (one
//!   multi-row `INSERT ... UNNEST` through the storage's sink);
//! - `worker <url> <queue> <concurrency> <batch>`: one worker, `PostgresStorage` with pub/sub
//!   (`with_pubsub`, LISTEN/NOTIFY) and its README's interval fallback, `batch_size(batch)`,
//!   `.concurrency(concurrency)`; prints `ready`, waits for a line on stdin, prints
//!   `count <n> <unix ms>` while it changes and `final <n>` after SIGTERM;
//! - `produce <url> <queue> <n> <producers>`: `producers` tasks push one by one (`push`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop;

static COUNT: AtomicU64 = AtomicU64::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);

fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

async fn noop(_task: Noop) -> Result<(), BoxDynError> {
    COUNT.fetch_add(1, Ordering::Relaxed);
    LAST.store(unix_ms(), Ordering::Relaxed);
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: peers-apalis enqueue|worker|produce <url> <queue> <n|concurrency> [batch|producers]");
    std::process::exit(2)
}

async fn wait_go() -> Result<(), Error> {
    println!("ready");
    let mut line = String::new();
    BufReader::new(tokio::io::stdin()).read_line(&mut line).await?;
    Ok(())
}

/// A pool of sqlx's default size (10), with apalis's migrations run.
async fn pool(url: &str) -> Result<PgPool, Error> {
    let pool = PgPool::connect(url).await?;
    PostgresStorage::<()>::setup(&pool).await?;
    Ok(pool)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    let num = |i: usize| arg(i).parse::<usize>().unwrap_or_else(|_| usage());
    let (url, queue) = (arg(1), arg(2));
    match arg(0) {
        "enqueue" => {
            let pool = pool(url).await?;
            let mut storage = PostgresStorage::<Noop>::new(&pool).with_config(Config::default().queue(queue));
            storage.push_bulk(vec![Noop; num(3)]).await?;
            println!("pushed {}", num(3));
        }
        "worker" => {
            let pool = pool(url).await?;
            let config = Config::default().queue(queue).batch_size(num(4));
            let backend = PostgresStorage::<Noop>::new(&pool)
                .with_config(config)
                .with_pubsub()
                .poll_with_strategy(Strategy::new().interval(Duration::from_secs(1)));
            let worker = WorkerBuilder::new(format!("peers-{}", std::process::id()))
                .backend(backend)
                .concurrency(num(3))
                .build(noop);
            wait_go().await?;
            let reporter = tokio::spawn(async {
                let mut shown = 0;
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let n = COUNT.load(Ordering::Relaxed);
                    if n != shown {
                        shown = n;
                        println!("count {n} {}", LAST.load(Ordering::Relaxed));
                    }
                }
            });
            worker
                .run_until(async {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
                    term.recv().await;
                    Ok::<(), std::io::Error>(())
                })
                .await?;
            reporter.abort();
            println!("final {}", COUNT.load(Ordering::Relaxed));
        }
        "produce" => {
            let pool = pool(url).await?;
            let (n, producers) = (num(3), num(4));
            wait_go().await?;
            let tasks: Vec<_> = (0..producers)
                .map(|i| {
                    let mut storage =
                        PostgresStorage::<Noop>::new(&pool).with_config(Config::default().queue(queue));
                    let share = n / producers + usize::from(i < n % producers);
                    tokio::spawn(async move {
                        for _ in 0..share {
                            storage.push(Noop).await.map_err(|e| e.to_string())?;
                        }
                        Ok::<_, String>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await??;
            }
            println!("pushed {n}");
        }
        _ => usage(),
    }
    Ok(())
}
