//! Loopback servers for dual-mode's tests, benchmarks and examples. Not published.
//!
//! - [`RedisServer`]: a temporary `redis-server` on a free 127.0.0.1 port, killed (and its
//!   directory removed) on drop, or the Redis `REDIS_URL` names.
//!   [`RedisServer::persistent`] loses nothing when killed and restarted;
//!   [`RedisServer::tls`] speaks TLS only, with a certificate made for it.
//! - [`RedisCluster`]: three primaries and three replicas; [`RedisSentinels`]: a primary, a
//!   replica and three sentinels. Every process killed on drop.
//! - [`CountingHttp`]: a minimal HTTP/1.1 keep-alive server on 127.0.0.1 that answers `ok` and
//!   counts its connections as the server sees them.
//! - [`prometheus_value`]: one series' value in Prometheus text format.
//! - [`PostgresServer`], [`MariaDbServer`]: a temporary Postgres or MariaDB on a free
//!   127.0.0.1 port with its own data directory, stopped and removed on drop.
//! - [`Browser`]: a headless Chromium driven over `WebDriver` by its own `chromedriver`.
//! - [`wait_until`]: a condition asked until it holds, or a panic naming it.

mod database;
mod http;
mod prometheus;
mod redis_cluster;
mod redis_sentinel;
mod redis_server;
mod tls;
mod wait;
mod webdriver;

pub use database::{DatabaseError, MariaDbServer, PostgresServer};
pub use http::CountingHttp;
pub use prometheus::prometheus_value;
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::{PRIMARY_NAME, RedisSentinels};
pub use redis_server::{LaunchError, RedisServer, TempDir, free_port};
pub use wait::wait_until;
pub use webdriver::{Browser, Element, WebDriverError};
