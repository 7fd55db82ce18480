//! One service, three modes: API mode with shared clients, job mode with temporary clients,
//! and queued jobs run by a worker with a context of warm clients.
//!
//! Run: `cargo run --example quickstart` (uses `REDIS_URL`, or starts a temporary
//! `redis-server` on a free loopback port).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use dual_mode::jobs::{Clients, Job, JobError, JobInfo, PushOptions, Queue, QueueConfig, Worker, WorkerConfig};
use dual_mode::{Context, DualMode, HttpConfig};
use dual_mode_test_support::RedisServer;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use dual_mode::BoxError;

/// The service's config: this is what a job spec carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    greeting_url: String,
    redis_url: String,
}

/// Fetches a greeting and counts it in Redis.
#[derive(DualMode)]
struct Greeter {
    settings: Settings,
    name: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
    #[dual_mode(shared, config = settings.redis_url)]
    redis: ConnectionManager,
}

impl Greeter {
    async fn greet(&self) -> Result<String, BoxError> {
        let hello = self.http.get(&self.settings.greeting_url).send().await?.error_for_status()?.text().await?;
        let count: u64 = self.redis.clone().incr("greetings", 1).await?;
        Ok(format!("{hello}, {} (greeting #{count})", self.name))
    }
}

impl Job for Greeter {
    type Output = ();

    async fn run(&self, job: &JobInfo) -> Result<(), JobError> {
        let line = self.greet().await.map_err(JobError::failed)?;
        println!("  job {} (attempt {}): {line}", job.id(), job.attempt());
        Ok(())
    }
}

/// API mode: app state holds the shared clients.
#[derive(Clone)]
struct AppState {
    http: reqwest::Client,
    redis: ConnectionManager,
}

impl FromRef<AppState> for reqwest::Client {
    fn from_ref(state: &AppState) -> Self {
        state.http.clone()
    }
}

impl FromRef<AppState> for ConnectionManager {
    fn from_ref(state: &AppState) -> Self {
        state.redis.clone()
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // `REDIS_URL`, or a temporary `redis-server` on a free loopback port.
    let redis_server = RedisServer::from_env_or_temporary()?;
    let redis_url = redis_server.url.clone();
    let greeting_url = serve_greeting().await?;
    let settings = Settings { greeting_url, redis_url: redis_url.clone() };
    let spec = |name: &str| GreeterSpec { settings: settings.clone(), name: name.into() };

    println!("API mode: shared clients from app state, no guard");
    let state = AppState {
        http: HttpConfig::default().builder().build()?,
        redis: ConnectionManager::new(redis::Client::open(redis_url.as_str())?).await?,
    };
    println!("  {}", Greeter::from_state(spec("api"), &state).greet().await?);

    println!("job mode: temporary clients, closed on every path");
    let line = spec("job").run(async |greeter: &Greeter| greeter.greet().await).await?;
    println!("  {line}");
    println!("  the spec a queue stores: {}", serde_json::to_string(&spec("job"))?);

    println!("worker mode: queued specs, a worker with a context of warm clients");
    let queue = Queue::connect(redis::Client::open(redis_url.as_str())?, QueueConfig::new("quickstart")).await?;
    for name in ["ada", "grace", "edsger"] {
        queue.push_spec(&spec(name), PushOptions::new()).await?;
    }
    let ctx = Context::new().with(state.http.clone()).with(state.redis.clone());
    let worker = Worker::new(queue.clone(), WorkerConfig::new()).service::<Greeter>(Clients::Context(Arc::new(ctx)));
    let running = worker.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !queue.stats().await?.is_idle() {
        if tokio::time::Instant::now() > deadline {
            return Err("the queue did not drain in 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = running.stop().await?;
    println!("worker stopped: {report:?}");
    Ok(())
}

/// A local HTTP server answering `hello`.
async fn serve_greeting() -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new().route("/", axum::routing::get(async || "hello"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
