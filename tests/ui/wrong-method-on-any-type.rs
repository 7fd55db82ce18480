// A typo on any type in a crate that uses the derive: the derive's support traits stay out
// of the suggestions.
use dual_mode::DualMode;

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
}

fn main() {
    let n: u32 = 5;
    let _ = n.get();
    let _ = n.provide();
}
