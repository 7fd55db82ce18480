use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    redis_url: String,
    #[dual_mode(shared, config = redis_uri)]
    redis: redis::aio::ConnectionManager,
}

fn main() {}
