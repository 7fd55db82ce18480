// Only a spec goes into a queue, never the parts (which may hold clients and secrets).
use dual_mode::DualMode;
use dual_mode::jobs::{PushOptions, Queue};

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
}

async fn push(queue: &Queue, parts: &ServiceParts) {
    let _ = queue.push_spec(parts, PushOptions::default()).await;
}

fn main() {
    let _ = push;
}
