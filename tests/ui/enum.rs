use dual_mode::DualMode;

#[derive(DualMode)]
enum Service {
    A { name: String },
    B { name: String },
}

fn main() {}
