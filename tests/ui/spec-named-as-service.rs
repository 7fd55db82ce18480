use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(spec = Service)]
struct Service {
    url: String,
}

fn main() {}
