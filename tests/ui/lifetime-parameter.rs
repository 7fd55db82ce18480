use dual_mode::DualMode;

#[derive(DualMode)]
struct Service<'a> {
    name: &'a str,
}

fn main() {}
