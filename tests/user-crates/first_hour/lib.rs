//! A new user's crate, written from the README's snippets alone: a service with a shared
//! reqwest client, a Redis connection and a secret, served by an axum handler from app state,
//! and run as jobs. Built twice by `tests/user_crates.rs`: on reqwest 0.13, and on reqwest 0.12
//! with dual-mode's feature `reqwest-0-12`.

// "A service"
use dual_mode::{BoxError, DualMode, Secret};
use serde::{Deserialize, Serialize};

/// The service's config: what a job spec carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub greeting_url: String,
    pub redis_url: String,
}

#[derive(DualMode)]
pub struct Greeter {
    pub settings: Settings,                           // spec field: goes into the job spec
    pub name: String,                                 // spec field
    #[dual_mode(secret, env = "GREETER_TOKEN")]       // never serialized, read on enter
    pub token: Secret<String>,
    #[dual_mode(shared)]                              // a live client, default config
    pub http: reqwest::Client,
    #[dual_mode(shared, config = settings.redis_url)] // a live client, its config from the spec
    pub redis: redis::aio::ConnectionManager,
}

/// What a greeting returns (and a greeting job: stored with its record, typed again on read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Greeting {
    pub text: String,
    pub count: u64,
}

impl Greeter {
    // Business methods use plain fields: no Option, no unwrap.
    pub async fn greet(&self) -> Result<Greeting, BoxError> {
        let url = format!("{}/{}", self.settings.greeting_url, self.name);
        let request = self.http.get(url).bearer_auth(self.token.expose());
        let text = request.send().await?.error_for_status()?.text().await?;
        let count: u64 = redis::AsyncCommands::incr(&mut self.redis.clone(), "greetings", 1).await?;
        Ok(Greeting { text, count })
    }
}

// "API mode"
use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::get;

/// One field per client, secret and config the services take from it.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub http: reqwest::Client,
    pub redis: redis::aio::ConnectionManager,
    pub token: Secret<String>,
    pub settings: Settings,
}

async fn greet(State(state): State<AppState>, Path(name): Path<String>) -> Result<String, StatusCode> {
    let spec = GreeterSpec { settings: state.settings.clone(), name };
    let greeter = Greeter::from_state(spec, &state);
    let greeting = greeter.greet().await.map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(greeting.text)
}

pub fn app(state: AppState) -> Router {
    Router::new().route("/greet/{name}", get(greet)).with_state(state)
}

// "Open the state's clients once, at start"
use dual_mode::{HttpConfig, Resource};

/// The app state, its clients opened through their `Resource` impls.
pub async fn open_state(settings: Settings, token: Secret<String>) -> Result<AppState, BoxError> {
    let state = AppState {
        http: reqwest::Client::open(&HttpConfig::default()).await?,
        redis: redis::aio::ConnectionManager::open(&settings.redis_url).await?,
        token,
        settings,
    };
    Ok(state)
}

// "Jobs, workers and schedules"
use dual_mode::jobs::{Job, JobError, JobInfo};

impl Job for Greeter {
    type Output = Greeting;

    async fn run(&self, _job: &JobInfo) -> Result<Greeting, JobError> {
        self.greet().await.map_err(JobError::failed)
    }
}
