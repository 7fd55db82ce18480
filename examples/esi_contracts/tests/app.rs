//! The ESI example as a system, with the stand-in: API mode and job mode compute the same
//! summaries, equal to the independently computed `fixtures/expected.json`; the API answers
//! bad input with a 4xx JSON error, never a 500; the main job (the code `cargo run -p
//! esi-contracts` runs) runs to the end with nothing installed, and on Redis and Postgres when
//! `REDIS_URL` and `DATABASE_URL` name them.

use std::time::{Duration, Instant};

use dual_mode::Secret;
use dual_mode::jobs::{JobOutcome, JobState};

use esi_contracts::aggregate::{
    ContractAggregationService, ContractAggregationServiceParts, StoredSummary, aggregation_spec, stored_summary,
};
use esi_contracts::esi::{EsiClientParts, FetchCounts};
use esi_contracts::jobs::{JobView, Secrets};
use esi_contracts::model::RegionSummary;
use esi_contracts::settings::{EsiToken, Settings};
use esi_contracts::standin::{RECORDED_AT, REGIONS, StandInOptions};
use esi_contracts::{app, jobs, standin};
use serde_json::Value;

mod support;

use support::{Backing, get_json, http, stale_standin, start_api};

const EXPECTED: &str = include_str!("../fixtures/expected.json");
const PAGES: [(i32, u32); 3] = [(10_000_002, 3), (10_000_043, 1), (10_000_032, 1)];

