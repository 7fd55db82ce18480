//! Every stand-in mode through the job layer, as the workers run it: a quiet ESI, a cache
//! turnover in the middle of a walk, a rate-limited route (`429` with `Retry-After`, and pacing
//! on few tokens), a burst of `5xx`, and the error limit used up (`420`). In each, the job ends
//! `done` with the summary of one consistent generation and is never parked; a job told to
//! wait keeps its attempt number. Each test prints its figures (requests, retries, waits).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use dual_mode::jobs::{JobOutcome, JobRecord, JobState};
use esi_contracts::aggregate::{ContractAggregationService, StoredSummary, stored_summary};
use esi_contracts::jobs;
use esi_contracts::settings::Settings;
use esi_contracts::standin::{self, RECORDED_AT, RateLimit, StandIn, StandInOptions, Stats};

mod support;

use support::Backing;

const FORGE: i32 = 10_000_002;

/// What one aggregation job of The Forge did in a mode.
struct Figures {
    record: JobRecord,
    stored: StoredSummary,
    esi: Stats,
    took: Duration,
}

/// Runs one aggregation of The Forge on a worker against a stand-in started with `opts`,
/// after `before` set its test mode; waits for the job to end (`Queue::wait_for`).
async fn run_mode(
    name: &str,
    opts: StandInOptions,
    settings: impl FnOnce(&mut Settings),
    before: impl FnOnce(&StandIn),
) -> Figures {
    let backing = Backing::in_process().await;
    let esi_server = standin::start(StandInOptions { last_modified: Some(RECORDED_AT), ..opts }).await.unwrap();
    let mut s = Settings { server_retry_base_ms: 50, ..Settings::for_esi(esi_server.base_url()) };
    settings(&mut s);
    let queue = backing.queue.clone();
    let worker = jobs::worker(queue.clone(), &s, backing.secrets(), jobs::worker_config(2)).await.unwrap();
    let running = worker.spawn();
    before(&esi_server);
    let start = Instant::now();
    let id = jobs::enqueue(&queue, &s, FORGE, None).await.unwrap().job_id;
    let outcome = queue.wait_for::<ContractAggregationService>(&id, Duration::from_secs(30)).await;
    let JobOutcome::Done(result) = outcome.unwrap_or_else(|e| panic!("{name}: {e}")) else {
        panic!("{name}: not done: {:?}", queue.job(&id).await);
    };
    let record = queue.job(&id).await.unwrap().expect("a record");
    assert_eq!(record.state, JobState::Done, "{name}: {record:?}");
    let took = start.elapsed();
    let report = running.stop().await.expect("worker");
    assert_eq!(report.counts.parked, 0, "{name}: {report:?}");
    let stored = stored_summary(&backing.database().await, FORGE).await.unwrap().expect("stored");
    assert_eq!(result, stored, "{name}: the job's result is the summary it stored");
    let esi = esi_server.stats();
    println!(
        "{name}: job done at attempt {} in {took:.1?}; ESI: {} requests ({} 200, {} 304, {} 429, {} 5xx, {} 420); \
         walk: {} requests, {} retries, {} restarts, {} waits ({} ms); {} contracts",
        record.attempt,
        esi.requests,
        esi.ok,
        esi.not_modified,
        esi.rate_limited,
        esi.server_errors,
        esi.error_limited,
        stored.fetch.requests,
        stored.fetch.retries,
        stored.fetch.restarts,
        stored.fetch.waits,
        stored.fetch.waited_ms,
        stored.summary.contracts,
    );
    Figures { record, stored, esi, took }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet() {
    let f = run_mode("quiet", StandInOptions::default(), |_| {}, |_| {}).await;
    assert_eq!((f.record.attempt, f.esi.requests, f.stored.fetch.requests), (1, 3, 3));
    assert_eq!((f.stored.fetch.retries, f.stored.fetch.waits, f.stored.fetch.restarts), (0, 0, 0));
    assert_eq!(f.stored.summary.contracts, 2_347);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnover_in_the_middle_of_the_walk() {
    let f = run_mode("turnover", StandInOptions::default(), |_| {}, |s| s.turn_over_after(1, 400)).await;
    assert_eq!((f.record.attempt, f.stored.fetch.restarts, f.stored.fetch.pages), (1, 1, 2));
    assert_eq!(f.stored.summary.contracts, 2_347 - 400, "the new generation, each contract once");
    assert!(f.stored.summary.computed_at > RECORDED_AT, "as of the new generation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_429_waits_without_burning_an_attempt() {
    // 5 tokens refilling at one per 1.2 s: pages 1 and 2, then a 429 (Retry-After: 2) for
    // page 3. The job is delayed 2 s and runs again as attempt 1.
    let limit = RateLimit { group: "contracts".into(), tokens: 5, window: Duration::from_secs(6), headers: true };
    let opts = StandInOptions { rate_limit: Some(limit), ..StandInOptions::default() };
    let f = run_mode("429", opts, |s| s.rate_limit_floor = 0, |_| {}).await;
    assert_eq!(f.esi.rate_limited, 1);
    assert_eq!(f.record.attempt, 1, "a wait is not an attempt");
    assert!(f.took >= Duration::from_millis(1500), "waited Retry-After: {:?}", f.took);
    assert_eq!(f.stored.summary.contracts, 2_347);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_tokens_left_pace_the_walk_instead_of_a_429() {
    let limit = RateLimit { group: "contracts".into(), tokens: 5, window: Duration::from_secs(2), headers: true };
    let opts = StandInOptions { rate_limit: Some(limit), ..StandInOptions::default() };
    let f = run_mode("paced", opts, |_| {}, |_| {}).await;
    assert_eq!((f.esi.rate_limited, f.record.attempt), (0, 1));
    assert_eq!(f.stored.fetch.waits, 2, "before pages 2 and 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_burst_is_retried_in_the_walk_then_by_the_job_layer() {
    // 6 failures: the first attempt's walk tries 4 times (1 + 3 retries) and fails; the second
    // gets 2 more, then the pages.
    let f = run_mode(
        "5xx burst",
        StandInOptions::default(),
        |_| {},
        |s| s.fail_next(FORGE, 6, StatusCode::SERVICE_UNAVAILABLE),
    )
    .await;
    assert_eq!(f.esi.server_errors, 6);
    assert_eq!(f.record.attempt, 2);
    assert_eq!((f.stored.fetch.retries, f.stored.fetch.requests), (2, 5));
    assert_eq!(f.stored.summary.contracts, 2_347);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_limit_used_up_420_waits_for_the_reset() {
    let opts = StandInOptions { error_window: Duration::from_secs(2), ..StandInOptions::default() };
    let f = run_mode("420", opts, |_| {}, |s| s.set_error_limit_remain(0)).await;
    assert_eq!(f.esi.error_limited, 1);
    assert_eq!(f.record.attempt, 1, "a wait is not an attempt");
    assert_eq!(f.stored.summary.contracts, 2_347);
}
