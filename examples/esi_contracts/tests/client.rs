//! The ESI example's `EsiClient` against the embedded stand-in and a SQLite database:
//! every page fetched once, `ETag` revalidation with `304`s, freshness until `Expires`, the
//! shared error-limit back-off, and each typed error.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use dual_mode::{Guard, Secret};
use esi_contracts::aggregate::StoredSummary;
use esi_contracts::esi::{EsiClient, EsiClientParts, EsiClientSpec, EsiError, FetchCounts};
use esi_contracts::model::{RegionSummary, summarize};
use esi_contracts::settings::{DatabaseUrl, EsiToken, Settings};
use esi_contracts::standin;
use esi_contracts::standin::{RECORDED_AT, RateLimit, StandIn, StandInOptions};
use esi_contracts::{app, error_chain};

mod support;

use support::Backing;

const FORGE: i32 = 10_000_002;
const DOMAIN: i32 = 10_000_043;
const SINQ: i32 = 10_000_032;

async fn standin(opts: StandInOptions) -> StandIn {
    standin::start(StandInOptions { last_modified: Some(RECORDED_AT), ..opts }).await.expect("stand-in")
}

/// Stale at once: every call after the first revalidates.
fn stale() -> StandInOptions {
    StandInOptions { expires_after: Duration::ZERO, ..StandInOptions::default() }
}

