//! sqlx pools as [`Resource`]s: `PgPool` (feature `sqlx-postgres`), `MySqlPool`
//! (`sqlx-mysql`) and `SqlitePool` (`sqlx-sqlite`).
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

use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::ParseIntError;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::{ConnectOptions, Connection, Database, Pool};

use crate::Resource;

/// How long a temporary pool waits for a connection by default (sqlx's own is 30 s).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A database URL with the pool's options taken off.
#[derive(Debug, PartialEq, Eq)]
struct PoolUrl {
    /// What sqlx reads: the URL without the pool's parameters.
    connect: String,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
}

/// A pool parameter whose value is not a number.
#[derive(Debug, thiserror::Error)]
#[error("pool parameter `{name}` in the database URL is not a number")]
struct BadParameter {
    name: &'static str,
    #[source]
    cause: ParseIntError,
}

impl PoolUrl {
    fn parse(url: &str) -> Result<Self, BadParameter> {
        let mut parsed = Self {
            connect: String::new(),
            max_connections: 1,
            min_connections: 0,
            acquire_timeout: ACQUIRE_TIMEOUT,
            idle_timeout: None,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |name: &'static str| value.parse::<u64>().map_err(|cause| BadParameter { name, cause });
            let small = |name: &'static str| value.parse::<u32>().map_err(|cause| BadParameter { name, cause });
            match key {
                "max_connections" => parsed.max_connections = small("max_connections")?,
                "min_connections" => parsed.min_connections = small("min_connections")?,
                "acquire_timeout_ms" => parsed.acquire_timeout = Duration::from_millis(number("acquire_timeout_ms")?),
                "idle_timeout_ms" => parsed.idle_timeout = Some(Duration::from_millis(number("idle_timeout_ms")?)),
                _ => kept.push(pair),
            }
        }
        parsed.connect = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        Ok(parsed)
    }
}

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

/// Pools for one URL are shared within an enter; another URL is another pool.
fn share_key(url: &str) -> u64 {
    let mut h = DefaultHasher::new();
    url.hash(&mut h);
    h.finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_parameters_are_taken_off_the_url() {
        let url =
            PoolUrl::parse("postgres://u:p@127.0.0.1:5432/db?max_connections=4&sslmode=disable&acquire_timeout_ms=250")
                .expect("parses");
        assert_eq!(url.connect, "postgres://u:p@127.0.0.1:5432/db?sslmode=disable");
        assert_eq!(url.max_connections, 4);
        assert_eq!(url.min_connections, 0);
        assert_eq!(url.acquire_timeout, Duration::from_millis(250));
        assert_eq!(url.idle_timeout, None);
    }

    #[test]
    fn a_url_without_parameters_gets_a_one_connection_pool() {
        let url = PoolUrl::parse("sqlite:///tmp/x.db").expect("parses");
        assert_eq!(url.connect, "sqlite:///tmp/x.db");
        assert_eq!(url.max_connections, 1);
        assert_eq!(url.acquire_timeout, ACQUIRE_TIMEOUT);
    }

    #[test]
    fn a_pool_parameter_that_is_not_a_number_is_named() {
        let e = PoolUrl::parse("mysql://127.0.0.1/db?max_connections=many").expect_err("not a number");
        assert_eq!(e.to_string(), "pool parameter `max_connections` in the database URL is not a number");
    }
}
