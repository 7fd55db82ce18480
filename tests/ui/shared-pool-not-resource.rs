// A database pool that no built-in resource covers: the error says which pools are built in
// and how to open one with `open = path`.
use dual_mode::DualMode;

mod db {
    #[derive(Clone)]
    pub struct Pool;
}

#[derive(DualMode)]
struct Service {
    #[dual_mode(shared)]
    pool: db::Pool,
}

fn main() {}
