// A `config` path starts at a spec or secret field of this struct, not inside a nested service.
use dual_mode::DualMode;

#[derive(DualMode)]
struct Inner {
    redis_url: String,
}

#[derive(DualMode)]
struct Outer {
    #[dual_mode(nested)]
    inner: Inner,
    #[dual_mode(shared, config = inner.redis_url)]
    redis: redis::aio::ConnectionManager,
}

fn main() {}
