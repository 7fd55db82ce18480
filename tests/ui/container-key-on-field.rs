use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    #[dual_mode(spec = Job)]
    name: String,
}

fn main() {}
