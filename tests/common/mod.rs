//! Real servers for the integration tests: a `redis-server` on a free loopback port (or the one
//! `REDIS_URL` names) and an HTTP server on 127.0.0.1 that counts its open connections.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A `redis-server` started for one test binary, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub url: String,
    _dir: Option<TempDir>,
}

impl RedisServer {
    /// Uses `REDIS_URL` when set, otherwise starts `redis-server` on a free loopback port.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Self { child: None, url, _dir: None };
        }
        let port = free_port();
        let dir = TempDir::new("redis");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child: Some(child), url: format!("redis://127.0.0.1:{port}/"), _dir: Some(dir) }
    }

    /// Stops (`STOP`) or resumes (`CONT`) the server process, as a stalled Redis would; a
    /// test that set `REDIS_URL` has no process to signal and gets `false`.
    pub fn signal(&self, sig: &str) -> bool {
        let Some(child) = &self.child else { return false };
        Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().is_ok_and(|s| s.success())
    }

    /// A client for assertions made from outside the code under test.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).expect("valid redis url")
    }

    /// Every connection the server sees, the one asking included.
    pub async fn client_count(&self) -> usize {
        let mut con = self.client().get_multiplexed_async_connection().await.expect("connect");
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut con).await.expect("CLIENT LIST");
        list.lines().count()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "dual-mode-{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A minimal HTTP/1.1 keep-alive server on 127.0.0.1 that answers every request with `ok` and
/// counts the connections open right now, as the server sees them.
pub struct CountingHttp {
    pub addr: SocketAddr,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl CountingHttp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (o, a) = (open.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                o.fetch_add(1, Ordering::SeqCst);
                a.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(1024);
                    let mut chunk = [0u8; 1024];
                    'conn: loop {
                        // Read one request head; bodies are not used by the tests.
                        loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                buf.drain(..end + 4);
                                break;
                            }
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => break 'conn,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
                        if sock.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, open, accepted }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Polls `f` until it returns `want` or the deadline passes; returns the last value seen.
pub async fn eventually<T: PartialEq + Copy, F: AsyncFnMut() -> T>(want: T, mut f: F) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = f().await;
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
