// A pool's config is its URL (pool options ride on it as parameters), not a number.
use dual_mode::DualMode;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    database_url: String,
    max_connections: u32,
}

#[derive(DualMode)]
struct Ledger {
    settings: Settings,
    #[dual_mode(shared, config = settings.max_connections)]
    db: sqlx::MySqlPool,
}

fn main() {}
