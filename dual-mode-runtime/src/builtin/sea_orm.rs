//! sea-orm's `DatabaseConnection` as a [`Resource`] (feature `sea-orm`).

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

use super::pool_url::{PoolUrl, share_key};
use crate::Resource;

/// `sea_orm::DatabaseConnection` (feature `sea-orm`): config, a database URL, with the pool's
/// options as query parameters as for the sqlx pools (`max_connections`, default 1;
/// `min_connections`; `acquire_timeout_ms`, default 10 000; `idle_timeout_ms`). The driver is
/// the one your own sea-orm dependency enables (`sqlx-postgres`, `sqlx-mysql`, `sqlx-sqlite`).
///
/// It connects on open, so a wrong URL is an `EnterError` naming the field. Its close is
/// `DatabaseConnection::close`, which ends every connection of its pool.
///
/// ```
/// use dual_mode::{DualMode, Secret};
///
/// #[derive(DualMode)]
/// struct Catalog {
///     #[dual_mode(shared, config = database_url)]
///     db: sea_orm::DatabaseConnection,
///     #[dual_mode(secret, env = "DATABASE_URL")]
///     database_url: Secret<String>,
/// }
/// ```
impl Resource for DatabaseConnection {
    type Config = str;
    type Error = DbErr;

    async fn open(url: &str) -> Result<Self, DbErr> {
        let url = PoolUrl::parse(url).map_err(|e| DbErr::Custom(e.to_string()))?;
        let mut options = ConnectOptions::new(url.connect);
        options
            .max_connections(url.max_connections)
            .min_connections(url.min_connections)
            .acquire_timeout(url.acquire_timeout)
            .connect_timeout(url.acquire_timeout)
            .sqlx_logging(false);
        if let Some(idle) = url.idle_timeout {
            options.idle_timeout(idle);
        }
        Database::connect(options).await
    }

    fn share_key(url: &str) -> u64 {
        share_key(url)
    }

    async fn close(self) -> Result<(), DbErr> {
        DatabaseConnection::close(self).await
    }
}
