use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared, open = connect)]
    http: reqwest::Client,
}

fn main() {}
