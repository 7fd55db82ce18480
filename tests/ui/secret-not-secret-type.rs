use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(secret, env = "TOKEN")]
    token: String,
}

fn main() {}
