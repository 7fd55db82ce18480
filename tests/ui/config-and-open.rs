use dual_mode::DualMode;

async fn connect(spec: &ServiceSpec) -> Result<reqwest::Client, reqwest::Error> {
    let _ = spec;
    reqwest::Client::builder().build()
}

#[derive(DualMode)]
struct Service {
    http_config: dual_mode::HttpConfig,
    #[dual_mode(shared, config = http_config, open = connect)]
    http: reqwest::Client,
}

fn main() {}
