//! Where a queue's Redis is, and the connection that reaches it: one server, a Redis Cluster or
//! a primary that Sentinel manages, behind one [`ConnectionLike`] so that the store's commands
//! and scripts do not depend on which.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{
    Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

/// Where a queue's Redis is: one server, a Redis Cluster, or a primary that Sentinel manages.
///
/// Every key of one queue shares a hash tag, so a queue lives on one cluster slot and each of
/// its scripts runs on one node. A `redis::Client` converts into [`RedisTarget::Server`], so
/// `Queue::connect(client, config)` keeps working.
///
/// ```no_run
/// use dual_mode::jobs::{Queue, QueueConfig, RedisTarget};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// // One server, with or without TLS (`rediss://`).
/// let single = Queue::connect(redis::Client::open("rediss://redis.internal:6380/")?, QueueConfig::new("mail")).await?;
/// // A Redis Cluster, from some of its nodes.
/// let cluster = RedisTarget::cluster(["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"])?;
/// let clustered = Queue::connect(cluster, QueueConfig::new("mail")).await?;
/// // The primary Sentinel knows as `jobs`.
/// let sentinel = RedisTarget::sentinel(["redis://10.0.0.1:26379/", "redis://10.0.0.2:26379/"], "jobs")?;
/// let managed = Queue::connect(sentinel, QueueConfig::new("mail")).await?;
/// # let _ = (single, clustered, managed);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
#[expect(clippy::large_enum_variant, reason = "built once per queue; a box would only burden building one")]
pub enum RedisTarget {
    /// One server.
    Server(redis::Client),
    /// A Redis Cluster.
    Cluster {
        /// Routes commands to the node that serves their keys' slot.
        client: ClusterClient,
        /// Nodes to subscribe on, tried in order: Pub/Sub messages reach every node of a
        /// cluster, so any node serves a subscription.
        subscribe: Vec<redis::Client>,
    },
    /// The primary that Sentinel names, asked again after a failover.
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(client) => f.debug_tuple("Server").field(client.get_connection_info().addr()).finish(),
            Self::Cluster { subscribe, .. } => f
                .debug_struct("Cluster")
                .field("subscribe", &subscribe.iter().map(|c| c.get_connection_info().addr()).collect::<Vec<_>>())
                .finish_non_exhaustive(),
            Self::Sentinel(_) => f.write_str("Sentinel"),
        }
    }
}

impl RedisTarget {
    /// A Redis Cluster reached through `nodes` (some of its nodes, `redis://` or `rediss://`
    /// URLs); the cluster's other nodes are discovered from them.
    ///
    /// For settings a URL cannot carry (custom TLS roots, timeouts), build the
    /// [`ClusterClient`] with its builder and give [`RedisTarget::Cluster`] both.
    ///
    /// # Errors
    /// A node is not a valid Redis URL.
    pub fn cluster<T: IntoConnectionInfo>(nodes: impl IntoIterator<Item = T>) -> Result<Self, RedisError> {
        let nodes = nodes.into_iter().map(IntoConnectionInfo::into_connection_info).collect::<Result<Vec<_>, _>>()?;
        let subscribe = nodes.iter().cloned().map(redis::Client::open).collect::<Result<_, _>>()?;
        Ok(Self::Cluster { client: ClusterClient::new(nodes)?, subscribe })
    }

    /// The primary that the sentinels at `sentinels` know as `primary`.
    ///
    /// For a password or TLS towards the primary, build the [`SentinelClient`] with
    /// `SentinelClientBuilder` and convert it.
    ///
    /// # Errors
    /// A sentinel address is not a valid Redis URL, or the list is empty.
    pub fn sentinel<T: IntoConnectionInfo>(
        sentinels: impl IntoIterator<Item = T>,
        primary: &str,
    ) -> Result<Self, RedisError> {
        // A `String`: `build` takes one without redis's TLS feature, any `AsRef<str>` with it.
        let client = SentinelClient::build(
            sentinels.into_iter().collect(),
            String::from(primary),
            None,
            redis::sentinel::SentinelServerType::Master,
        )?;
        Ok(client.into())
    }
}

impl From<redis::Client> for RedisTarget {
    fn from(client: redis::Client) -> Self {
        Self::Server(client)
    }
}

impl From<SentinelClient> for RedisTarget {
    fn from(client: SentinelClient) -> Self {
        Self::Sentinel(Arc::new(tokio::sync::Mutex::new(client)))
    }
}

/// Whether an error says Redis cannot be reached now (down, restarting, failing over), as
/// opposed to a command that Redis refused.
pub(crate) fn is_unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::ReadOnly
                )
        )
}

/// Whether Redis is reachable, shared by every connection of a queue, so that an outage is
/// logged once when it begins and once when it ends, however many commands fail meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Set while an outage lasts: the common case, a success while up, reads only this.
    down: AtomicBool,
    since: Mutex<Option<Instant>>,
    /// When the last outage ended: a command sent before it that fails afterwards (its
    /// connection died in that outage) does not begin another.
    recovered: Mutex<Option<Instant>>,
    /// Observes nothing: for a connection whose failures only echo those of the queue's main
    /// connection (the reader's blocking waits, whose first wait after an outage fails once
    /// more while it reconnects).
    quiet: bool,
}

impl Health {
    /// A health that logs nothing.
    pub(crate) fn quiet() -> Arc<Self> {
        Arc::new(Self { quiet: true, ..Self::default() })
    }