fn expected() -> Vec<RegionSummary> {
    let v: Value = serde_json::from_str(EXPECTED).unwrap();
    serde_json::from_value(v["summaries"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_mode_and_job_mode_compute_the_same_summaries_as_the_fixtures() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let settings = Settings::for_esi(esi_server.base_url());
    let api = start_api(&backing, settings.clone()).await;
    let http = http();
    let want = expected();

    // API mode: computed in the handler with the state's shared clients (`from_state`).
    let mut api_mode = Vec::new();
    for region in REGIONS {
        let (status, body) = get_json(&http, &format!("{}/regions/{region}/summary?refresh=true", api.base)).await;
        assert_eq!(status, 200, "{body}");
        api_mode.push(serde_json::from_value::<StoredSummary>(body).unwrap());
    }
    assert_eq!(esi_server.ok_count(), 5, "every page downloaded once");
    for (region, pages) in PAGES {
        for page in 1..=pages {
            assert_eq!(esi_server.page_ok_count(region, page), 1);
        }
    }

    // Job mode: enqueued through the API, run by two workers with their own warm clients.
    let mut workers = Vec::new();
    for _ in 0..2 {
        let worker = jobs::worker(api.state.queue.clone(), &settings, backing.secrets(), jobs::worker_config(2))
            .await
            .expect("worker");
        workers.push(worker.spawn());
    }
    let mut ids = Vec::new();
    for region in REGIONS {
        let resp = http.post(format!("{}/regions/{region}/aggregate", api.base)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        ids.push(body["job_id"].as_str().unwrap().to_owned());
    }
    let mut job_mode = Vec::new();
    for (id, region) in ids.iter().zip(REGIONS) {
        let outcome = api.state.queue.wait_for::<ContractAggregationService>(id, Duration::from_secs(30)).await;
        let JobOutcome::Done(result) = outcome.expect("ended") else { panic!("job {id} did not succeed") };
        let (status, body) = get_json(&http, &format!("{}/jobs/{id}", api.base)).await;
        assert_eq!(status, 200, "{body}");
        let record: JobView = serde_json::from_value(body).unwrap();
        assert_eq!((record.state, record.attempt), (JobState::Done, 1), "{record:?}");
        let stored = stored_summary(&api.state.db, region).await.unwrap().expect("stored by the job");
        assert_eq!(result, stored, "the job's result is the summary it stored");
        job_mode.push(stored);
    }
    // The second aggregation revalidated every page: 304s, nothing downloaded again.
    assert_eq!(esi_server.ok_count(), 5);
    assert_eq!(esi_server.not_modified_count(), 5);
    for (stored, (_, pages)) in job_mode.iter().zip(PAGES) {
        assert_eq!(stored.fetch, FetchCounts { pages, revalidated: pages, requests: pages, ..FetchCounts::default() });
    }

    for ((a, j), w) in api_mode.iter().zip(&job_mode).zip(&want) {
        assert_eq!(a.summary, j.summary, "API mode and job mode agree");
        assert_eq!(&a.summary, w, "and equal the independently computed figures");
        assert!(j.aggregated_at >= a.aggregated_at);
    }

    // The newest stored summary is what a plain GET returns.
    let (status, body) = get_json(&http, &format!("{}/regions/{}/summary", api.base, REGIONS[0])).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_value::<StoredSummary>(body).unwrap(), job_mode[0]);
    // The history holds both, the job's (newest) first, unless they fell in the same second.
    let (status, body) = get_json(&http, &format!("{}/regions/{}/history", api.base, REGIONS[0])).await;
    assert_eq!((status, body["region_id"].as_i64()), (200, Some(i64::from(REGIONS[0]))), "{body}");
    let kept: Vec<StoredSummary> = serde_json::from_value(body["summaries"].clone()).unwrap();
    assert_eq!(kept[0], job_mode[0], "newest first");
    let same_second = job_mode[0].aggregated_at == api_mode[0].aggregated_at;
    assert_eq!(kept.len(), if same_second { 1 } else { 2 }, "{kept:?}");
    let (_, body) = get_json(&http, &format!("{}/regions/{}/history?limit=1", api.base, REGIONS[0])).await;
    assert_eq!(body["summaries"].as_array().map(Vec::len), Some(1), "{body}");

    for w in workers {
        let report = w.stop().await.expect("worker");
        assert_eq!(report.counts.parked + report.counts.retried, 0, "{report:?}");
    }
    let _ = api.stop.send(true);
}

/// Job mode outside a worker: temporary clients, and the nested `EsiClient` shares its
/// parent's temporary database pool (two opened: HTTP and the pool, not three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_temporary_clients_opens_one_database_pool() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let settings = Settings::for_esi(esi_server.base_url());
    drop(backing.database().await); // the tables
    let Secrets { token, database_url } = backing.secrets();
    let parts: ContractAggregationServiceParts = aggregation_spec(10_000_043, &settings).into();
    let parts = ContractAggregationServiceParts {
        database_url: Some(database_url.clone()),
        esi: EsiClientParts { token: Some(token), database_url: Some(database_url), ..parts.esi },
        ..parts
    };
    let guard = parts.enter().await.expect("enter");
    assert_eq!(guard.opened(), 2, "one HTTP client and one database pool");
    let stored = guard.aggregate().await.expect("aggregate");
    assert_eq!(stored.summary, expected()[1]);
    guard.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_bad_input_gets_a_4xx_json_error_never_a_500() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();
    let b = &api.base;
    let cases: Vec<(reqwest::Method, String, u16)> = vec![
        (reqwest::Method::GET, format!("{b}/regions/forge/summary"), 400),
        (reqwest::Method::GET, format!("{b}/regions/-1/summary"), 400),
        (reqwest::Method::GET, format!("{b}/regions/0/summary"), 400),
        (reqwest::Method::GET, format!("{b}/regions/+10000002/summary"), 400),
        (reqwest::Method::GET, format!("{b}/regions/99999999999/summary"), 400),
        (reqwest::Method::GET, format!("{b}/regions/1e7/summary"), 400),
        (reqwest::Method::GET, format!("{b}/regions/%FF%FE/summary"), 400),
        (reqwest::Method::GET, format!("{b}/regions/10000002/summary?refresh=maybe"), 400),
        (reqwest::Method::GET, format!("{b}/regions/10000001/summary"), 404),
        (reqwest::Method::GET, format!("{b}/regions/forge/history"), 400),
        (reqwest::Method::GET, format!("{b}/regions/10000002/history?limit=0"), 400),
        (reqwest::Method::GET, format!("{b}/regions/10000002/history?limit=501"), 400),
        (reqwest::Method::GET, format!("{b}/regions/10000002/history?since=yesterday"), 400),
        (reqwest::Method::POST, format!("{b}/regions/abc/aggregate"), 400),
        (reqwest::Method::POST, format!("{b}/regions/10000002%20/aggregate"), 400),
        (reqwest::Method::GET, format!("{b}/jobs/0123456789abcdef0123456789abcdef"), 404),
        (reqwest::Method::GET, format!("{b}/jobs/not%20a%20job"), 400),
        (reqwest::Method::GET, format!("{b}/jobs/{}", "a".repeat(65)), 400),
        (reqwest::Method::GET, format!("{b}/regions/10000002/aggregate"), 405),
        (reqwest::Method::DELETE, format!("{b}/jobs/0123456789abcdef0123456789abcdef"), 404),
        (reqwest::Method::DELETE, format!("{b}/jobs/not%20a%20job"), 400),
        (reqwest::Method::PUT, format!("{b}/jobs/abc"), 405),
        (reqwest::Method::GET, format!("{b}/nowhere"), 404),
    ];
    for (method, url, want) in cases {
        let resp = http.request(method.clone(), &url).send().await.expect("request");
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap())
            .unwrap_or_else(|e| panic!("{method} {url}: not JSON: {e}"));
        assert_eq!(status, want, "{method} {url}: {body}");
        assert!(ctype.starts_with("application/json"), "{method} {url}: {ctype}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {url}: {body}");
    }
    let (status, body) = get_json(&http, &format!("{b}/healthz")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let _ = api.stop.send(true);
}

/// The main job's options with nothing set but `regions` (empty: the default ones).
fn main_job(regions: Vec<i32>) -> app::Options {
    app::Options {
        esi_url: None,
        user_agent: None,
        regions,
        redis_url: None,
        database_url: None,
        token: Secret::new(EsiToken::default()),
        timeout: Duration::from_secs(60),
        dashboard_token: None,
        serve: false,
    }
}

/// The main job, the same `run` as `cargo run -p esi-contracts`, with nothing set: it starts
/// the stand-in, keeps its queue in the process and its data in a temporary SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_main_job_runs_to_the_end() {
    let opts = main_job(Vec::new());
    let mut out = Vec::new();
    let start = Instant::now();
    let report = app::run(opts, &mut out).await.expect("the main job");
    let elapsed = start.elapsed();
    let out = String::from_utf8(out).unwrap();
    println!("{out}\nmain job: {elapsed:?}");
    let got: Vec<RegionSummary> = report.summaries.iter().map(|s| s.summary.clone()).collect();
    assert_eq!(got, expected());
    assert!(report.jobs.iter().all(|j| j.state == JobState::Done), "{:?}", report.jobs);
    for (record, summary) in report.jobs.iter().zip(&report.summaries) {
        let result: StoredSummary = serde_json::from_value(record.result.clone().expect("a result")).unwrap();
        assert_eq!(&result, summary, "GET /jobs/{{id}} has the job's result");
    }
    assert_eq!(report.pages_downloaded, Some(5), "each of the 5 pages once, two workers or not");
    assert_eq!(report.workers.len(), 2, "both workers stopped cleanly");
    assert_eq!(report.workers.iter().map(|w| w.counts.succeeded).sum::<u64>(), 3);
    for name in ["The Forge (10000002)", "Domain (10000043)", "Sinq Laison (10000032)", "expiring within 24 h: 199"] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert!(out.contains("waiting for 3 jobs"), "a progress line");
    assert!(out.contains("queue: in this process (REDIS_URL=redis://... for Redis); database: SQLite in "), "{out}");
    let regions: Vec<i32> = report.summaries.iter().map(|s| s.summary.region_id).collect();
    let history: Vec<(i32, usize)> = regions.iter().map(|r| (*r, 1)).collect();
    assert_eq!(report.history, history, "each job's summary, written by the job, read by the API");
    let dashboard = out.lines().find_map(|l| l.strip_prefix("dashboard: http://admin:")).expect("the dashboard's URL");
    let (token, rest) = dashboard.split_once('@').expect("credentials, then the host");
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "a drawn token: {token}");
    assert!(rest.starts_with("127.0.0.1:") && rest.ends_with("/admin/jobs"), "{rest}");
}

