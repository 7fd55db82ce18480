//! `esi-contracts jobs ...` on a real `redis-server`: the dashboard's reads and actions on a
//! terminal, through the library function and through the binary.

use std::time::{Duration, Instant};

use dual_mode::jobs::{JobState, PushOptions, Queue};
use esi_contracts::cli::{self, CliError};
use esi_contracts::jobs;
use esi_contracts::settings::Settings;

mod support;

use support::Backing;

async fn run(q: &Queue, args: &[&str]) -> Result<String, CliError> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let mut out = Vec::new();
    cli::run(q, &args, &mut out).await?;
    Ok(String::from_utf8(out).expect("UTF-8"))
}

async fn ok(q: &Queue, args: &[&str]) -> String {
    run(q, args).await.unwrap_or_else(|e| panic!("jobs {args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reads_and_acts_on_the_queue() {
    let backing = Backing::redis().await;
    let q = backing.queue.clone();
    // An entry no worker can run (no handler for its type): parked by the worker at once.
    let odd = q.push_raw("Nobody", 1, b"{\"half\":".to_vec(), PushOptions::new()).await.unwrap();
    let worker =
        jobs::worker(q.clone(), &Settings::default(), backing.secrets(), jobs::worker_config(1)).await.unwrap();
    let running = worker.spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.stats().await.unwrap().parked == 0 {
        assert!(Instant::now() < deadline, "the entry was not parked");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    running.stop().await.unwrap();
    let later =
        q.push_raw("Nobody", 1, b"{}".to_vec(), PushOptions::new().delay(Duration::from_secs(3600))).await.unwrap();

    let stats = ok(&q, &["stats"]).await;
    assert!(stats.contains("parked            1") && stats.contains("delayed           1"), "{stats}");
    let parked = ok(&q, &["list", "parked"]).await;
    let parked_id = parked.split_whitespace().next().unwrap().to_owned();
    assert!(parked.contains("unknown_type") && parked.contains(&odd.job_id), "{parked}");
    let entry = ok(&q, &["show", &parked_id]).await;
    assert!(entry.contains("reason     unknown_type") && entry.contains("payload    {\"half\":"), "{entry}");
    let record = ok(&q, &["show", &odd.job_id]).await;
    assert!(record.contains("state      parked") && record.contains("payload    {\"half\":"), "{record}");
    let delayed = ok(&q, &["list", "delayed", "--count", "5"]).await;
    assert!(delayed.contains(&later.job_id) && delayed.contains("the end"), "{delayed}");

    assert!(ok(&q, &["cancel", &later.job_id]).await.contains("cancelled"));
    assert_eq!(q.job(&later.job_id).await.unwrap().unwrap().state, JobState::Cancelled);
    assert!(ok(&q, &["redrive", &parked_id]).await.starts_with("re-driven as entry"));
    assert_eq!((q.stats().await.unwrap().parked, q.stats().await.unwrap().length), (0, 1));
    assert!(ok(&q, &["pause"]).await.contains("queue paused"));
    assert!(q.is_paused().await.unwrap());
    assert!(ok(&q, &["resume"]).await.contains("queue resumed"));

    assert!(matches!(run(&q, &["list", "sleeping"]).await, Err(CliError::Usage(_))));
    assert!(matches!(run(&q, &["cancel", "no-such-job"]).await, Err(CliError::NotFound(_))));
    assert!(matches!(run(&q, &["redrive", "1-1"]).await, Err(CliError::NotFound(_))));
    assert!(matches!(run(&q, &["frobnicate"]).await, Err(CliError::Usage(_))));

    // The binary: the same command on the queue `REDIS_URL` names.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-contracts"))
        .args(["jobs", "stats"])
        .env("REDIS_URL", backing.redis_url())
        .output()
        .expect("run esi-contracts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("queue esi-aggregate"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
