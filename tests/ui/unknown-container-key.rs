use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(spec_name = Job)]
struct Service {
    name: String,
}

fn main() {}
