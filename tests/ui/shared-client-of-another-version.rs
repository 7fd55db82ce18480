// A `Client` of another major version of reqwest than dual-mode has built in (a stand-in
// module here, as `reqwest = "0.11"` in a user's Cargo.toml would be): the error names the
// versions that are built in.
use dual_mode::DualMode;

mod reqwest_0_11 {
    #[derive(Clone)]
    pub struct Client;
}

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared)]
    http: reqwest_0_11::Client,
}

fn main() {}
