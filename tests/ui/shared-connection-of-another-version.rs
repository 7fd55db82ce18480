// A redis connection of another major version than dual-mode has built in (a stand-in module
// here), with its URL as config: one error, naming the redis version that is built in.
use dual_mode::DualMode;

mod redis_0_27 {
    pub mod aio {
        #[derive(Clone)]
        pub struct ConnectionManager;
    }
}

#[derive(DualMode)]
struct Service {
    redis_url: String,
    #[dual_mode(shared, config = redis_url)]
    redis: redis_0_27::aio::ConnectionManager,
}

fn main() {}
