use dual_mode::DualMode;

#[derive(DualMode)]
#[dual_mode(bound = "B:: Send")]
struct Service<B> {
    backend: B,
}

fn main() {}
