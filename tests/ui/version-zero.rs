use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(version = 0)]
struct Service {
    name: String,
}

fn main() {}
