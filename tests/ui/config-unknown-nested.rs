use dual_mode::DualMode;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    redis_url: String,
}

#[derive(DualMode)]
struct Service {
    settings: Settings,
    #[dual_mode(shared, config = settings.redis_uri)]
    redis: redis::aio::ConnectionManager,
}

fn main() {}
