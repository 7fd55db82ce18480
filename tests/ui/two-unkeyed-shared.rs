use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    primary_url: String,
    replica_url: String,
    #[dual_mode(shared, config = primary_url)]
    primary: redis::aio::ConnectionManager,
    #[dual_mode(shared, config = replica_url)]
    replica: redis::aio::ConnectionManager,
}

fn main() {}
