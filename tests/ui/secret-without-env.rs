use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Service {
    #[dual_mode(secret)]
    token: Secret<String>,
}

fn main() {}
