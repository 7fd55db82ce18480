use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared)]
    redis: redis::aio::ConnectionManager,
}

fn main() {}
