//! The ESI example's `EsiClient` against the embedded stand-in and a real `redis-server`:
//! every page fetched once, `ETag` revalidation with `304`s, freshness until `Expires`, the
//! shared error-limit back-off, and each typed error.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use dual_mode::{Guard, Secret};
use dual_mode_test_support::RedisServer;
use esi_contracts::esi::{EsiClient, EsiClientParts, EsiClientSpec, EsiError, FetchCounts};
use esi_contracts::settings::{EsiToken, RedisUrl, Settings};
use esi_contracts::standin;
use esi_contracts::standin::{RECORDED_AT, StandIn, StandInOptions};
use redis::aio::ConnectionManager;

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
async fn client(redis: &RedisServer, settings: Settings) -> Guard<EsiClient> {
    let spec = EsiClientSpec { settings };
    let http = spec.settings.http.builder().build().expect("http client");
    let con = <ConnectionManager as dual_mode::Resource>::open(&redis.url).await.expect("redis");
    let parts = EsiClientParts {
        token: Some(Secret::new(EsiToken::default())),
        redis_url: Some(Secret::new(RedisUrl::new(redis.url.clone()))),
        http: Some(http),
        redis: Some(con),
        ..spec.into()
    };
    let guard = parts.enter().await.expect("enter");
    assert_eq!(guard.opened(), 0, "everything was injected");
    guard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_fetched_once_then_revalidated_with_304s() {
    let redis = RedisServer::start();
    let esi_server = standin(stale()).await;
    let esi = client(&redis, Settings::for_esi(esi_server.base_url())).await;

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
    let redis = RedisServer::start();
    let esi_server = standin(StandInOptions::default()).await; // Expires: 30 minutes
    let esi = client(&redis, Settings::for_esi(esi_server.base_url())).await;
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
    let redis = RedisServer::start();
    let window = Duration::from_secs(2);
    let esi_server = standin(StandInOptions { error_window: window, ..stale() }).await;
    let settings = Settings::for_esi(esi_server.base_url());
    assert_eq!(settings.error_limit_floor, 10);
    let esi = client(&redis, settings).await;
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
    let redis = RedisServer::start();
    let esi_server = standin(stale()).await;
    let mut settings = Settings::for_esi(esi_server.base_url());
    settings.max_backoff_secs = 0;
    let esi = client(&redis, settings.clone()).await;

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
        Err(e @ EsiError::BadBody { .. }) => assert!(e.to_string().contains("not a contract page"), "{e}"),
        other => panic!("expected BadBody, got {other:?}"),
    }
    esi_server.set_malformed(DOMAIN, 1, false);
    let fixed = esi.public_contracts(DOMAIN).await.expect("whole again");
    assert_eq!(fixed.fetch.downloaded, 1);

    // 420: the limit is used up; the client records the back-off for everyone sharing Redis,
    // so the next call is not even sent (longer than max_backoff_secs = 0).
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
    let offline = client(&redis, Settings::for_esi(&format!("http://127.0.0.1:{closed}/latest"))).await;
    match offline.public_contracts(FORGE).await {
        Err(e @ EsiError::Http { .. }) => assert!(std::error::Error::source(&e).is_some()),
        other => panic!("expected Http, got {other:?}"),
    }
    offline.exit().await.expect("exit");
    esi.exit().await.expect("exit");
}
