use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared, not_secret)]
    http: reqwest::Client,
}

fn main() {}
