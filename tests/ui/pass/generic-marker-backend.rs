// Bounds go on the field types that reach the spec, not on the type parameters: a marker
// backend with no derives at all is a fine `B`.
use std::fmt::Debug;

use dual_mode::DualMode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

trait Backend {
    type Config: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
}

struct Memory;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct MemoryConfig {
    capacity: usize,
}

impl Backend for Memory {
    type Config = MemoryConfig;
}

#[derive(DualMode)]
struct Cache<B: Backend> {
    backend: B::Config,
    redis_url: String,
    #[dual_mode(shared, config = redis_url)]
    redis: redis::aio::MultiplexedConnection,
}

// The escape hatch: the user's bounds replace the inferred ones.
#[derive(DualMode)]
#[dual_mode(bound = "B: Backend + 'static")]
struct Bounded<B: Backend> {
    backend: B::Config,
}

fn spec<S: dual_mode::Spec>() {}
fn service<S: DualMode>() {}

fn main() {
    spec::<CacheSpec<Memory>>();
    service::<Cache<Memory>>();
    spec::<BoundedSpec<Memory>>();
    service::<Bounded<Memory>>();

    let spec = CacheSpec::<Memory> { backend: MemoryConfig { capacity: 3 }, redis_url: "redis://127.0.0.1:1/".into() };
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(json, r#"{"backend":{"capacity":3},"redis_url":"redis://127.0.0.1:1/"}"#);
    let back: CacheSpec<Memory> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.clone().backend, MemoryConfig { capacity: 3 });
    assert_eq!(format!("{back:?}"), r#"CacheSpec { backend: MemoryConfig { capacity: 3 }, redis_url: "redis://127.0.0.1:1/" }"#);
}
