//! sqlx pools as [`Resource`]s: `PgPool` (feature `sqlx-postgres`), `MySqlPool`
//! (`sqlx-mysql`), `SqlitePool` (`sqlx-sqlite`) and `AnyPool` (`sqlx-any`).
//!
//! The config is the database URL, which usually carries a password: name a `Secret` field in
//! `config = ...` so that it never reaches a queue. The pool's options ride on the same URL as
//! query parameters, which are taken off before sqlx reads it:
//!
//! | parameter | pool option | default |
//! |---|---|---|
//! | `max_connections` | [`PoolOptions::max_connections`] | 1 |
//! | `min_connections` | [`PoolOptions::min_connections`] | 0 |
//! | `acquire_timeout_ms` | [`PoolOptions::acquire_timeout`] | 10 000 |
//! | `idle_timeout_ms` | [`PoolOptions::idle_timeout`] | sqlx's (10 minutes) |
//!
//! A temporary pool lives for one job, so by default it holds one connection, and it connects
//! on open: a wrong URL or an unreachable server is an [`EnterError`](crate::EnterError) naming
//! the field, not a failure in the middle of the job. Its close is `Pool::close().await`, which
//! ends every connection (dropping a pool would only close the client side). A worker keeps a
//! larger pool in its [`Context`](crate::Context) for all its jobs.

use sqlx::pool::PoolOptions;
use sqlx::{ConnectOptions, Connection, Database, Pool};

use super::pool_url::{PoolUrl, share_key};
use crate::Resource;

/// Opens a pool of `DB` from `url` and one connection in it.
async fn open<DB: Database>(url: &str) -> Result<Pool<DB>, sqlx::Error> {
    let url = PoolUrl::parse(url).map_err(|e| sqlx::Error::Configuration(e.into()))?;
    let connect: <DB::Connection as Connection>::Options = url.connect.parse()?;
    let options = PoolOptions::<DB>::new()
        .max_connections(url.max_connections)
        .min_connections(url.min_connections)
        .acquire_timeout(url.acquire_timeout)
        .idle_timeout(url.idle_timeout);
    // `connect_with` opens a connection before it returns, so that a bad URL fails here.
    options.connect_with(connect.disable_statement_logging()).await
}

macro_rules! pool_resource {
    ($feature:literal, $db:ty, $doc:literal) => {
        #[cfg(feature = $feature)]
        #[doc = $doc]
        impl Resource for Pool<$db> {
            type Config = str;
            type Error = sqlx::Error;

            /// Opens a pool from a database URL (pool options as query parameters; see the
            /// module docs) with one connection in it.
            async fn open(url: &str) -> Result<Self, sqlx::Error> {
                open::<$db>(url).await
            }

            fn share_key(url: &str) -> u64 {
                share_key(url)
            }

            /// Closes every connection of the pool (waiting for those in use to come back),
            /// so that the server sees them go.
            async fn close(self) -> Result<(), sqlx::Error> {
                Pool::close(&self).await;
                Ok(())
            }
        }
    };
}

pool_resource!(
    "sqlx-postgres",
    sqlx::Postgres,
    "`sqlx::PgPool` (feature `sqlx-postgres`): config, a `postgres://` URL.

```
use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Ledger {
    #[dual_mode(shared, config = database_url)]
    db: sqlx::PgPool,
    #[dual_mode(secret, env = \"DATABASE_URL\")]
    database_url: Secret<String>,
}
```"
);

pool_resource!(
    "sqlx-mysql",
    sqlx::MySql,
    "`sqlx::MySqlPool` (feature `sqlx-mysql`), for MySQL and MariaDB: config, a `mysql://` URL.

```
use dual_mode::{DualMode, Secret};

#[derive(DualMode)]
struct Ledger {
    #[dual_mode(shared, config = database_url)]
    db: sqlx::MySqlPool,
    #[dual_mode(secret, env = \"DATABASE_URL\")]
    database_url: Secret<String>,
}
```"
);

pool_resource!(
    "sqlx-sqlite",
    sqlx::Sqlite,
    "`sqlx::SqlitePool` (feature `sqlx-sqlite`): config, a `sqlite://` URL (`sqlite://path?mode=rwc`
creates the file).

```
use dual_mode::DualMode;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    database_url: String,
}

#[derive(DualMode)]
struct Notes {
    settings: Settings,
    #[dual_mode(shared, config = settings.database_url)]
    db: sqlx::SqlitePool,
}
```"
);

/// `sqlx::AnyPool` (feature `sqlx-any`): config, a URL whose scheme picks the driver among those
/// the build has (`postgres://`, `mysql://`, `sqlite://`, with the features `sqlx-postgres`,
/// `sqlx-mysql`, `sqlx-sqlite`). One service then runs on SQLite in a test and on Postgres in
/// production, within what sqlx's `Any` driver can carry (integers, floats, text, bytes).
///
/// The first open installs sqlx's default drivers (`sqlx::any::install_default_drivers`, a
/// no-op once done). An application that installs a list of its own with
/// `sqlx::any::install_drivers` does so before it opens anything: sqlx allows one list per
/// process.
///
/// ```
/// use dual_mode::{DualMode, Secret};
///
/// #[derive(DualMode)]
/// struct Ledger {
///     #[dual_mode(shared, config = database_url)]
///     db: sqlx::AnyPool,
///     #[dual_mode(secret, env = "DATABASE_URL")]
///     database_url: Secret<String>,
/// }
/// ```
#[cfg(feature = "sqlx-any")]
impl Resource for Pool<sqlx::Any> {
    type Config = str;
    type Error = sqlx::Error;

    /// Opens a pool from a database URL (pool options as query parameters; see the module
    /// docs) with one connection in it, on the driver the URL's scheme names.
    async fn open(url: &str) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        open::<sqlx::Any>(url).await
    }

    fn share_key(url: &str) -> u64 {
        share_key(url)
    }

    /// Closes every connection of the pool, as for the typed pools.
    async fn close(self) -> Result<(), sqlx::Error> {
        Pool::close(&self).await;
        Ok(())
    }
}
