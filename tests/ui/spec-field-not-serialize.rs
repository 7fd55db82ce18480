use dual_mode::DualMode;

#[derive(Clone, Debug)]
struct Settings {
    url: String,
}

#[derive(DualMode)]
struct Service {
    name: String,
    settings: Settings,
    #[dual_mode(shared)]
    http: reqwest::Client,
}

fn main() {}
