// `nested` is for a field that is itself a `#[derive(DualMode)]` service.
use dual_mode::DualMode;

struct Settings;

#[derive(DualMode)]
struct Service {
    #[dual_mode(nested)]
    settings: Settings,
}

fn main() {}
