//! A temporary `redis-server`.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a new `redis-server` gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis for one test binary, benchmark or example run: a `redis-server` this process started
/// on a free loopback port (killed, and its directory removed, on drop), or the one `REDIS_URL`
/// names (left alone).
///
/// ```no_run
/// let redis = dual_mode_test_support::RedisServer::temporary()?;
/// let client = redis::Client::open(redis.url.as_str())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    /// Its URL, `redis://127.0.0.1:PORT/` for a temporary server.
    pub url: String,
    port: Option<u16>,
    child: Option<Child>,
    _dir: Option<TempDir>,
}

/// Why a temporary `redis-server` did not start. Its `Debug` is its message, so that a `main`
/// returning `Result<(), Box<dyn Error>>` prints how to install `redis-server`.
pub enum LaunchError {
    /// There is no `redis-server` on the `PATH`.
    NotInstalled,
    /// It could not be started, or its directory not created.
    Io(io::Error),
    /// It did not accept connections in time, or it exited.
    NotListening {
        /// The port it was told to listen on.
        port: u16,
        /// Its exit status, when it exited.
        exit: Option<ExitStatus>,
    },
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled => f.write_str(
                "redis-server is not installed (not on the PATH): install it, e.g. \
                 `apt-get install -y redis-server`, or set REDIS_URL to a running Redis",
            ),
            Self::Io(e) => write!(f, "cannot start redis-server: {e}"),
            Self::NotListening { port, exit: Some(status) } => {
                write!(f, "redis-server exited ({status}) before listening on 127.0.0.1:{port}")
            }
            Self::NotListening { port, exit: None } => {
                write!(f, "redis-server did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}")
            }
        }
    }
}

impl fmt::Debug for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for LaunchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LaunchError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl RedisServer {
    /// For tests: the Redis of `REDIS_URL` when set, otherwise a temporary one.
    ///
    /// # Panics
    /// When a temporary server does not start; the message says how to install `redis-server`.
    #[must_use]
    pub fn start() -> Self {
        Self::from_env_or_temporary().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The Redis of `REDIS_URL` when set (and not empty), otherwise a temporary one.
    ///
    /// # Errors
    /// As [`RedisServer::temporary`].
    pub fn from_env_or_temporary() -> Result<Self, LaunchError> {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Ok(Self { url, port: None, child: None, _dir: None }),
            _ => Self::temporary(),
        }
    }

    /// Starts `redis-server` (no persistence) on a free 127.0.0.1 port and waits until it
    /// accepts connections. Blocks the calling thread for that wait, usually a few ms.
    ///
    /// # Errors
    /// [`LaunchError::NotInstalled`] when there is no `redis-server`, or it did not start.
    pub fn temporary() -> Result<Self, LaunchError> {
        let port = free_port()?;
        let dir = TempDir::new("redis")?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| if e.kind() == io::ErrorKind::NotFound { LaunchError::NotInstalled } else { e.into() })?;
        let mut server =
            Self { url: format!("redis://127.0.0.1:{port}/"), port: Some(port), child: Some(child), _dir: Some(dir) };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exit = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exit.is_some() || Instant::now() > deadline {
                return Err(LaunchError::NotListening { port, exit });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// The port of a temporary server; `None` for `REDIS_URL`'s.
    #[must_use]
    pub const fn port(&self) -> Option<u16> {
        self.port
    }

    /// Stops (`STOP`) or resumes (`CONT`) a temporary server's process, as a stalled Redis
    /// would; `REDIS_URL`'s server has no process here to signal: `false`.
    #[must_use]
    pub fn signal(&self, sig: &str) -> bool {
        let Some(child) = &self.child else { return false };
        Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().is_ok_and(|s| s.success())
    }

    /// A client, for assertions made from outside the code under test.
    ///
    /// # Panics
    /// When `REDIS_URL` is not a Redis URL.
    #[must_use]
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).unwrap_or_else(|e| panic!("{:?} is not a Redis URL: {e}", self.url))
    }

    /// Every connection the server sees (`CLIENT LIST`), the one asking included.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn client_count(&self) -> usize {
        let mut con = self.client().get_multiplexed_async_connection().await.expect("connect to redis");
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut con).await.expect("CLIENT LIST");
        list.lines().count()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // A stopped server is resumed first, so that it can be killed and reaped.
            let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `dual-mode-{prefix}-{pid}-{n}`.
    ///
    /// # Errors
    /// It cannot be created.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("dual-mode-{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
///
/// # Errors
/// No port can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
