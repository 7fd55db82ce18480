use dual_mode::DualMode;

async fn disconnect(client: reqwest::Client) -> Result<(), reqwest::Error> {
    drop(client);
    Ok(())
}

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared, close = disconnect)]
    http: reqwest::Client,
}

fn main() {}
