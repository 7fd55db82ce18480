use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(spec = Job)]
#[dual_mode(spec = Task)]
struct Service {
    name: String,
}

fn main() {}
