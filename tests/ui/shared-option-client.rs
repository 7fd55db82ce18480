// The parts type already holds each shared client as an `Option`.
use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared)]
    http: Option<reqwest::Client>,
}

fn main() {}
