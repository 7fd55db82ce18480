use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(spec = Job, parts = Job)]
struct Service {
    url: String,
}

fn main() {}
