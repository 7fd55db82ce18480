use dual_mode::{DualMode, Secret};

#[derive(Clone)]
struct Key([u8; 32]);

#[derive(DualMode)]
struct Service {
    #[dual_mode(secret, env = "KEY")]
    key: Secret<Key>,
}

fn main() {}
