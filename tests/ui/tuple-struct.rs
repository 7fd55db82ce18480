use dual_mode::DualMode;

#[derive(DualMode)]
struct Service(String, #[dual_mode(shared)] reqwest::Client);

fn main() {}
