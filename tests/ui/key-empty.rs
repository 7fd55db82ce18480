use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    redis_url: String,
    #[dual_mode(shared, config = redis_url, key = "")]
    redis: redis::aio::ConnectionManager,
}

fn main() {}
