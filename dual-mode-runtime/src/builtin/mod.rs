//! Built-in resources, each behind a default-on feature.

#[cfg(feature = "reqwest")]
pub(crate) mod http;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql", feature = "sqlx-sqlite"))]
mod sqlx;