/// The API as a hostile caller meets it: implausible ids never reach ESI, an unknown region
/// costs ESI one error per hour at most, and no request waits out a limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_protects_the_deployments_esi_budget() {
    let backing = Backing::in_process().await;
    let esi_server = standin::start(StandInOptions {
        last_modified: Some(RECORDED_AT),
        expires_after: Duration::ZERO,
        ..Default::default()
    })
    .await
    .unwrap();
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();
    let b = &api.base;

    // Not a known-space region: 400, ESI never asked.
    for id in ["99999999", "10000000", "11000001", "2147483647"] {
        let (status, body) = get_json(&http, &format!("{b}/regions/{id}/summary")).await;
        assert_eq!(status, 400, "{id}: {body}");
    }
    assert_eq!(esi_server.stats().requests, 0);

    // An unknown region: one 404 from ESI, then answered from the cache, 50 times.
    for _ in 0..50 {
        let (status, body) = get_json(&http, &format!("{b}/regions/10000001/summary")).await;
        assert_eq!(status, 404, "{body}");
    }
    assert_eq!(esi_server.stats().errors, 1, "ESI's error budget spent once");

    // A summary, then ESI's error limit used up by someone else: a refresh answers at once
    // with the stored summary marked stale; a region never computed gets a 503 with
    // Retry-After; neither waits for the window to reset.
    let (status, fresh) = get_json(&http, &format!("{b}/regions/10000043/summary")).await;
    assert_eq!(status, 200, "{fresh}");
    // Refreshes within a minute of the computation serve it: ESI is not asked.
    let requests = esi_server.stats().requests;
    for _ in 0..20 {
        let (status, again) = get_json(&http, &format!("{b}/regions/10000043/summary?refresh=true")).await;
        assert_eq!((status, &again), (200, &fresh));
    }
    assert_eq!(esi_server.stats().requests, requests, "refresh throttled");
    // Make the stored summary old enough to be refreshed.
    let mut stored = stored_summary(&api.state.db, 10_000_043).await.unwrap().unwrap();
    stored.aggregated_at = stored.aggregated_at.plus_seconds(-3600);
    sqlx::query("UPDATE region_summaries SET aggregated_at = $1, summary = $2 WHERE region_id = $3")
        .bind(stored.aggregated_at.0)
        .bind(serde_json::to_string(&stored).unwrap())
        .bind(10_000_043_i64)
        .execute(&api.state.db)
        .await
        .unwrap();
    esi_server.set_error_limit_remain(0);
    let start = Instant::now();
    let (status, stale) = get_json(&http, &format!("{b}/regions/10000043/summary?refresh=true")).await;
    assert_eq!(status, 200, "{stale}");
    assert_eq!(stale["stale"], true, "{stale}");
    assert!(stale["stale_because"].as_str().unwrap().contains("error limit"), "{stale}");
    let resp = http.get(format!("{b}/regions/10000032/summary")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(start.elapsed() < Duration::from_secs(2), "answered at once: {:?}", start.elapsed());
    let _ = api.stop.send(true);
}

