// A `close = path` function is an `async fn`.
use dual_mode::DualMode;

async fn connect(spec: &ServiceSpec) -> Result<reqwest::Client, reqwest::Error> {
    let _ = spec;
    reqwest::Client::builder().build()
}

fn disconnect(client: reqwest::Client) -> Result<(), std::io::Error> {
    drop(client);
    Ok(())
}

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared, open = connect, close = disconnect)]
    http: reqwest::Client,
}

fn main() {}
