use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared, secret, env = "TOKEN")]
    token: Secret<String>,
}

fn main() {}
