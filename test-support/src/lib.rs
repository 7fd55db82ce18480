//! Loopback servers for dual-mode's tests, benchmarks and examples. Not published.
//!
//! - [`RedisServer`]: a temporary `redis-server` on a free 127.0.0.1 port, killed (and its
//!   directory removed) on drop, or the Redis `REDIS_URL` names.
//! - [`CountingHttp`]: a minimal HTTP/1.1 keep-alive server on 127.0.0.1 that answers `ok` and
//!   counts its connections as the server sees them.
//! - [`Browser`]: a headless Chromium driven over `WebDriver` by its own `chromedriver`.

mod http;
mod redis_server;
mod webdriver;

pub use http::CountingHttp;
pub use redis_server::{LaunchError, RedisServer, TempDir, free_port};
pub use webdriver::{Browser, Element, WebDriverError};
