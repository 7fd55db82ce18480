use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    timeout_secs: u64,
    #[dual_mode(shared, config = timeout_secs)]
    http: reqwest::Client,
}

fn main() {}
