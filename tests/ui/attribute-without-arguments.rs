use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode]
    http: reqwest::Client,
}

fn main() {}
