use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared)]
    http: reqwest::Client,
    #[dual_mode(shared, config = http)]
    redis: redis::aio::ConnectionManager,
}

fn main() {}
