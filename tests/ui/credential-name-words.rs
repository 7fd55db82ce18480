// Names that hold a credential as their whole name or their last word (`key`, `bearer`,
// `auth`, `appid`): one warning each (an error here), on the field; `cache_key` is marked.
#![deny(deprecated)]
use dual_mode::DualMode;

#[derive(DualMode)]
struct Weather {
    city: String,
    appid: String,
    weather_key: String,
    basic_auth: String,
    #[dual_mode(not_secret)]
    cache_key: String,
    author: String,
}

fn main() {}
