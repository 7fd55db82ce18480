// An attribute mistake is one error: the generated types and methods still exist, so the
// code that uses them compiles quietly.
use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared, confg = url)]
    http: reqwest::Client,
}

async fn job() -> Result<(), dual_mode::BoxError> {
    let spec = ServiceSpec { url: "http://127.0.0.1:1/".into() };
    let parts = ServiceParts { http: None, ..spec.clone().into() };
    let guard = parts.enter().await?;
    let _ = (guard.spec(), &guard.url, &guard.http);
    guard.exit().await?;
    spec.run(async |service: &Service| Ok::<_, dual_mode::BoxError>(service.url.len())).await?;
    Ok(())
}

fn main() {
    let _ = job;
}
