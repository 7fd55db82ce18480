// A `Secret` is never serialized, even inside a user's own type.
use dual_mode::Secret;
use serde::Serialize;

#[derive(Serialize)]
struct Credentials {
    user: String,
    password: Secret<String>,
}

fn main() {}
