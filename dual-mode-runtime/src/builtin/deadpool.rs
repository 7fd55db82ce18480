//! deadpool-postgres's `Pool` as a [`Resource`] (feature `deadpool-postgres`).

use std::time::Duration;

use deadpool_postgres::tokio_postgres::{self, NoTls};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::pool_url::{PoolUrl, share_key};
use crate::Resource;
use crate::error::BoxError;

/// Why a deadpool-postgres pool could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadpoolError {
    /// The URL (or one of its pool parameters) does not parse.
    #[error("the database URL is not valid")]
    Url(#[source] BoxError),
    /// The pool could not be built.
    #[error("the pool could not be built")]
    Build(#[source] deadpool_postgres::BuildError),
    /// Its first connection failed.
    #[error("the pool's first connection failed")]
    Connect(#[source] deadpool_postgres::PoolError),
}

/// `deadpool_postgres::Pool` (feature `deadpool-postgres`): config, a `postgres://` URL, with
/// the pool's options as query parameters as for the sqlx pools (`max_connections`, default 1;
/// `acquire_timeout_ms`, default 10 000). Connections are plain TCP (`NoTls`): for TLS, open the
/// pool yourself with `#[dual_mode(shared, open = path)]`.
///
/// It connects on open, so a wrong URL is an `EnterError` naming the field. Its close is
/// `Pool::close`: idle connections end at once, and those in use when they come back.
///
/// ```
/// use dual_mode::{DualMode, Secret};
///
/// #[derive(DualMode)]
/// struct Ledger {
///     #[dual_mode(shared, config = database_url)]
///     db: deadpool_postgres::Pool,
///     #[dual_mode(secret, env = "DATABASE_URL")]
///     database_url: Secret<String>,
/// }
/// ```
impl Resource for Pool {
    type Config = str;
    type Error = DeadpoolError;

    async fn open(url: &str) -> Result<Self, DeadpoolError> {
        let url = PoolUrl::parse(url).map_err(|e| DeadpoolError::Url(e.into()))?;
        let config: tokio_postgres::Config = url.connect.parse().map_err(|e| DeadpoolError::Url(Box::new(e)))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(usize::try_from(url.max_connections).unwrap_or(usize::MAX))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(url.acquire_timeout))
            .create_timeout(Some(url.acquire_timeout))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(DeadpoolError::Build)?;
        // Connects now: a bad URL fails the enter, not the job's first query.
        drop(pool.get().await.map_err(DeadpoolError::Connect)?);
        Ok(pool)
    }

    fn share_key(url: &str) -> u64 {
        share_key(url)
    }

    /// Closes the pool for every clone: its idle connections end now.
    async fn close(self) -> Result<(), DeadpoolError> {
        Pool::close(&self);
        Ok(())
    }
}
