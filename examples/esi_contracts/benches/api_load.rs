//! The ESI example's API under load, on loopback servers this binary starts: the ESI stand-in
//! and the API, its data in a SQLite file in a temporary directory (or in `DATABASE_URL`,
//! e.g. a Postgres), its queue in process.
//!
//! `cargo bench -p esi-contracts --bench api_load` (about 15 s; `-- --quick`: about 6 s).
//!
//! 1. cached summaries: 16 callers in a loop on the three regions' stored summaries;
//! 2. a hostile caller: 2,000 requests for one unknown region at 32 concurrent;
//! 3. cached summaries with 10% of the requests for regions ESI does not know (plausible ids,
//!    a new one every 100 requests: each a `404` from ESI once, then from the API's cache;
//!    once ESI's error limit runs low, `503`s at once until its window resets).
//!
//! For each: requests per second, latency percentiles and maximum, answers by status, and the
//! requests that reached ESI. The goal: no request slower than 1 s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dual_mode::Secret;
use esi_contracts::api::{self, AppState};
use esi_contracts::jobs::{self, Secrets};
use esi_contracts::settings::{DatabaseUrl, EsiToken, Settings};
use esi_contracts::standin::{self, RECORDED_AT, REGIONS, StandIn, StandInOptions};

/// What one scenario measured.
struct Run {
    name: &'static str,
    concurrency: usize,
    took: Duration,
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
    esi_requests: u64,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short vector"
        )]
        let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(at).copied().unwrap_or_default()
    }

    fn print(&self) {
        let n = self.latencies.len();
        #[allow(clippy::cast_precision_loss, reason = "request counts")]
        let rate = n as f64 / self.took.as_secs_f64();
        let max = self.latencies.iter().max().copied().unwrap_or_default();
        let slow = self.latencies.iter().filter(|l| **l > Duration::from_secs(1)).count();
        let statuses: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{n} x {s}")).collect();
        println!(
            "| {} | {} | {n} | {rate:.0} | {:.1} | {:.1} | {:.1} | {slow} | {} | {} |",
            self.name,
            self.concurrency,
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(max),
            statuses.join(", "),
            self.esi_requests,
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The API under test and the ESI behind it.
struct Target<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    esi: &'a StandIn,
}

impl Target<'_> {
    /// `concurrency` callers, each asking for `path(i)` (its `i`-th request) until `total`
    /// requests were sent or `duration` passed.
    async fn run(
        &self,
        name: &'static str,
        concurrency: usize,
        total: usize,
        duration: Duration,
        path: impl Fn(usize) -> String + Send + Sync + 'static,
    ) -> Run {
        let esi_before = self.esi.stats().requests;
        let next = Arc::new(AtomicUsize::new(0));
        let path = Arc::new(path);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (http, base, next, path) =
                (self.http.clone(), self.base.to_owned(), Arc::clone(&next), Arc::clone(&path));
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || start.elapsed() > duration {
                        return seen;
                    }
                    let t = Instant::now();
                    let status = match http.get(format!("{base}{}", path(i))).send().await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let _ = resp.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    seen.push((t.elapsed(), status));
                }
            }));
        }
        let mut latencies = Vec::new();
        let mut statuses = BTreeMap::new();
        for task in tasks {
            for (latency, status) in task.await.expect("caller") {
                latencies.push(latency);
                *statuses.entry(status).or_insert(0) += 1;
            }
        }
        let took = start.elapsed();
        Run { name, concurrency, took, latencies, statuses, esi_requests: self.esi.stats().requests - esi_before }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let duration = Duration::from_secs(if quick { 2 } else { 5 });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // Removed, with the database, at the end.
    let dir = dual_mode_test_support::TempDir::new("esi-api-load").expect("a temporary directory");
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.0.join("esi.db").display()));
    rt.block_on(async {
        let esi = standin::start(StandInOptions { last_modified: Some(RECORDED_AT), ..StandInOptions::default() })
            .await
            .expect("stand-in");
        let secrets = Secrets {
            token: Secret::new(EsiToken::default()),
            database_url: Secret::new(DatabaseUrl::new(database_url.as_str())),
        };
        let queue = jobs::connect_queue(None, None).await.expect("queue");
        let state = AppState::connect(Settings::for_esi(esi.base_url()), secrets, queue).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(api::run(listener, state, std::future::pending()));
        let http = dual_mode::HttpConfig::default().builder().pool_max_idle_per_host(64).build().expect("client");
        for region in REGIONS {
            let resp = http.get(format!("{base}/regions/{region}/summary")).send().await.expect("prime");
            assert_eq!(resp.status().as_u16(), 200, "priming {region}");
        }

        println!(
            "esi-contracts API load ({}), API on {base}, ESI stand-in on {}",
            if quick { "quick" } else { "full" },
            esi.base_url()
        );
        println!();
        println!(
            "| scenario | callers | requests | req/s | p50 ms | p99 ms | max ms | over 1 s | answers | ESI requests |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");

        let target = Target { http: &http, base: &base, esi: &esi };
        let summary = |region: i32| format!("/regions/{region}/summary");
        let runs = [
            target.run("cached summaries", 16, usize::MAX, duration, move |i| summary(REGIONS[i % 3])).await,
            target
                .run("2,000 x one unknown region", 32, 2_000, Duration::from_secs(60), move |_| summary(10_999_999))
                .await,
            // One request in ten for a region ESI does not know, a new id every 100 requests.
            target
                .run("10% unknown regions", 16, usize::MAX, duration, move |i| {
                    let id = i32::try_from(i / 100).unwrap_or(0);
                    summary(if i % 10 == 9 { 10_000_100 + id } else { REGIONS[i % 3] })
                })
                .await,
        ];
        for run in &runs {
            run.print();
        }
        let totals = esi.stats();
        println!();
        println!(
            "ESI stand-in in total: {} requests, {} errors, {} answered 420",
            totals.requests, totals.errors, totals.error_limited
        );
        let slow: usize =
            runs.iter().map(|r| r.latencies.iter().filter(|l| **l > Duration::from_secs(1)).count()).sum();
        println!(
            "goal, no request slower than 1 s: {}",
            if slow == 0 { "met".to_owned() } else { format!("MISSED ({slow} requests)") }
        );
    });
}