/// The main job with a region ESI does not know: the other regions' tables are printed, the
/// failed one is named, and the report says so (the binary exits non-zero on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_main_job_with_a_failing_region_prints_the_others_and_names_it() {
    let opts = main_job(vec![10_000_002, 10_000_001, 10_000_032]);
    let mut out = Vec::new();
    let report = app::run(opts, &mut out).await.expect("the main job runs to the end");
    let out = String::from_utf8(out).unwrap();
    println!("{out}");
    let got: Vec<i32> = report.summaries.iter().map(|s| s.summary.region_id).collect();
    assert_eq!(got, [10_000_002, 10_000_032]);
    assert_eq!(report.summaries[0].summary, expected()[0]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, 10_000_001);
    assert!(report.failed[0].1.contains("404"), "{:?}", report.failed);
    let tables = out.find("The Forge (10000002)").unwrap();
    let named = out.find("failed regions:").expect("the failed regions are named");
    assert!(tables < named && out[named..].contains("10000001"), "{out}");
}

/// Runs the main job with `opts` on `backing`'s stores: its first line says `stores`, every
/// region's summary is the expected one, and another `Queue` on the same store (the
/// backing's) reads each job's record as done.
async fn main_job_on(backing: &Backing, opts: app::Options, stores: &str) {
    let mut out = Vec::new();
    let report = app::run(opts, &mut out).await.expect("the main job");
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(stores), "{out}");
    let got: Vec<RegionSummary> = report.summaries.iter().map(|s| s.summary.clone()).collect();
    assert_eq!(got, expected());
    for job in &report.jobs {
        let record = backing.queue.job(&job.id).await.unwrap().expect("the job's record, in the backing's store");
        assert_eq!(record.state, JobState::Done);
    }
}

