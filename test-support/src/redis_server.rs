//! A temporary `redis-server`.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
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
    /// Its URL, `redis://127.0.0.1:PORT/` for a temporary server (`rediss://` with TLS).
    pub url: String,
    port: Option<u16>,
    child: Option<Child>,
    /// The arguments it was started with, to start it again.
    args: Vec<String>,
    /// The PEM certificate of the authority that signed a TLS server's certificate.
    tls_ca: Option<Vec<u8>>,
    dir: Option<TempDir>,
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
            Ok(url) if !url.is_empty() => {
                Ok(Self { url, port: None, child: None, args: Vec::new(), tls_ca: None, dir: None })
            }
            _ => Self::temporary(),
        }
    }

    /// Starts `redis-server` (no persistence) on a free 127.0.0.1 port and waits until it
    /// accepts connections. Blocks the calling thread for that wait, usually a few ms.
    ///
    /// # Errors
    /// [`LaunchError::NotInstalled`] when there is no `redis-server`, or it did not start.
    pub fn temporary() -> Result<Self, LaunchError> {
        Self::with_args(&["--save", "", "--appendonly", "no"])
    }

    /// Starts a temporary `redis-server` that writes every command to its append-only file
    /// before answering (`appendonly yes`, `appendfsync always`), so that it loses nothing when
    /// killed and [restarted](RedisServer::restart).
    ///
    /// # Errors
    /// As [`RedisServer::temporary`].
    pub fn persistent() -> Result<Self, LaunchError> {
        Self::with_args(&["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Starts a temporary `redis-server` that speaks TLS only, with a certificate for
    /// 127.0.0.1 signed by an authority made for it (with the `openssl` command); its URL is
    /// `rediss://` and [`RedisServer::client`] trusts that authority.
    ///
    /// # Errors
    /// As [`RedisServer::temporary`]; `openssl` missing or failing is an `Io` error.
    pub fn tls() -> Result<Self, LaunchError> {
        let port = free_port()?;
        let dir = TempDir::new("redis-tls")?;
        let ca = crate::tls::make_certificates(&dir.0)?;
        let file = |name: &str| dir.0.join(name).to_string_lossy().into_owned();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &file("server.crt"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.crt"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let child = launch(port, &dir.0, &args)?;
        Ok(Self {
            url: format!("rediss://127.0.0.1:{port}/"),
            port: Some(port),
            child: Some(child),
            args,
            tls_ca: Some(ca),
            dir: Some(dir),
        })
    }

    fn with_args(extra: &[&str]) -> Result<Self, LaunchError> {
        let port = free_port()?;
        let dir = TempDir::new("redis")?;
        let mut args = vec!["--port".to_owned(), port.to_string()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let child = launch(port, &dir.0, &args)?;
        Ok(Self {
            url: format!("redis://127.0.0.1:{port}/"),
            port: Some(port),
            child: Some(child),
            args,
            tls_ca: None,
            dir: Some(dir),
        })
    }

    /// Kills a temporary server with `SIGKILL`, as a crash would, and reaps it; `false` for
    /// `REDIS_URL`'s server.
    pub fn kill(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).stderr(Stdio::null()).status();
        let killed = child.kill().is_ok();
        let _ = child.wait();
        killed
    }

    /// Starts a killed temporary server again, on its port, directory and settings (a
    /// persistent one reloads its append-only file), and waits until it accepts connections.
    ///
    /// # Errors
    /// There is no killed temporary server to restart, or it did not start.
    pub fn restart(&mut self) -> Result<(), LaunchError> {
        let (Some(port), Some(dir), None) = (self.port, &self.dir, &self.child) else {
            return Err(LaunchError::Io(io::Error::other("no killed temporary server to restart")));
        };
        self.child = Some(launch(port, &dir.0, &self.args)?);
        Ok(())
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
        let client = match &self.tls_ca {
            Some(ca) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
            ),
            None => redis::Client::open(self.url.as_str()),
        };
        client.unwrap_or_else(|e| panic!("{:?} is not a Redis URL: {e}", self.url))
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

/// Starts `redis-server` on 127.0.0.1 in `dir` with `args` (which name `port`) and waits until
/// `port` accepts connections.
pub(crate) fn launch(port: u16, dir: &Path, args: &[String]) -> Result<Child, LaunchError> {
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| if e.kind() == io::ErrorKind::NotFound { LaunchError::NotInstalled } else { e.into() })?;
    wait_listening(port, &mut child)?;
    Ok(child)
}

/// Waits until `port` accepts connections, or `child` exits, or [`START_TIMEOUT`] passes (it
/// is killed then).
pub(crate) fn wait_listening(port: u16, child: &mut Child) -> Result<(), LaunchError> {
    let deadline = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exit = child.try_wait().ok().flatten();
        if exit.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LaunchError::NotListening { port, exit });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
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
