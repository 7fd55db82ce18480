//! What the example's system tests share: where the queue and the data live ([`Backing`]), an
//! HTTP client, the API on a free loopback port, JSON answers, a stand-in whose pages are
//! always stale.
#![allow(dead_code, reason = "each test binary uses part of the support")]

use std::time::Duration;

use dual_mode::Secret;
use dual_mode::jobs::{Queue, RunReport, WorkerConfig, WorkerHandle};
use dual_mode_test_support::{PostgresServer, RedisServer, TempDir};
use esi_contracts::api::{self, AppState};
use esi_contracts::jobs::{self, Secrets};
use esi_contracts::settings::{DatabaseUrl, EsiToken, RedisUrl, Settings};
use esi_contracts::standin::{self, RECORDED_AT, StandIn, StandInOptions};
use serde_json::Value;
use tokio::sync::watch;

/// A SQLite database in a temporary directory of its own (removed with the directory): the
/// directory and the database's URL.
fn sqlite() -> (TempDir, String) {
    let dir = TempDir::new("esi-test").expect("a temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.0.join("esi.db").display());
    (dir, url)
}

/// Where a test's jobs and data live: the queue (in this process, on a `redis-server`, or on
/// Postgres) and the database (a SQLite file in a temporary directory, or a Postgres server).
pub struct Backing {
    /// The queue every part of the test shares (an in-process queue is one per `Queue`).
    pub queue: Queue,
    pub database_url: String,
    pub redis: Option<RedisServer>,
    pub postgres: Option<PostgresServer>,
    _sqlite: Option<TempDir>,
}

impl Backing {
    /// The queue in this process and the data in SQLite: nothing installed.
    pub async fn in_process() -> Self {
        let (dir, database_url) = sqlite();
        let queue = jobs::connect_queue(None, None).await.expect("queue");
        Self { queue, database_url, redis: None, postgres: None, _sqlite: Some(dir) }
    }

    /// The queue on a `redis-server`, the data in SQLite.
    pub async fn redis() -> Self {
        let redis = RedisServer::start();
        let (dir, database_url) = sqlite();
        let queue = jobs::connect_queue(Some(&RedisUrl::new(redis.url.clone())), None).await.expect("queue");
        Self { queue, database_url, redis: Some(redis), postgres: None, _sqlite: Some(dir) }
    }

    /// The queue and the data on a Postgres server, nothing else.
    pub async fn postgres() -> Self {
        let postgres = PostgresServer::start();
        let database_url = postgres.url.clone();
        let queue = jobs::connect_queue(None, Some(&DatabaseUrl::new(database_url.clone()))).await.expect("queue");
        Self { queue, database_url, redis: None, postgres: Some(postgres), _sqlite: None }
    }

    /// The queue on a `redis-server`, the data on a Postgres server.
    pub async fn redis_and_postgres() -> Self {
        let postgres = PostgresServer::start();
        Self { database_url: postgres.url.clone(), postgres: Some(postgres), _sqlite: None, ..Self::redis().await }
    }

    pub fn secrets(&self) -> Secrets {
        Secrets {
            token: Secret::new(EsiToken::default()),
            database_url: Secret::new(DatabaseUrl::new(self.database_url.clone())),
        }
    }

    /// A pool on the database (one connection), its tables created.
    pub async fn database(&self) -> sqlx::AnyPool {
        let db = <sqlx::AnyPool as dual_mode::Resource>::open(&self.database_url).await.expect("database");
        esi_contracts::store::migrate(&db).await.expect("tables");
        db
    }

    /// The Redis server's URL.
    pub fn redis_url(&self) -> &str {
        &self.redis.as_ref().expect("a test on Redis").url
    }
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

pub async fn start_api(backing: &Backing, settings: Settings) -> Api {
    start_api_with(backing, settings, None).await
}

/// The API with the job dashboard behind `admin_token`, when given.
pub async fn start_api_with(backing: &Backing, settings: Settings, admin_token: Option<&str>) -> Api {
    let mut state = AppState::connect(settings, backing.secrets(), backing.queue.clone()).await.expect("state");
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
    pub async fn start(api: &Api, backing: &Backing, config: WorkerConfig) -> Self {
        let worker = jobs::worker(api.state.queue.clone(), &api.state.settings, backing.secrets(), config)
            .await
            .expect("worker");
        Self { worker: worker.spawn() }
    }

    pub async fn stop(self) -> RunReport {
        self.worker.stop().await.expect("worker")
    }
}
