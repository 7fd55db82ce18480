use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shard)]
    http: reqwest::Client,
}

fn main() {}
