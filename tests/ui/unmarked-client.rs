// A live client without `#[dual_mode(shared)]` is a spec field, and a spec is serialized.
use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    url: String,
    http: reqwest::Client,
}

fn main() {}
