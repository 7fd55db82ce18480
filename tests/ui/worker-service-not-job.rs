// A worker runs services that implement `Job`.
use dual_mode::DualMode;
use dual_mode::jobs::{Clients, Worker};

#[derive(DualMode)]
struct Service {
    url: String,
}

fn register(worker: Worker) -> Worker {
    worker.service::<Service>(Clients::Temporary)
}

fn main() {
    let _ = register;
}
