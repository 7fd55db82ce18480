// `#[dual_mode(crate = path)]`: the runtime reached through a re-export.
mod support {
    pub use dual_mode as runtime;
}

#[derive(support::runtime::DualMode)]
#[dual_mode(crate = crate::support::runtime)]
struct Service {
    url: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
}

fn main() {
    let spec = ServiceSpec { url: "http://127.0.0.1:1/".into() };
    let parts = ServiceParts { http: Some(reqwest::Client::new()), ..spec.into() };
    assert_eq!(parts.url, "http://127.0.0.1:1/");
    let _ = |s: &Service| (s.spec(), s.http.clone());
}
