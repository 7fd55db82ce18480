use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    primary_url: String,
    replica_url: String,
    #[dual_mode(shared, config = primary_url, key = "redis")]
    primary: redis::aio::ConnectionManager,
    #[dual_mode(shared, config = replica_url, key = "redis")]
    replica: redis::aio::ConnectionManager,
}

fn main() {}
