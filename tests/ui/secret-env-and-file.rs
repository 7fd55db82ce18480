use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Service {
    #[dual_mode(secret, env = "TOKEN", file = "/run/secrets/token")]
    token: Secret<String>,
}

fn main() {}
