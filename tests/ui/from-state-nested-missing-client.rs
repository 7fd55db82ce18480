// `from_state` fills nested services from the same state: a client the inner service needs
// and the state lacks is named.
use axum::extract::FromRef;
use dual_mode::DualMode;

#[derive(DualMode)]
struct Inner {
    redis_url: String,
    #[dual_mode(shared, config = redis_url)]
    redis: redis::aio::ConnectionManager,
}

#[derive(DualMode)]
struct Outer {
    #[dual_mode(shared)]
    http: reqwest::Client,
    #[dual_mode(nested)]
    inner: Inner,
}

#[derive(Clone)]
struct AppState {
    http: reqwest::Client,
}

impl FromRef<AppState> for reqwest::Client {
    fn from_ref(state: &AppState) -> Self {
        state.http.clone()
    }
}

fn build(spec: OuterSpec, state: &AppState) -> Outer {
    Outer::from_state(spec, state)
}

fn main() {
    let _ = build;
}
