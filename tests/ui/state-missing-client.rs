use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
    #[dual_mode(shared, config = url)]
    redis: redis::aio::ConnectionManager,
}

#[derive(Clone)]
struct AppState {
    http: reqwest::Client,
}

impl axum::extract::FromRef<AppState> for reqwest::Client {
    fn from_ref(state: &AppState) -> Self {
        state.http.clone()
    }
}

fn handler(state: &AppState) -> Service {
    Service::from_state(ServiceSpec { url: String::new() }, state)
}

fn main() {}
