use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Service {
    #[dual_mode(env = "TOKEN")]
    token: Secret<String>,
}

fn main() {}
