// A spec field named like a credential is written into every queued job: a warning (an
// error here) names the fix; `not_secret` silences it.
#![deny(deprecated)]
use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    api_key: String,
    #[dual_mode(not_secret)]
    token_bucket_size: u32,
}

fn main() {}
