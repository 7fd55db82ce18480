use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Service {
    #[dual_mode(secret, env = "TOKEN", key = "api")]
    token: Secret<String>,
}

fn main() {}
