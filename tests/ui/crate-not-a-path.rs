use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(crate = "dual_mode")]
struct Service {
    url: String,
}

fn main() {}
