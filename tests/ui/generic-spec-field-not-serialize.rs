// A spec field of a parameter's type: the bound is on the field's type, and a type that
// cannot go into a spec is reported where the service is used with it.
use dual_mode::DualMode;

struct NotSerializable;

#[derive(DualMode)]
struct Service<T> {
    settings: T,
}

fn service<S: DualMode>() {}

fn main() {
    service::<Service<NotSerializable>>();
}
