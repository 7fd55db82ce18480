// A pool opens from a database URL: it has no default config.
use dual_mode::DualMode;

#[derive(DualMode)]
struct Ledger {
    #[dual_mode(shared)]
    db: sqlx::SqlitePool,
}

fn main() {}
