use dual_mode::DualMode;

#[derive(DualMode)]
union Service {
    a: u32,
    b: f32,
}

fn main() {}
