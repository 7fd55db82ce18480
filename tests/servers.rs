//! The built-in resources against a real `redis-server` and a real HTTP server on 127.0.0.1,
//! counting connections as the servers see them.

mod common;

use axum::extract::FromRef;
use common::{CountingHttp, RedisServer, eventually};
use dual_mode::{DualMode, HttpConfig, Secret};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use serde::{Deserialize, Serialize};

/// Tests count connections server-side; with `REDIS_URL` they share one server, so they run
/// one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    base_url: String,
    redis_url: String,
}

#[derive(DualMode)]
struct Fetcher {
    settings: Settings,
    #[dual_mode(shared)]
    http: reqwest::Client,
    #[dual_mode(shared, config = settings.redis_url)]
    redis: MultiplexedConnection,
    #[dual_mode(shared, config = redis_url)]
    manager: ConnectionManager,
    #[dual_mode(secret, env = "DUAL_MODE_TEST_REDIS_URL")]
    redis_url: Secret<String>,
}

impl Fetcher {
    async fn work(&self) -> (String, String, String) {
        let body = self.http.get(&self.settings.base_url).send().await.unwrap().text().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut self.redis.clone()).await.unwrap();
        let pong2: String = redis::cmd("PING").query_async(&mut self.manager.clone()).await.unwrap();
        (body, pong, pong2)
    }
}

fn spec(http: &CountingHttp, srv: &RedisServer) -> FetcherSpec {
    FetcherSpec { settings: Settings { base_url: http.url(), redis_url: srv.url.clone() } }
}

fn parts(http: &CountingHttp, srv: &RedisServer) -> FetcherParts {
    // The secret URL is injected: tests do not mutate the process environment.
    FetcherParts { redis_url: Some(Secret::new(srv.url.clone())), ..spec(http, srv).into() }
}

#[tokio::test]
async fn temporary_clients_are_closed_back_to_baseline() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    let http = CountingHttp::start().await;
    let baseline = srv.client_count().await;
    let guard = parts(&http, srv).enter().await.unwrap();
    assert_eq!(guard.opened(), 3);
    assert_eq!(guard.work().await, ("ok".into(), "PONG".into(), "PONG".into()));
    assert_eq!(http.open(), 1);
    assert_eq!(srv.client_count().await, baseline + 2);
    guard.exit().await.unwrap();
    assert_eq!(eventually(0, async || http.open()).await, 0, "the HTTP connection closes");
    assert_eq!(eventually(baseline, async || srv.client_count().await).await, baseline, "both redis connections close");
}

#[tokio::test]
async fn injected_clients_stay_open_and_warm() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    let http = CountingHttp::start().await;
    let shared_http = HttpConfig::default().builder().build().unwrap();
    let shared_redis = srv.client().get_multiplexed_async_connection().await.unwrap();
    let shared_manager = ConnectionManager::new(srv.client()).await.unwrap();
    shared_http.get(http.url()).send().await.unwrap().text().await.unwrap();
    let baseline = srv.client_count().await;

    for _ in 0..3 {
        let parts = FetcherParts {
            http: Some(shared_http.clone()),
            redis: Some(shared_redis.clone()),
            manager: Some(shared_manager.clone()),
            ..parts(&http, srv)
        };
        let guard = parts.enter().await.unwrap();
        assert_eq!(guard.opened(), 0);
        guard.work().await;
        guard.exit().await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(http.accepted(), 1, "every job reused the one warm HTTP connection");
    assert_eq!(http.open(), 1, "and it is still open");
    assert_eq!(srv.client_count().await, baseline, "no redis connection opened or closed");
    let pong: String = redis::cmd("PING").query_async(&mut shared_redis.clone()).await.unwrap();
    assert_eq!(pong, "PONG", "the injected connection is usable after exit");
}

#[tokio::test]
async fn a_context_reuses_warm_clients_across_jobs() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    let http = CountingHttp::start().await;
    let mut ctx = dual_mode::Context::new();
    ctx.open::<reqwest::Client>(&HttpConfig::default()).await.unwrap();
    ctx.open::<MultiplexedConnection>(&srv.url).await.unwrap();
    ctx.open::<ConnectionManager>(&srv.url).await.unwrap();
    let baseline = srv.client_count().await;
    for _ in 0..5 {
        let mut parts = FetcherParts::from_context(spec(&http, srv), &ctx);
        parts.redis_url = Some(Secret::new(srv.url.clone()));
        let guard = parts.enter().await.unwrap();
        assert_eq!(guard.opened(), 0);
        guard.work().await;
        guard.exit().await.unwrap();
    }
    assert_eq!(http.accepted(), 1);
    assert_eq!(srv.client_count().await, baseline);
}

#[derive(DualMode)]
struct Inner {
    redis_url: String,
    #[dual_mode(shared, config = redis_url)]
    redis: MultiplexedConnection,
}

#[derive(DualMode)]
struct Outer {
    redis_url: String,
    #[dual_mode(shared, config = redis_url)]
    redis: MultiplexedConnection,
    #[dual_mode(nested)]
    inner: Inner,
}

