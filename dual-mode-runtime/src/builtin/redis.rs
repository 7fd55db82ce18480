//! Redis connections as [`Resource`]s. Their config is a connection URL, which may carry a
//! password: name a `Secret` field in `config = ...` so that it never reaches a queue.

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use crate::Resource;

impl Resource for MultiplexedConnection {
    type Config = str;
    type Error = redis::RedisError;

    async fn open(url: &str) -> Result<Self, redis::RedisError> {
        redis::Client::open(url)?.get_multiplexed_async_connection().await
    }
}

impl Resource for ConnectionManager {
    type Config = str;
    type Error = redis::RedisError;

    /// Connects once, failing fast when the server is not there (a temporary connection is
    /// not worth a reconnect loop); later drops are reconnected by the manager.
    async fn open(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        ConnectionManager::new_with_config(client, ConnectionManagerConfig::new().set_number_of_retries(0)).await
    }
}
