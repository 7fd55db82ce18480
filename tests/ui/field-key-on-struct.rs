use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(shared)]
struct Service {
    http: reqwest::Client,
}

fn main() {}