#[tokio::test]
async fn a_nested_service_opens_one_connection_per_type_not_per_level() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    let baseline = srv.client_count().await;
    let url = srv.url.clone();
    let spec = OuterSpec { redis_url: url.clone(), inner: InnerSpec { redis_url: url } };
    let guard = spec.enter().await.unwrap();
    assert_eq!(guard.opened(), 1);
    assert_eq!(srv.client_count().await, baseline + 1);
    for mut con in [guard.inner.redis.clone(), guard.redis.clone()] {
        let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
        assert_eq!(pong, "PONG");
    }
    guard.exit().await.unwrap();
    assert_eq!(eventually(baseline, async || srv.client_count().await).await, baseline);
}

#[tokio::test]
async fn nested_services_with_different_redis_databases_get_their_own_connections() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    let base = srv.url.trim_end_matches('/').to_owned();
    let spec = OuterSpec { redis_url: format!("{base}/0"), inner: InnerSpec { redis_url: format!("{base}/1") } };
    let guard = spec.enter().await.unwrap();
    assert_eq!(guard.opened(), 2, "another database is another connection, never a shared one");
    let () = redis::cmd("SET").arg("where").arg("inner").query_async(&mut guard.inner.redis.clone()).await.unwrap();
    let () = redis::cmd("SET").arg("where").arg("outer").query_async(&mut guard.redis.clone()).await.unwrap();
    guard.exit().await.unwrap();
    let mut db1 = redis::Client::open(format!("{base}/1")).unwrap().get_multiplexed_async_connection().await.unwrap();
    let inner: String = redis::cmd("GET").arg("where").query_async(&mut db1).await.unwrap();
    assert_eq!(inner, "inner");
}

#[derive(DualMode)]
#[allow(dead_code, reason = "never entered: its second open fails")]
struct TwoRedis {
    good_url: String,
    dead_url: String,
    #[dual_mode(shared, key = "good", config = good_url)]
    good: MultiplexedConnection,
    #[dual_mode(shared, key = "dead", config = dead_url)]
    dead: MultiplexedConnection,
}

#[tokio::test]
async fn a_failed_second_open_closes_the_first_connection() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    let baseline = srv.client_count().await;
    let spec =
        TwoRedisSpec { good_url: srv.url.clone(), dead_url: format!("redis://127.0.0.1:{}/", common::free_port()) };
    let err = spec.enter().await.err().expect("the dead port refuses");
    assert_eq!((err.site().field, err.site().resource), ("dead", "MultiplexedConnection"));
    assert_eq!(err.to_string(), "cannot enter `TwoRedis`: opening `TwoRedis.dead` (MultiplexedConnection) failed");
    assert!(std::error::Error::source(&err).is_some_and(|cause| !cause.to_string().is_empty()), "{err}");
    assert_eq!(eventually(baseline, async || srv.client_count().await).await, baseline, "the good one was closed");
}

#[derive(Clone)]
struct AppState {
    http: reqwest::Client,
    redis: MultiplexedConnection,
    manager: ConnectionManager,
    redis_url: Secret<String>,
}

impl FromRef<AppState> for reqwest::Client {
    fn from_ref(s: &AppState) -> Self {
        s.http.clone()
    }
}
impl FromRef<AppState> for MultiplexedConnection {
    fn from_ref(s: &AppState) -> Self {
        s.redis.clone()
    }
}
impl FromRef<AppState> for ConnectionManager {
    fn from_ref(s: &AppState) -> Self {
        s.manager.clone()
    }
}
impl FromRef<AppState> for Secret<String> {
    fn from_ref(s: &AppState) -> Self {
        s.redis_url.clone()
    }
}

#[tokio::test]
async fn api_mode_takes_every_client_from_app_state() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    let http = CountingHttp::start().await;
    let state = AppState {
        http: HttpConfig::default().builder().build().unwrap(),
        redis: srv.client().get_multiplexed_async_connection().await.unwrap(),
        manager: ConnectionManager::new(srv.client()).await.unwrap(),
        redis_url: Secret::new(srv.url.clone()),
    };
    let baseline = srv.client_count().await;
    for _ in 0..3 {
        let svc = Fetcher::from_state(spec(&http, srv), &state);
        assert_eq!(svc.work().await.0, "ok");
    }
    assert_eq!(http.accepted(), 1);
    assert_eq!(srv.client_count().await, baseline);
}

#[derive(DualMode)]
struct FileUrl {
    #[dual_mode(secret, file = "/tmp/dual-mode-servers-secrets/redis-url")]
    redis_url: secrecy::SecretString,
    #[dual_mode(shared, config = redis_url)]
    redis: MultiplexedConnection,
}

#[tokio::test]
async fn a_redis_url_with_its_password_comes_from_a_secret_file() {
    let _serial = SERIAL.lock().await;
    let srv = &RedisServer::start();
    std::fs::create_dir_all("/tmp/dual-mode-servers-secrets").unwrap();
    std::fs::write("/tmp/dual-mode-servers-secrets/redis-url", format!("{}\n", srv.url)).unwrap();
    let baseline = srv.client_count().await;
    let guard = FileUrlSpec {}.enter().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut guard.redis.clone()).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(srv.client_count().await, baseline + 1);
    guard.exit().await.unwrap();
    assert_eq!(eventually(baseline, async || srv.client_count().await).await, baseline);
}
