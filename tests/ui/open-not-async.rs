// An `open = path` function is an `async fn`.
use dual_mode::DualMode;

fn connect(spec: &ServiceSpec) -> Result<reqwest::Client, reqwest::Error> {
    let _ = spec;
    reqwest::Client::builder().build()
}

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared, open = connect)]
    http: reqwest::Client,
}

fn main() {}
