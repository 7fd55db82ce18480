//! Built-in resources, each behind a feature of its own: the HTTP and Redis clients' on by
//! default, the database pools' and the middleware client's off.

#[cfg(feature = "deadpool-postgres")]
pub(crate) mod deadpool;
#[cfg(feature = "reqwest")]
pub(crate) mod http;
#[cfg(feature = "reqwest-0-12")]
mod http_0_12;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite",
    feature = "sqlx-any",
    feature = "sea-orm",
    feature = "deadpool-postgres"
))]
mod pool_url;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sea-orm")]
mod sea_orm;
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql", feature = "sqlx-sqlite", feature = "sqlx-any"))]
mod sqlx;
