use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared, key = "primary", key = "replica")]
    redis: redis::aio::ConnectionManager,
    url: String,
}

fn main() {}
