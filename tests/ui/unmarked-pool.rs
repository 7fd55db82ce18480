// A database pool without `#[dual_mode(shared)]` is a spec field, and a spec is serialized:
// in either spelling of its type.
use dual_mode::DualMode;

#[derive(DualMode)]
struct Ledger {
    database_url: String,
    db: sqlx::PgPool,
    replica: sqlx::Pool<sqlx::Postgres>,
}

fn main() {}
