//! What a temporary database pool costs a job, side by side in one run, on a Postgres this
//! binary starts itself (`initdb` + `postgres` on a free loopback port).
//!
//! `cargo bench --bench pools` (about 30 s). Per job, one `SELECT 1`:
//!
//! 1. a temporary pool: `spec.run(...)` opens a `PgPool` (one connection), queries, closes it;
//! 2. the worker's `Context`: `Parts::from_context(spec, &ctx).run(...)` borrows a warm pool;
//! 3. a hand-held pool: the same query on a pool the caller keeps, no guard.
//!
//! The modes are interleaved round by round; the table shows the median time per job over the
//! rounds, and each mode's ratio to the hand-held pool.

use std::time::{Duration, Instant};

use dual_mode::{Context, DualMode, Resource};
use dual_mode_test_support::PostgresServer;
use serde::{Deserialize, Serialize};

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

async fn select_one(pool: &sqlx::PgPool) -> Result<(), dual_mode::BoxError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), dual_mode::BoxError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, jobs) = if quick { (3, 50) } else { (9, 200) };
    let pg = PostgresServer::temporary()?;
    let spec = LedgerSpec { settings: Settings { database_url: pg.url.clone() } };
    let held = <sqlx::PgPool as Resource>::open(&format!("{}?max_connections=4", pg.url)).await?;
    let ctx = Context::new().with(held.clone());

    let mut temporary = Vec::new();
    let mut context = Vec::new();
    let mut hand_held = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..jobs {
            spec.clone().run(async |l: &Ledger| select_one(&l.db).await).await?;
        }
        temporary.push(t.elapsed() / jobs);

        let t = Instant::now();
        for _ in 0..jobs {
            LedgerParts::from_context(spec.clone(), &ctx).run(async |l: &Ledger| select_one(&l.db).await).await?;
        }
        context.push(t.elapsed() / jobs);

        let t = Instant::now();
        for _ in 0..jobs {
            select_one(&held).await?;
        }
        hand_held.push(t.elapsed() / jobs);
    }
    sqlx::Pool::close(&held).await;

    let base = median(&hand_held);
    println!("per job, 1 SELECT 1 on Postgres (loopback), median of {rounds} rounds of {jobs} sequential jobs");
    println!("| mode | per job | vs hand-held pool |");
    println!("|---|---:|---:|");
    for (name, v) in [
        ("temporary pool (open, query, close)", &temporary),
        ("worker `Context` (warm pool)", &context),
        ("hand-held pool, no guard", &hand_held),
    ] {
        let m = median(v);
        println!("| {name} | {:.1} us | {:.2}x |", m.as_secs_f64() * 1e6, m.as_secs_f64() / base.as_secs_f64());
    }
    Ok(())
}
