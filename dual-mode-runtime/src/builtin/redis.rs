//! Redis connections as [`Resource`]s. Their config is a connection URL, which may carry a
//! password: name a `Secret` field in `config = ...` so that it never reaches a queue.

use std::hash::{DefaultHasher, Hash, Hasher};

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use crate::Resource;

/// Connections to one URL are shared within an enter; another URL (another database) is
/// another connection.
fn share_key(url: &str) -> u64 {
    let mut h = DefaultHasher::new();
    url.hash(&mut h);
    h.finish()
}

/// A client for `url` whose connections skip the `CLIENT SETINFO` handshake: a temporary
/// connection lives for one job, and that round trip was a sixth of its opening cost.
fn client(url: &str) -> Result<redis::Client, redis::RedisError> {
    let info = url.into_connection_info()?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    redis::Client::open(info.set_redis_settings(settings))
}

impl Resource for MultiplexedConnection {
    type Config = str;
    type Error = redis::RedisError;

    async fn open(url: &str) -> Result<Self, redis::RedisError> {
        client(url)?.get_multiplexed_async_connection().await
    }

    fn share_key(url: &str) -> u64 {
        share_key(url)
    }
}

impl Resource for ConnectionManager {
    type Config = str;
    type Error = redis::RedisError;

    /// Connects once, failing fast when the server is not there (a temporary connection is
    /// not worth a reconnect loop); later drops are reconnected by the manager.
    async fn open(url: &str) -> Result<Self, redis::RedisError> {
        ConnectionManager::new_with_config(client(url)?, ConnectionManagerConfig::new().set_number_of_retries(0)).await
    }

    fn share_key(url: &str) -> u64 {
        share_key(url)
    }
}
