use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(sepc = Job)]
struct Service {
    #[dual_mode(shared, shared)]
    http: reqwest::Client,
    #[dual_mode(secret)]
    token: dual_mode::Secret<String>,
    #[dual_mode(shared, config = nowhere)]
    redis: redis::aio::ConnectionManager,
}

fn main() {}
