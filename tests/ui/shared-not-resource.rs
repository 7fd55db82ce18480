use dual_mode::DualMode;

#[derive(Clone)]
struct Cache;

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared)]
    cache: Cache,
}

fn main() {}
