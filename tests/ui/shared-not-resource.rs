use dual_mode::DualMode;

#[derive(Clone)]
struct Pool;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared)]
    pool: Pool,
}

fn main() {}
