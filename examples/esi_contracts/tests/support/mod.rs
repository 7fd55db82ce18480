//! What the example's system tests share: a Redis URL as secrets, an HTTP client, the API on
//! a free loopback port, JSON answers, a stand-in whose pages are always stale.
#![allow(dead_code, reason = "each test binary uses part of the support")]

use std::time::Duration;

use dual_mode::Secret;
use dual_mode::jobs::{RunReport, WorkerConfig, WorkerHandle};
use dual_mode_test_support::RedisServer;
use esi_contracts::api::{self, AppState};
use esi_contracts::jobs::{self, Secrets};
use esi_contracts::settings::{EsiToken, RedisUrl, Settings};
use esi_contracts::standin::{self, RECORDED_AT, StandIn, StandInOptions};
use serde_json::Value;
use tokio::sync::watch;

pub fn secrets(redis: &RedisServer) -> Secrets {
    Secrets { token: Secret::new(EsiToken::default()), redis_url: Secret::new(RedisUrl::new(redis.url.clone())) }
}

pub fn http() -> reqwest::Client {
    dual_mode::HttpConfig::default().builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A running API with its state.
pub struct Api {
    pub base: String,
    pub state: AppState,
    pub stop: watch::Sender<bool>,
}

pub async fn start_api(redis: &RedisServer, settings: Settings) -> Api {
    start_api_with(redis, settings, None).await
}

/// The API with the job dashboard behind `admin_token`, when given.
pub async fn start_api_with(redis: &RedisServer, settings: Settings, admin_token: Option<&str>) -> Api {
    let queue = jobs::connect_queue(secrets(redis).redis_url.expose()).await.expect("queue");
    let mut state = AppState::connect(settings, secrets(redis), queue).await.expect("state");
    state.admin_token = admin_token.map(|t| Secret::new(t.to_owned()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, mut rx) = watch::channel(false);
    tokio::spawn(api::run(listener, state.clone(), async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    Api { base, state, stop }
}

pub async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = http.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {bytes:?}")))
}

pub async fn stale_standin() -> StandIn {
    standin::start(StandInOptions {
        last_modified: Some(RECORDED_AT),
        expires_after: Duration::ZERO,
        ..Default::default()
    })
    .await
    .expect("stand-in")
}

/// A worker of the API's queue, running until [`Running::stop`].
pub struct Running {
    worker: WorkerHandle,
}

impl Running {
    pub async fn start(api: &Api, redis: &RedisServer, config: WorkerConfig) -> Self {
        let worker =
            jobs::worker(api.state.queue.clone(), &api.state.settings, secrets(redis), config).await.expect("worker");
        Self { worker: worker.spawn() }
    }

    pub async fn stop(self) -> RunReport {
        self.worker.stop().await.expect("worker")
    }
}
