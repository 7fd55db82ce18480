use dual_mode::{DualMode, Secret};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub redis_url: String,
}

#[derive(DualMode)]
pub struct Svc {
    pub settings: Settings,
    #[dual_mode(secret, env = "DM_SMOKE_TOKEN")]
    pub token: Secret<String>,
    #[dual_mode(shared)]
    pub http: reqwest::Client,
    #[dual_mode(shared, config = settings.redis_url)]
    pub redis: redis::aio::MultiplexedConnection,
}

#[test]
fn spec_roundtrip() {
    let spec = SvcSpec { settings: Settings { redis_url: "redis://127.0.0.1:1/".into() } };
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(json, r#"{"settings":{"redis_url":"redis://127.0.0.1:1/"}}"#);
}
