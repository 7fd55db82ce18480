use dual_mode::DualMode;

fn connect(url: &str) -> reqwest::Client {
    let _ = url;
    reqwest::Client::new()
}

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared, open = connect)]
    http: reqwest::Client,
}

fn main() {}
