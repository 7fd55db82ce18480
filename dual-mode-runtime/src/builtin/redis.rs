//! Redis connections as [`Resource`]s. Their config is a connection URL (for a cluster, the
//! URLs of some of its nodes), which may carry a password: name a `Secret` field in
//! `config = ...` so that it never reaches a queue.

use std::hash::{DefaultHasher, Hash, Hasher};

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

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

/// A connection to a Redis Cluster, routing each command to the node that serves its keys.
/// Its config is the URLs of some of the cluster's nodes, separated by commas
/// (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`); the other nodes are discovered from them.
///
/// ```
/// use dual_mode::{DualMode, Secret};
/// use redis::cluster_async::ClusterConnection;
///
/// #[derive(DualMode)]
/// struct Counter {
///     #[dual_mode(shared, config = cluster_nodes)]
///     redis: ClusterConnection,
///     #[dual_mode(secret, env = "REDIS_CLUSTER_NODES")]
///     cluster_nodes: Secret<String>,
/// }
/// ```
impl Resource for ClusterConnection {
    type Config = str;
    type Error = redis::RedisError;

    async fn open(nodes: &str) -> Result<Self, redis::RedisError> {
        ClusterClient::new(nodes.split(',').map(str::trim).filter(|n| !n.is_empty()))?.get_async_connection().await
    }

    fn share_key(nodes: &str) -> u64 {
        share_key(nodes)
    }
}