    /// Reports the result of a command sent at `sent`.
    fn observe<T>(&self, sent: Instant, result: &RedisResult<T>) {
        let unreachable = match result {
            _ if self.quiet => return,
            Ok(_) if !self.down.load(Ordering::Relaxed) => return,
            Ok(_) => false,
            Err(e) if is_unreachable(e) => true,
            Err(_) => return,
        };
        let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
        let mut recovered = self.recovered.lock().unwrap_or_else(PoisonError::into_inner);
        match (unreachable, *since) {
            (true, None) if recovered.is_some_and(|at| sent < at) => {}
            (true, None) => {
                *since = Some(Instant::now());
                self.down.store(true, Ordering::Relaxed);
                if let Err(e) = result {
                    tracing::warn!(error = %e, "redis unreachable; commands fail until it is back, reconnecting with back-off");
                }
            }
            (false, Some(began)) => {
                *since = None;
                *recovered = Some(Instant::now());
                self.down.store(false, Ordering::Relaxed);
                tracing::info!(outage_ms = began.elapsed().as_millis(), "redis reachable again");
            }
            _ => {}
        }
    }
}

/// A connection to a [`RedisTarget`] that reconnects by itself, cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    link: Link,
    health: Arc<Health>,
    /// The longest a command may take, reconnection attempts included.
    limit: Duration,
}

#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Sentinel),
}

impl Connection {
    /// Connects to `target`; commands fail after `timeout` without an answer.
    pub(crate) async fn open(target: &RedisTarget, timeout: Duration, health: Arc<Health>) -> RedisResult<Self> {
        let link = match target {
            RedisTarget::Server(client) => Link::Server(manager(client.clone(), timeout).await?),
            RedisTarget::Cluster { client, .. } => {
                let config = ClusterConfig::new().set_response_timeout(timeout).set_connection_timeout(timeout);
                Link::Cluster(client.get_async_connection_with_config(config).await?)
            }
            RedisTarget::Sentinel(client) => {
                let sentinel = Sentinel { client: client.clone(), timeout, current: Arc::default() };
                sentinel.resolve().await?;
                Link::Sentinel(sentinel)
            }
        };
        Ok(Self { link, health, limit: timeout })
    }

    /// A Pub/Sub connection of its own (for a cluster, on the first node that answers).
    pub(crate) async fn pubsub(target: &RedisTarget) -> RedisResult<PubSub> {
        match target {
            RedisTarget::Server(client) => client.get_async_pubsub().await,
            RedisTarget::Cluster { subscribe, .. } => {
                let mut last = RedisError::from((ErrorKind::InvalidClientConfig, "no node to subscribe on"));
                for client in subscribe {
                    match client.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            RedisTarget::Sentinel(client) => client.lock().await.async_get_client().await?.get_async_pubsub().await,
        }
    }
}

impl Connection {
    /// Reports a command's result to the queue's health; for Sentinel, an unreachable primary
    /// (or one that answers as a replica) makes the next command ask the sentinels again.
    fn after<T>(&self, sent: Instant, result: &RedisResult<T>) {
        self.health.observe(sent, result);
        if let (Link::Sentinel(sentinel), Err(e)) = (&self.link, result)
            && is_unreachable(e)
        {
            sentinel.forget();
        }
    }
}

/// `command`'s result, or a timeout error once `limit` has passed: a command never waits
/// longer, whatever reconnection attempts it waits behind.
async fn bounded<T>(limit: Duration, command: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(limit, command).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within the response timeout").into())
    })
}

async fn manager(client: redis::Client, timeout: Duration) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, config).await
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let sent = async {
                match &mut self.link {
                    Link::Server(con) => con.req_packed_command(cmd).await,
                    Link::Cluster(con) => con.req_packed_command(cmd).await,
                    Link::Sentinel(sentinel) => sentinel.resolve().await?.req_packed_command(cmd).await,
                }
            };
            let at = Instant::now();
            let result = bounded(self.limit, sent).await;
            self.after(at, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let sent = async {
                match &mut self.link {
                    Link::Server(con) => con.req_packed_commands(pipeline, offset, count).await,
                    Link::Cluster(con) => con.req_packed_commands(pipeline, offset, count).await,
                    Link::Sentinel(sentinel) => {
                        sentinel.resolve().await?.req_packed_commands(pipeline, offset, count).await
                    }
                }
            };
            let at = Instant::now();
            let result = bounded(self.limit, sent).await;
            self.after(at, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Server(con) => con.get_db(),
            Link::Cluster(con) => con.get_db(),
            Link::Sentinel(_) => 0,
        }
    }
}

/// The primary Sentinel names, through a connection manager that is replaced when the primary
/// stops answering or answers as a replica (after a failover).
#[derive(Clone)]
struct Sentinel {
    client: Arc<tokio::sync::Mutex<SentinelClient>>,
    timeout: Duration,
    current: Arc<Mutex<Option<ConnectionManager>>>,
}

impl Sentinel {
    /// The current primary's connection, asking the sentinels for the primary when there is
    /// none.
    async fn resolve(&self) -> RedisResult<ConnectionManager> {
        if let Some(con) = self.current() {
            return Ok(con);
        }
        let mut client = self.client.lock().await;
        // Another command may have resolved it while this one waited for the lock.
        if let Some(con) = self.current() {
            return Ok(con);
        }
        let primary = client.async_get_client().await?;
        let con = manager(primary, self.timeout).await?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(con.clone());
        Ok(con)
    }

    fn current(&self) -> Option<ConnectionManager> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Forgets the current primary: the next command asks the sentinels again.
    fn forget(&self) {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}
