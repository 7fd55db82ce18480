//! A temporary Redis Cluster: three primaries, each with a replica.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{LaunchError, TempDir, free_port, launch};

/// A `redis-server` process of a test deployment, killed on drop.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Node {
    pub(crate) fn start(dir: &TempDir, name: &str, args: &[String]) -> Result<Self, LaunchError> {
        let port = free_port()?;
        let dir = dir.0.join(name);
        std::fs::create_dir_all(&dir)?;
        let mut all = vec!["--port".to_owned(), port.to_string()];
        all.extend_from_slice(args);
        Ok(Self { port, child: Some(launch(port, &dir, &all)?) })
    }

    pub(crate) fn started(port: u16, child: Child) -> Self {
        Self { port, child: Some(child) }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(1))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three primaries and three replicas on free 127.0.0.1 ports (created with
/// `redis-cli --cluster create`), every process killed and its directory removed on drop.
///
/// Nodes time out after a second, so that a replica takes over a killed primary within a few
/// seconds.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

/// How long the cluster gets to agree after its creation or a failover.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

impl RedisCluster {
    /// Starts the cluster and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    /// When it does not start; the message says why.
    #[must_use]
    pub fn start() -> Self {
        Self::temporary().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the cluster and waits until every node reports `cluster_state:ok`.
    ///
    /// # Errors
    /// A node did not start, `redis-cli --cluster create` failed, or the cluster did not settle.
    pub fn temporary() -> Result<Self, LaunchError> {
        let dir = TempDir::new("redis-cluster")?;
        let args: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        let nodes = (0..6).map(|i| Node::start(&dir, &format!("node{i}"), &args)).collect::<Result<Vec<_>, _>>()?;
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(LaunchError::Io(std::io::Error::other(format!(
                "redis-cli --cluster create failed ({status})"
            ))));
        }
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// The URLs of the nodes still running.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(Node::url).collect()
    }

    /// Waits until every running node reports `cluster_state:ok` and has a primary for every
    /// slot that it agrees is running.
    ///
    /// # Errors
    /// It did not within 30 s.
    pub fn wait_ok(&self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                n.connection()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LaunchError::Io(std::io::Error::other("the cluster did not reach cluster_state:ok")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the running node that serves `key` as a primary.
    ///
    /// # Panics
    /// When no running node answers, or none serves the key's slot.
    #[must_use]
    pub fn primary_of(&self, key: &str) -> usize {
        let mut con = self.nodes.iter().find(|n| n.child.is_some()).and_then(|n| n.connection().ok()).expect("a node");
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut con).expect("CLUSTER KEYSLOT");
        self.nodes
            .iter()
            .position(|n| n.child.is_some() && n.connection().is_ok_and(|mut c| serves(&mut c, slot)))
            .expect("a primary serves the slot")
    }

    /// Kills node `i` with `SIGKILL`, as a crash would.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// The port of node `i`.
    #[must_use]
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }
}

/// Whether the node behind `con` is a primary that serves `slot` (its own line of `CLUSTER
/// NODES`, flagged `myself,master`, lists the slot).
fn serves(con: &mut redis::Connection, slot: u16) -> bool {
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(con).unwrap_or_default();
    nodes.lines().filter(|l| l.contains("myself,master")).any(|l| {
        l.split_ascii_whitespace().skip(8).any(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        })
    })
}
