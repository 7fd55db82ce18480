use dual_mode::DualMode;

#[derive(DualMode)]
struct Service;

fn main() {}
