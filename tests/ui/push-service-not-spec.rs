// Only a spec goes into a queue, never the live service.
use dual_mode::DualMode;
use dual_mode::jobs::{PushOptions, Queue};

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
}

async fn push(queue: &Queue, service: &Service) {
    let _ = queue.push_spec(service, PushOptions::default()).await;
}

fn main() {
    let _ = push;
}
