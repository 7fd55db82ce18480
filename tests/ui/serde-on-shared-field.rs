use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    name: String,
    #[dual_mode(shared)]
    #[serde(skip)]
    http: reqwest::Client,
}

fn main() {}
