// An `open = path` function receives the whole spec.
use dual_mode::DualMode;

async fn connect(url: &str) -> Result<reqwest::Client, reqwest::Error> {
    let _ = url;
    reqwest::Client::builder().build()
}

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared, open = connect)]
    http: reqwest::Client,
}

fn main() {}
