//! Temporary database servers: Postgres (`initdb` + `postgres`) and MariaDB
//! (`mariadb-install-db` + `mariadbd`), each on a free loopback port with its own directory,
//! stopped and removed on drop.
//!
//! Both refuse to run as root, so when this process is root each runs as its package's system
//! user (`postgres`, `mysql`), through `setpriv`, in a directory that user owns.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{TempDir, free_port};

/// How long a new server gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server gets to shut down on drop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a temporary database server did not start.
pub enum DatabaseError {
    /// Its programs are not installed; the text names the package.
    NotInstalled(&'static str),
    /// A program could not be run, or the directory not made.
    Io(io::Error),
    /// Setting up the data directory failed: the program and what it printed.
    Setup(String, String),
    /// It did not accept connections in time, or it exited; what it logged.
    NotListening(u16, String),
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled(package) => {
                write!(f, "{package} is not installed: install it, e.g. `apt-get install -y {package}`")
            }
            Self::Io(e) => write!(f, "cannot start the database server: {e}"),
            Self::Setup(program, output) => write!(f, "{program} failed:\n{output}"),
            Self::NotListening(port, log) => {
                write!(f, "the database server did not listen on 127.0.0.1:{port}:\n{log}")
            }
        }
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for DatabaseError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// `program` run as `user` when this process is root (and as itself otherwise).
fn command_as(user: &str, program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", user, "--regid", user, "--init-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A directory for `user`'s server, owned by it when this process is root.
fn server_dir(prefix: &str, user: &str) -> Result<TempDir, DatabaseError> {
    let dir = TempDir::new(prefix)?;
    if is_root() {
        let status = Command::new("chown").arg(format!("{user}:{user}")).arg(&dir.0).status()?;
        if !status.success() {
            return Err(DatabaseError::Setup("chown".into(), format!("{status}")));
        }
    }
    Ok(dir)
}

/// Runs a setup program to its end.
fn setup(mut command: Command, name: &str) -> Result<(), DatabaseError> {
    let out = command.stdin(Stdio::null()).output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DatabaseError::Setup(name.into(), "not found".into()),
        _ => e.into(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        Err(DatabaseError::Setup(name.into(), text))
    }
}

/// A running server process with its directory.
#[derive(Debug)]
struct Server {
    child: Child,
    dir: TempDir,
    log: PathBuf,
}

impl Server {
    fn spawn(mut command: Command, dir: TempDir, port: u16) -> Result<Self, DatabaseError> {
        let log = dir.0.join("server.log");
        let file = std::fs::File::create(&log)?;
        let child = command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?;
        let mut server = Self { child, dir, log };
        server.wait_listening(port)?;
        Ok(server)
    }

    /// Starts the server's program again (after it stopped), logging to the same file.
    fn respawn(&mut self, mut command: Command, port: u16) -> Result<(), DatabaseError> {
        let file = std::fs::OpenOptions::new().append(true).open(&self.log)?;
        self.child = command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?;
        self.wait_listening(port)
    }

    /// Waits until the server accepts connections on `port`.
    fn wait_listening(&mut self, port: u16) -> Result<(), DatabaseError> {
        let server = self;
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if server.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                return Err(DatabaseError::NotListening(port, log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A fast shutdown (Postgres: SIGINT; MariaDB: SIGTERM), then a kill if it lingers.
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).stderr(Stdio::null()).status();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// A temporary Postgres: `initdb` then `postgres` on a free 127.0.0.1 port, trusting local
/// connections, stopped (and its directory removed) on drop.
///
/// ```no_run
/// let pg = dual_mode_test_support::PostgresServer::temporary()?;
/// assert!(pg.url.starts_with("postgres://postgres@127.0.0.1:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// Its port.
    pub port: u16,
    server: Server,
    /// The directory of its programs, and its data directory.
    bin: PathBuf,
    data: PathBuf,
}

/// `postgres` on `data`, listening on 127.0.0.1:`port`, its socket in `dir`.
fn postgres_command(bin: &Path, data: &Path, dir: &Path, port: u16) -> Command {
    let mut postgres = command_as("postgres", &bin.join("postgres"));
    postgres.arg("-D").arg(data).arg("-k").arg(dir).args([
        "-p",
        &port.to_string(),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "max_connections=200",
    ]);
    postgres
}

impl PostgresServer {
    /// For tests: a temporary server.
    ///
    /// # Panics
    /// When it does not start; the message says what to install.
    #[must_use]
    pub fn start() -> Self {
        Self::temporary().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Makes a cluster with `initdb` and starts `postgres` on it.
    ///
    /// # Errors
    /// [`DatabaseError::NotInstalled`] when Postgres is not installed; the others when it does
    /// not start.
    pub fn temporary() -> Result<Self, DatabaseError> {
        let bin = postgres_bin().ok_or(DatabaseError::NotInstalled("postgresql"))?;
        let dir = server_dir("postgres", "postgres")?;
        let data = dir.0.join("data");
        let mut initdb = command_as("postgres", &bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        setup(initdb, "initdb")?;
        let port = free_port()?;
        let server = Server::spawn(postgres_command(&bin, &data, &dir.0, port), dir, port)?;
        let pg = Self { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), port, server, bin, data };
        pg.wait_ready()?;
        Ok(pg)
    }

    /// Stops the server as `pg_ctl stop -m immediate` does (SIGQUIT: no checkpoint, crash
    /// recovery on the next start) and starts it again on the same port and data; returns once
    /// it accepts connections.
    ///
    /// # Errors
    /// When it does not start again.
    pub fn restart_immediate(&mut self) -> Result<(), DatabaseError> {
        let _ =
            Command::new("kill").arg("-QUIT").arg(self.server.child.id().to_string()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.server.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        let command = postgres_command(&self.bin, &self.data, &self.server.dir.0, self.port);
        self.server.respawn(command, self.port)?;
        self.wait_ready()
    }

    /// Waits until the server accepts sessions (listening is not ready: until recovery ends, a
    /// connection is refused with "the database system is starting up").
    fn wait_ready(&self) -> Result<(), DatabaseError> {
        let (bin, port, server) = (&self.bin, self.port, &self.server);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let answer = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .output()?;
            if answer.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                let said =
                    String::from_utf8_lossy(&answer.stdout).into_owned() + &String::from_utf8_lossy(&answer.stderr);
                return Err(DatabaseError::NotListening(port, format!("{log}pg_isready: {said}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.server.log).unwrap_or_default()
    }
}

/// The directory of `initdb`, `postgres` and `pg_isready`: on the `PATH`, or the newest
/// `/usr/lib/postgresql/<version>/bin` (where Debian's package keeps them).
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
        // A symlink's directory may not hold the rest (`pg_isready`).
        .and_then(|d| Some(std::fs::canonicalize(d.join("initdb")).ok()?.parent()?.to_owned()));
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A temporary MariaDB: `mariadb-install-db` then `mariadbd` on a free 127.0.0.1 port, without
/// grant tables (any user, no password), stopped (and its directory removed) on drop.
///
/// ```no_run
/// let db = dual_mode_test_support::MariaDbServer::temporary()?;
/// assert!(db.url.starts_with("mysql://root@127.0.0.1:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MariaDbServer {
    /// `mysql://root@127.0.0.1:PORT/mysql`.
    pub url: String,
    /// Its port.
    pub port: u16,
    server: Server,
}

impl MariaDbServer {
    /// For tests: a temporary server.
    ///
    /// # Panics
    /// When it does not start; the message says what to install.
    #[must_use]
    pub fn start() -> Self {
        Self::temporary().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Makes a data directory with `mariadb-install-db` and starts `mariadbd` on it.
    ///
    /// # Errors
    /// [`DatabaseError::NotInstalled`] when MariaDB is not installed; the others when it does
    /// not start.
    pub fn temporary() -> Result<Self, DatabaseError> {
        let server_bin = ["/usr/sbin/mariadbd", "/usr/bin/mariadbd", "/usr/sbin/mysqld"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(DatabaseError::NotInstalled("mariadb-server"))?;
        let install = ["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(DatabaseError::NotInstalled("mariadb-server"))?;
        let dir = server_dir("mariadb", "mysql")?;
        let data = dir.0.join("data");
        let mut init = command_as("mysql", &install);
        init.arg("--no-defaults").arg(format!("--datadir={}", data.display())).args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]);
        setup(init, "mariadb-install-db")?;
        let port = free_port()?;
        let mut mariadbd = command_as("mysql", &server_bin);
        mariadbd
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.0.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.0.join("mysqld.pid").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-flush-log-at-trx-commit=0",
                "--max-connections=200",
            ]);
        let server = Server::spawn(mariadbd, dir, port)?;
        Ok(Self { url: format!("mysql://root@127.0.0.1:{port}/mysql"), port, server })
    }

    /// The server's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.server.log).unwrap_or_default()
    }
}
