//! A database URL that carries a pool's options as query parameters, taken off before the
//! driver reads it: what every built-in pool resource opens from.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::ParseIntError;
use std::time::Duration;

/// How long a temporary pool waits for a connection by default (sqlx's own is 30 s).
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A database URL with the pool's options taken off.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PoolUrl {
    /// What sqlx reads: the URL without the pool's parameters.
    pub(crate) connect: String,
    pub(crate) max_connections: u32,
    pub(crate) min_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
}

/// A pool parameter whose value is not a number.
#[derive(Debug, thiserror::Error)]
#[error("pool parameter `{name}` in the database URL is not a number")]
pub(crate) struct BadParameter {
    name: &'static str,
    #[source]
    cause: ParseIntError,
}

impl PoolUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, BadParameter> {
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

/// Pools for one URL are shared within an enter; another URL is another pool.
pub(crate) fn share_key(url: &str) -> u64 {
    let mut h = DefaultHasher::new();
    url.hash(&mut h);
    h.finish()
}

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