/// The client as API mode builds it: every client and secret injected, nothing opened.
async fn client(backing: &Backing, settings: Settings) -> Guard<EsiClient> {
    let spec = EsiClientSpec { settings };
    let http = spec.settings.http.builder().build().expect("http client");
    let db = backing.database().await;
    let parts = EsiClientParts {
        token: Some(Secret::new(EsiToken::default())),
        database_url: Some(Secret::new(DatabaseUrl::new(backing.database_url.clone()))),
        http: Some(http),
        db: Some(db),
        ..spec.into()
    };
    let guard = parts.enter().await.expect("enter");
    assert_eq!(guard.opened(), 0, "everything was injected");
    guard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_fetched_once_then_revalidated_with_304s() {
    let backing = Backing::in_process().await;
    let esi_server = standin(stale()).await;
    let esi = client(&backing, Settings::for_esi(esi_server.base_url())).await;

    let first = esi.public_contracts(FORGE).await.expect("first");
    assert_eq!(first.contracts.len(), 2347);
    assert_eq!(first.as_of, RECORDED_AT, "as of the pages' Last-Modified");
    assert_eq!(first.fetch, FetchCounts { pages: 3, downloaded: 3, requests: 3, ..FetchCounts::default() });
    for page in 1..=3 {
        assert_eq!(esi_server.page_ok_count(FORGE, page), 1, "page {page} downloaded once");
    }
    assert_eq!(esi_server.not_modified_count(), 0);

    let second = esi.public_contracts(FORGE).await.expect("second");
    assert_eq!(second.fetch, FetchCounts { pages: 3, revalidated: 3, requests: 3, ..FetchCounts::default() });
    assert_eq!(esi_server.ok_count(), 3, "no page downloaded again");
    assert_eq!(esi_server.not_modified_count(), 3, "each page revalidated with a 304");
    assert_eq!(second.contracts, first.contracts, "the 304s served the cached bodies");
    assert_eq!(second.as_of, RECORDED_AT);
    println!("Forge: 3 pages downloaded once, then 3 x 304: {:?}", esi_server.stats());
    esi.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_is_served_from_the_cache_until_it_expires() {
    let backing = Backing::in_process().await;
    let esi_server = standin(StandInOptions::default()).await; // Expires: 30 minutes
    let esi = client(&backing, Settings::for_esi(esi_server.base_url())).await;
    let first = esi.public_contracts(DOMAIN).await.expect("first");
    assert_eq!(first.fetch, FetchCounts { pages: 1, downloaded: 1, requests: 1, ..FetchCounts::default() });
    let requests = esi_server.stats().requests;
    let second = esi.public_contracts(DOMAIN).await.expect("second");
    assert_eq!(second.fetch, FetchCounts { pages: 1, fresh: 1, ..FetchCounts::default() });
    assert_eq!(esi_server.stats().requests, requests, "no request while fresh");
    assert_eq!(second.contracts, first.contracts);
    esi.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_error_limit_backs_off_until_the_window_resets() {
    let backing = Backing::in_process().await;
    let window = Duration::from_secs(2);
    let esi_server = standin(StandInOptions { error_window: window, ..stale() }).await;
    let settings = Settings::for_esi(esi_server.base_url());
    assert_eq!(settings.error_limit_floor, 10);
    let esi = client(&backing, settings).await;
    // 5 errors left, under the floor of 10: page 1's answer says so, and the client waits for
    // the window's reset before asking for page 2.
    esi_server.set_error_limit_remain(5);
    let start = Instant::now();
    let got = esi.public_contracts(FORGE).await.expect("all pages, after the back-off");
    let elapsed = start.elapsed();
    assert_eq!(got.fetch.downloaded, 3);
    assert!(elapsed >= Duration::from_millis(1500), "backed off until the reset: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    let stats = esi_server.stats();
    assert_eq!((stats.errors, stats.error_limited), (0, 0), "never got a 420: {stats:?}");
    println!("back-off: 3 pages in {elapsed:?} with a {window:?} window");
    esi.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_typed_error() {
    let backing = Backing::in_process().await;
    let esi_server = standin(stale()).await;
    let mut settings = Settings::for_esi(esi_server.base_url());
    settings.max_backoff_secs = 0;
    let esi = client(&backing, settings.clone()).await;

    // 404: ESI's text comes through.
    match esi.public_contracts(10_000_001).await {
        Err(e @ EsiError::NotFound { .. }) => {
            assert!(e.to_string().contains("Region not found"), "{e}");
            assert!(e.is_permanent());
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    // 5xx.
    esi_server.fail_next(SINQ, 1, StatusCode::SERVICE_UNAVAILABLE);
    match esi.public_contracts(SINQ).await {
        Err(e @ EsiError::Server { status: 503, .. }) => {
            assert!(e.to_string().contains("temporarily unavailable"), "{e}");
            assert!(!e.is_permanent());
        }
        other => panic!("expected Server 503, got {other:?}"),
    }

    // A bad body is not cached: once the page is whole again, it is downloaded.
    esi_server.set_malformed(DOMAIN, 1, true);
    match esi.public_contracts(DOMAIN).await {
        Err(e @ EsiError::BadBody { .. }) => {
            // What is wrong at this level; the decoder's error is the source, shown in the chain.
            let source = std::error::Error::source(&e).expect("the decoder's error").to_string();
            assert!(e.to_string().ends_with("not a contract page") && !e.to_string().contains(&source), "{e}");
            assert_eq!(error_chain(&e), format!("{e}: {source}"));
        }
        other => panic!("expected BadBody, got {other:?}"),
    }
    esi_server.set_malformed(DOMAIN, 1, false);
    let fixed = esi.public_contracts(DOMAIN).await.expect("whole again");
    assert_eq!(fixed.fetch.downloaded, 1);

    // 420: the limit is used up; the client records the back-off for everyone sharing the
    // database, so the next call is not even sent (longer than max_backoff_secs = 0).
    esi_server.set_error_limit_remain(0);
    match esi.public_contracts(SINQ).await {
        Err(e @ EsiError::ErrorLimited { .. }) => assert!(e.to_string().contains("error limit"), "{e}"),
        other => panic!("expected ErrorLimited, got {other:?}"),
    }
    let requests = esi_server.stats().requests;
    match esi.public_contracts(SINQ).await {
        Err(EsiError::ErrorLimited { message, reset_secs, .. }) => {
            assert!(message.contains("not sent"), "{message}");
            assert!(reset_secs >= 1);
        }
        other => panic!("expected ErrorLimited without a request, got {other:?}"),
    }
    assert_eq!(esi_server.stats().requests, requests, "nothing sent while backing off");
    assert_eq!(esi_server.stats().error_limited, 1);

    // No response at all: a closed port.
    let closed = dual_mode_test_support::free_port().unwrap();
    let offline = client(&backing, Settings::for_esi(&format!("http://127.0.0.1:{closed}/latest"))).await;
    match offline.public_contracts(FORGE).await {
        Err(e @ EsiError::Http { .. }) => {
            let source = std::error::Error::source(&e).expect("reqwest's error").to_string();
            assert!(e.to_string().ends_with("failed") && !e.to_string().contains(&source), "{e}");
            assert!(error_chain(&e).starts_with(&format!("{e}: {source}")), "{}", error_chain(&e));
        }
        other => panic!("expected Http, got {other:?}"),
    }
    offline.exit().await.expect("exit");
    esi.exit().await.expect("exit");
}

/// Settings for the stand-in at `base` with short `5xx` retry delays.
fn quick(base: &str) -> Settings {
    Settings { server_retry_base_ms: 20, ..Settings::for_esi(base) }
}

/// Every contract of `region` in the recorded pages but the `dropped` oldest, by id.
fn recorded_ids(region: i32, dropped: usize) -> Vec<i64> {
    let pages = standin::fixture_pages(region).unwrap();
    let all: Vec<i64> = pages
        .iter()
        .flat_map(|p| serde_json::from_str::<Vec<serde_json::Value>>(p).unwrap())
        .map(|c| c["contract_id"].as_i64().unwrap())
        .collect();
    all[dropped..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_across_a_turnover_reads_one_generation_like_a_quiet_walk() {
    let backing = Backing::in_process().await;
    let esi_server = standin(StandInOptions::default()).await;
    let esi = client(&backing, quick(esi_server.base_url())).await;

    // The cache turns over right after page 1: 400 contracts gone, X-Pages 3 -> 2, and every
    // later contract one page-fraction earlier. A naive walk would read page 1 of the old
    // generation, then page 2 of the new one (missing 400 contracts), then a 404.
    esi_server.turn_over_after(1, 400);
    let turbulent = esi.public_contracts(FORGE).await.expect("a consistent walk");
    assert_eq!(turbulent.fetch.restarts, 1, "{:?}", turbulent.fetch);
    assert_eq!(turbulent.fetch.pages, 2);
    assert_eq!(turbulent.as_of, esi_server.last_modified(), "as of the new generation");
    let ids: Vec<i64> = turbulent.contracts.iter().map(|c| c.contract_id).collect();
    assert!(ids == recorded_ids(FORGE, 400), "each contract of the new generation, once");

    // A quiet walk of the same generation, from an empty cache, reads the same.
    sqlx::query("DELETE FROM esi_pages").execute(&backing.database().await).await.unwrap();
    let quiet = esi.public_contracts(FORGE).await.expect("quiet");
    assert_eq!((quiet.fetch.restarts, quiet.fetch.downloaded), (0, 2));
    assert_eq!(quiet.contracts, turbulent.contracts);
    assert_eq!(quiet.as_of, turbulent.as_of);

    assert_eq!(esi_server.stats().turnovers, 1);
    esi.exit().await.expect("exit");

    // A shrinking turnover after page 2: page 3 is gone (404), which restarts the walk; it is
    // not "region not found".
    let esi_server = standin(StandInOptions::default()).await;
    let esi = client(&backing, quick(esi_server.base_url())).await;
    esi_server.turn_over_after(2, 1_400);
    let shrunk = esi.public_contracts(FORGE).await.expect("a 404 past page 1 restarts the walk");
    println!("turnover walks: {:?} then {:?}", turbulent.fetch, shrunk.fetch);
    assert_eq!((shrunk.fetch.restarts, shrunk.fetch.pages), (1, 1));
    let ids: Vec<i64> = shrunk.contracts.iter().map(|c| c.contract_id).collect();
    assert!(ids == recorded_ids(FORGE, 1_400), "the 947 contracts of the new generation");
    esi.exit().await.expect("exit");

    // Restarts are bounded: past them, a retryable error, never "region not found".
    let esi_server = standin(StandInOptions::default()).await;
    let esi = client(&backing, Settings { walk_restarts: 0, ..quick(esi_server.base_url()) }).await;
    esi_server.turn_over_after(2, 1_400);
    match esi.public_contracts(FORGE).await {
        Err(e @ EsiError::Inconsistent { .. }) => {
            assert!(!e.is_permanent(), "{e}");
            assert!(e.to_string().contains("page 3 of 3 is gone"), "{e}");
        }
        other => panic!("expected Inconsistent, got {other:?}"),
    }
    esi.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_does_not_start_just_before_expires() {
    let backing = Backing::in_process().await;
    // Generations of 3 s: page 1 always expires within the 10 s margin.
    let esi_server =
        standin(StandInOptions { expires_after: Duration::from_secs(3), ..StandInOptions::default() }).await;
    let api_like = client(&backing, Settings { max_backoff_secs: 0, ..quick(esi_server.base_url()) }).await;
    match api_like.public_contracts(DOMAIN).await {
        Err(e @ EsiError::Inconsistent { .. }) => {
            let wait = e.retry_after().expect("says when");
            assert!(wait <= Duration::from_secs(4), "{wait:?}");
            assert!(!e.is_permanent());
        }
        other => panic!("expected Inconsistent, got {other:?}"),
    }
    // Allowed to wait, the client waits for the next generation and reads it.
    let patient = client(&backing, Settings { walk_margin_secs: 2, ..quick(esi_server.base_url()) }).await;
    let start = Instant::now();
    let got = patient.public_contracts(FORGE).await.expect("after the turnover");
    assert!(got.fetch.waits <= 1, "{:?}", got.fetch);
    assert_eq!(got.contracts.len(), 2_347);
    println!("near Expires: {:?} in {:?}", got.fetch, start.elapsed());
    api_like.exit().await.expect("exit");
    patient.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_route_for_every_client_and_says_how_long() {
    let backing = Backing::in_process().await;
    let limit = RateLimit { group: "contracts".into(), tokens: 5, window: Duration::from_secs(60), headers: true };
    let esi_server = standin(StandInOptions { rate_limit: Some(limit), ..StandInOptions::default() }).await;
    let settings = Settings { rate_limit_floor: 0, max_backoff_secs: 0, ..quick(esi_server.base_url()) };
    let esi = client(&backing, settings.clone()).await;
    // 5 tokens: pages 1 and 2 (2 each), then a 429 for page 3, 1 token short at 1 per 12 s.
    let retry_after = match esi.public_contracts(FORGE).await {
        Err(e @ EsiError::RateLimited { .. }) => {
            assert!(!e.is_permanent(), "never permanent");
            e.retry_after().unwrap()
        }
        other => panic!("expected RateLimited, got {other:?}"),
    };
    assert!(Duration::from_secs(10) <= retry_after && retry_after <= Duration::from_secs(12), "{retry_after:?}");
    assert_eq!(esi_server.stats().rate_limited, 1);
    // Another client sharing the database (another worker) does not call the route meanwhile.
    let other = client(&backing, settings).await;
    let requests = esi_server.stats().requests;
    match other.public_contracts(DOMAIN).await {
        Err(EsiError::RateLimited { message, retry_after, .. }) => {
            assert!(message.contains("not sent"), "{message}");
            assert!(retry_after > Duration::from_secs(8), "{retry_after:?}");
        }
        other => panic!("expected RateLimited without a request, got {other:?}"),
    }
    assert_eq!(esi_server.stats().requests, requests, "nothing sent while paused");
    esi.exit().await.expect("exit");
    other.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_tokens_left_pace_the_walk_to_the_refill_rate() {
    let backing = Backing::in_process().await;
    // 20 tokens refilled over 2 s: one 2xx's tokens come back in 200 ms.
    let limit = RateLimit { group: "contracts".into(), tokens: 20, window: Duration::from_secs(2), headers: true };
    let esi_server = standin(StandInOptions { rate_limit: Some(limit), ..stale() }).await;
    let esi = client(&backing, Settings { rate_limit_floor: 100, ..quick(esi_server.base_url()) }).await;
    let start = Instant::now();
    let got = esi.public_contracts(FORGE).await.expect("paced, not refused");
    let elapsed = start.elapsed();
    assert_eq!((got.fetch.requests, got.fetch.waits), (3, 2), "{:?}", got.fetch);
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert_eq!(esi_server.stats().rate_limited, 0);
    // Without a rate-limit group, the error limit still decides: no pacing here.
    let plain = standin(stale()).await;
    let esi2 = client(&backing, Settings { rate_limit_floor: 100, ..quick(plain.base_url()) }).await;
    assert_eq!(esi2.public_contracts(FORGE).await.unwrap().fetch.waits, 0);
    println!("paced walk: {:?} in {elapsed:?}", got.fetch);
    esi.exit().await.expect("exit");
    esi2.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_back_off() {
    let backing = Backing::in_process().await;
    let esi_server = standin(stale()).await;
    let esi = client(&backing, quick(esi_server.base_url())).await;
    esi_server.fail_next(FORGE, 2, StatusCode::BAD_GATEWAY);
    esi_server.fail_next(FORGE, 1, StatusCode::GATEWAY_TIMEOUT);
    let got = esi.public_contracts(FORGE).await.expect("a burst of 3 is retried through");
    assert_eq!((got.fetch.requests, got.fetch.retries, got.fetch.waits), (6, 3, 3), "{:?}", got.fetch);
    assert_eq!(got.fetch.waited_ms, 20 + 40 + 80, "doubling delays");
    assert_eq!(got.contracts.len(), 2_347);
    // A longer burst is a Server error, retryable by the job layer.
    esi_server.fail_next(DOMAIN, 4, StatusCode::SERVICE_UNAVAILABLE);
    match esi.public_contracts(DOMAIN).await {
        Err(e @ EsiError::Server { status: 503, .. }) => assert!(!e.is_permanent() && e.retry_after().is_none()),
        other => panic!("expected Server 503, got {other:?}"),
    }
    assert_eq!(esi_server.stats().server_errors, 7);
    esi.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_versioning_headers_and_either_base_url_works() {
    let backing = Backing::in_process().await;
    let esi_server = standin(stale()).await;
    let canonical = client(&backing, Settings::for_esi(esi_server.base_url())).await;
    let versioned = client(&backing, Settings::for_esi(&format!("{}/latest/", esi_server.base_url()))).await;
    assert!(!canonical.settings.is_versioned_url() && versioned.settings.is_versioned_url());
    let a = canonical.public_contracts(DOMAIN).await.expect("canonical");
    let b = versioned.public_contracts(DOMAIN).await.expect("versioned");
    assert_eq!(a.contracts, b.contracts);
    let stats = esi_server.stats();
    assert_eq!(stats.no_compatibility_date, 0, "every request sent X-Compatibility-Date");
    assert_eq!(stats.gzip, stats.ok, "every page came gzipped");
    canonical.exit().await.expect("exit");
    versioned.exit().await.expect("exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_esi_is_refused_with_a_placeholder_contact() {
    let backing = Backing::in_process().await;
    for url in ["https://esi.evetech.net", "https://ESI.evetech.net/latest/"] {
        let esi = client(&backing, Settings::for_esi(url)).await;
        match esi.public_contracts(FORGE).await {
            Err(e @ EsiError::Refused { .. }) => {
                let text = e.to_string();
                assert!(text.contains("ESI_USER_AGENT") && text.contains("--user-agent"), "{text}");
                assert!(e.is_permanent());
            }
            other => panic!("expected Refused, got {other:?}"),
        }
        esi.exit().await.expect("exit");
    }
    let mut settings = Settings::for_esi("https://esi.evetech.net");
    settings.http.user_agent = Some("contracts-board/2.1 (ops@contracts-board.net)".into());
    assert_eq!(settings.check_contact(), Ok(()));
    settings.http.user_agent = Some("contracts-board/2.1".into());
    assert!(settings.check_contact().is_err(), "no contact at all");
    assert_eq!(Settings::for_esi("http://127.0.0.1:1").check_contact(), Ok(()), "the stand-in needs none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_odd_contract_is_skipped_and_counted_not_a_failed_page() {
    let backing = Backing::in_process().await;
    let esi_server = standin(stale()).await;
    let esi = client(&backing, Settings::for_esi(esi_server.base_url())).await;
    esi_server.set_odd_contract(FORGE, 2, true);
    let got = esi.public_contracts(FORGE).await.expect("the page is read");
    assert_eq!((got.contracts.len(), got.skipped), (2_346, 1));
    let odd = recorded_ids(FORGE, 0)[1_000];
    assert!(got.contracts.iter().all(|c| c.contract_id != odd), "the odd one is left out");
    // The summary says it is incomplete, and so does the main job's table.
    let summary = RegionSummary { skipped: got.skipped, ..summarize(FORGE, &got.contracts, got.as_of) };
    let table = app::table(&StoredSummary { summary, aggregated_at: got.as_of, fetch: got.fetch });
    assert!(table.contains("skipped: 1 contracts"), "{table}");
    esi.exit().await.expect("exit");
}
