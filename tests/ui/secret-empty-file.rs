use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Service {
    #[dual_mode(secret, file = "")]
    token: Secret<String>,
}

fn main() {}
