//! The schema's versioned migrations: applied in order, each once, in one transaction under
//! an advisory lock of the schema, and recorded in the schema's own version table.

use sqlx::{Connection as _, Executor as _, PgPool};

/// The migrations this binary knows, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[(&str, &str)] = &[
    ("initial", include_str!("../migrations/0001_initial.sql")),
    ("rate windows", include_str!("../migrations/0002_rate_windows.sql")),
];

/// The schema version this binary creates and works with.
pub const SCHEMA_VERSION: u32 = 2;

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// The version table, in the job layer's schema.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS @schema@.migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Why the job layer's schema could not be created or upgraded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The schema's name is not a plain identifier.
    #[error(
        "schema name {name:?} refused: use 1 to 63 lower-case ASCII letters, digits and `_`, starting with a \
         letter or `_`"
    )]
    BadSchemaName {
        /// The name as given.
        name: String,
    },
    /// The schema was migrated by a newer version of this crate than this binary.
    #[error(
        "schema {schema:?} is at version {found}, newer than version {known} that this binary knows: upgrade \
         this binary (or use another schema)"
    )]
    TooNew {
        /// The schema.
        schema: String,
        /// Its version.
        found: u32,
        /// The newest version this binary knows ([`SCHEMA_VERSION`]).
        known: u32,
    },
    /// Postgres failed, during `step`.
    #[error("postgres failed to {step}")]
    Database {
        /// What the migration was doing.
        step: &'static str,
        /// Postgres's error.
        source: sqlx::Error,
    },
}

/// Checks that `name` is a schema name that needs no quoting.
pub(crate) fn check_schema_name(name: &str) -> Result<(), MigrateError> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(MigrateError::BadSchemaName { name: name.to_owned() })
    }
}

/// The advisory lock key of `schema`'s migrations: a fixed tag and the schema's FNV-1a hash.
fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "dual-mode migrations:".bytes().chain(schema.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Creates `schema` or upgrades it to [`SCHEMA_VERSION`]; the version it had before.
pub(crate) fn migrate<'a>(
    pool: &'a PgPool,
    schema: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, MigrateError>> + Send + 'a>> {
    Box::pin(migrate_now(pool, schema))
}

async fn migrate_now(pool: &PgPool, schema: &str) -> Result<u32, MigrateError> {
    check_schema_name(schema)?;
    let db = |step| move |source| MigrateError::Database { step, source };
    let mut con = pool.acquire().await.map_err(db("connect"))?;
    let mut tx = con.begin().await.map_err(db("begin the migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(schema))
        .execute(&mut *tx)
        .await
        .map_err(db("take the migration lock"))?;
    let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
    tx.execute(sqlx::raw_sql(&create)).await.map_err(db("create the schema"))?;
    let table = crate::sql_in(schema, VERSION_TABLE);
    tx.execute(sqlx::raw_sql(&table)).await.map_err(db("create the version table"))?;
    let found: Option<i32> = sqlx::query_scalar(&crate::sql_in(schema, "SELECT max(version) FROM @schema@.migrations"))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("read the schema version"))?;
    let found = found.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(MigrateError::TooNew { schema: schema.to_owned(), found, known: SCHEMA_VERSION });
    }
    for (version, (name, sql)) in (1..).zip(MIGRATIONS).skip(usize::try_from(found).unwrap_or(usize::MAX)) {
        let migration = crate::sql_in(schema, sql);
        tx.execute(sqlx::raw_sql(&migration)).await.map_err(db("apply a migration"))?;
        sqlx::query(&crate::sql_in(schema, "INSERT INTO @schema@.migrations (version, name) VALUES ($1, $2)"))
            .bind(version)
            .bind(*name)
            .execute(&mut *tx)
            .await
            .map_err(db("record a migration"))?;
    }
    tx.commit().await.map_err(db("commit the migration"))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["dual_mode", "_x", "jobs2", &"a".repeat(63)] {
            assert!(check_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2jobs", "Jobs", "job-s", "a;drop", "a.b", "\"x\"", &"a".repeat(64)] {
            let err = check_schema_name(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn each_schema_has_its_own_lock() {
        assert_ne!(lock_key("a"), lock_key("b"));
        assert_eq!(lock_key("a"), lock_key("a"));
    }
}
