use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Service {
    #[dual_mode(secret, env = "API_TOKEN")]
    token: Secret<String>,
    #[dual_mode(secret, env = "REDIS_URL")]
    redis_url: Secret<String>,
}

#[derive(Clone)]
struct AppState {
    token: Secret<String>,
}

impl axum::extract::FromRef<AppState> for Secret<String> {
    fn from_ref(state: &AppState) -> Self {
        state.token.clone()
    }
}

fn handler(state: &AppState) -> Service {
    Service::from_state(ServiceSpec {}, state)
}

fn main() {}
