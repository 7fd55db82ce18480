use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(file = "/run/secrets/token")]
    token: String,
}

fn main() {}