/// The main job on Redis and Postgres, as a deployment would run it: `REDIS_URL` takes the
/// queue there (another `Queue` on the same Redis reads the jobs' records), `DATABASE_URL` the
/// data (the summaries are rows in Postgres).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_main_job_runs_on_redis_and_postgres() {
    let backing = Backing::redis_and_postgres().await;
    let opts = app::Options {
        redis_url: Some(Secret::new(esi_contracts::settings::RedisUrl::new(backing.redis_url()))),
        database_url: Some(backing.secrets().database_url),
        ..main_job(Vec::new())
    };
    main_job_on(&backing, opts, "queue: Redis (REDIS_URL); database: DATABASE_URL").await;
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM region_summaries").fetch_one(&backing.database().await).await.unwrap();
    assert_eq!(rows, 3, "one summary per region, in Postgres");
}

/// `cargo run -p esi-contracts` on a machine with nothing installed: the binary, with no
/// `REDIS_URL`, no `DATABASE_URL` and a `PATH` on which no server can be found, runs the main
/// job to the end and exits 0.
#[test]
fn the_binary_runs_the_main_job_with_nothing_installed() {
    let empty = dual_mode_test_support::TempDir::new("esi-bare").expect("a temporary directory");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-contracts"))
        .env_clear()
        .env("PATH", &empty.0)
        .env("TMPDIR", &empty.0)
        .output()
        .expect("run esi-contracts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("queue: in this process (REDIS_URL=redis://... for Redis); database: SQLite in "),
        "{stdout}"
    );
    assert!(stdout.contains("done: 3 of 3 regions, 3 jobs done"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(&empty.0).unwrap().collect();
    assert!(left.is_empty(), "the temporary database is removed: {left:?}");
}

/// The main job on Postgres alone, as a team with no Redis runs it: a `postgres://`
/// `DATABASE_URL` holds the queue too (another `Queue` on the same database reads the jobs'
/// records) and the summaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_main_job_runs_on_postgres_alone() {
    let backing = Backing::postgres().await;
    let opts = app::Options { database_url: Some(backing.secrets().database_url), ..main_job(Vec::new()) };
    main_job_on(&backing, opts, "queue: Postgres (DATABASE_URL); database: DATABASE_URL").await;
    let entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dual_mode.jobs").fetch_one(&backing.database().await).await.unwrap();
    assert!(entries >= 3, "the queue's records are rows of the dual_mode schema ({entries})");
}
