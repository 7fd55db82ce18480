//! A temporary Sentinel deployment: a primary, a replica and three sentinels.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_cluster::Node;
use crate::redis_server::{LaunchError, TempDir, free_port, wait_listening};

/// The name the sentinels know the primary by.
pub const PRIMARY_NAME: &str = "jobs";

/// A primary, its replica and three sentinels monitoring them (quorum 2, the primary deemed down
/// after a second), on free 127.0.0.1 ports; every process killed and its directory removed on
/// drop.
///
/// A failover takes about three seconds. When the sentinels split their votes (each deems the
/// primary down at the same moment and votes for itself), the election is abandoned and retried
/// twice the failover timeout after it began: that timeout is 4 s here, so a split costs about
/// 8 s more (20 s with a 10 s timeout).
#[derive(Debug)]
pub struct RedisSentinels {
    servers: Vec<Node>,
    sentinels: Vec<Node>,
    _dir: TempDir,
}

impl RedisSentinels {
    /// Starts them and waits until the replica has synchronized and every sentinel knows it.
    /// Writes reach the replica only a moment later: see [`RedisSentinels::wait_replicated`].
    ///
    /// # Panics
    /// When they do not start; the message says why.
    #[must_use]
    pub fn start() -> Self {
        Self::temporary().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts them and waits until the replica has synchronized and every sentinel knows it.
    ///
    /// # Errors
    /// A process did not start, or the sentinels did not find the replica in time.
    pub fn temporary() -> Result<Self, LaunchError> {
        let dir = TempDir::new("redis-sentinel")?;
        let plain: Vec<String> = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        let primary = Node::start(&dir, "primary", &plain)?;
        let mut replica_args = plain.clone();
        replica_args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned(), primary.port.to_string()]);
        let replica = Node::start(&dir, "replica", &replica_args)?;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port()?;
            let home = dir.0.join(format!("sentinel{i}"));
            std::fs::create_dir_all(&home)?;
            let conf = home.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {PRIMARY_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {PRIMARY_NAME} 1000\n\
                     sentinel failover-timeout {PRIMARY_NAME} 4000\n",
                    home.display(),
                    primary.port
                ),
            )?;
            sentinels.push(Node::started(port, launch_sentinel(port, &conf)?));
        }
        let deployment = Self { servers: vec![primary, replica], sentinels, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(deployment.sentinels.iter().all(knows_replica) && deployment.servers.iter().all(Node::synced)) {
            if Instant::now() > deadline {
                return Err(LaunchError::Io(std::io::Error::other("the sentinels did not find the replica")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(deployment)
    }

    /// The sentinels' URLs.
    #[must_use]
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::url).collect()
    }

    /// The port of the server the sentinels name as primary now.
    ///
    /// # Panics
    /// When no sentinel answers.
    #[must_use]
    pub fn primary_port(&self) -> u16 {
        let mut con = self.sentinels.iter().find_map(|s| s.connection().ok()).expect("a sentinel");
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(PRIMARY_NAME)
            .query(&mut con)
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        port
    }

    /// Waits until the replica has every write the primary took before this call, so that a
    /// failover after it loses none of them.
    ///
    /// Replication is asynchronous, and more so just after a replica's first synchronization:
    /// its link is up, but the primary holds the writes back until the replica's first
    /// acknowledgement, which comes up to a second later. A primary killed in that second takes
    /// every write since the start with it, and the promoted replica is empty.
    ///
    /// # Panics
    /// When no sentinel answers, or the replica does not catch up within 10 seconds.
    pub fn wait_replicated(&self) {
        let primary = self.primary_port();
        let taken = self
            .servers
            .iter()
            .find(|n| n.port == primary)
            .and_then(|n| replication_offset(n, "master_repl_offset"))
            .expect("the primary's replication offset");
        let deadline = Instant::now() + Duration::from_secs(10);
        for replica in self.servers.iter().filter(|n| n.port != primary) {
            loop {
                let has = replication_offset(replica, "slave_repl_offset");
                if has.is_some_and(|has| has >= taken) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the replica on port {} has offset {has:?} of the primary's {taken} after 10 s",
                    replica.port
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the current primary with `SIGKILL`; the sentinels promote the replica.
    pub fn kill_primary(&mut self) {
        let port = self.primary_port();
        if let Some(node) = self.servers.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
    }

    /// Asks a sentinel to fail over now (`SENTINEL FAILOVER`), without waiting for the primary
    /// to be deemed down.
    ///
    /// # Panics
    /// When no sentinel accepts.
    pub fn failover(&self) {
        let mut con = self.sentinels.iter().find_map(|s| s.connection().ok()).expect("a sentinel");
        let _: () =
            redis::cmd("SENTINEL").arg("FAILOVER").arg(PRIMARY_NAME).query(&mut con).expect("SENTINEL FAILOVER");
    }
}

/// Starts a sentinel: `redis-server <conf> --sentinel` (the configuration file must come
/// first, and the sentinel rewrites it).
fn launch_sentinel(port: u16, conf: &Path) -> Result<Child, LaunchError> {
    let mut child = Command::new("redis-server")
        .arg(conf)
        .arg("--sentinel")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { LaunchError::NotInstalled } else { e.into() })?;
    wait_listening(port, &mut child)?;
    Ok(child)
}

/// Whether a sentinel lists a replica of the primary.
fn knows_replica(sentinel: &Node) -> bool {
    sentinel.connection().is_ok_and(|mut c| {
        redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(PRIMARY_NAME)
            .query::<Vec<redis::Value>>(&mut c)
            .is_ok_and(|r| !r.is_empty())
    })
}

/// A replication offset `node` reports in `INFO replication` (`master_repl_offset` on a
/// primary: how far its writes go; `slave_repl_offset` on a replica: how far it has applied).
fn replication_offset(node: &Node, field: &str) -> Option<u64> {
    let info: String = redis::cmd("INFO").arg("replication").query(&mut node.connection().ok()?).ok()?;
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
}
