//! A counting HTTP/1.1 server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A minimal HTTP/1.1 keep-alive server on 127.0.0.1: it answers every request with `ok` and
/// counts the connections it accepted and those open right now, as the server sees them.
#[derive(Debug)]
pub struct CountingHttp {
    /// Where it listens.
    pub addr: SocketAddr,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: AtomicU64,
    accepted: AtomicU64,
}

impl CountingHttp {
    /// Starts it on the current tokio runtime.
    ///
    /// # Panics
    /// No loopback port can be bound, or there is no current runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let counts = Arc::new(Counts::default());
        tokio::spawn(accept(listener, Arc::clone(&counts)));
        Self { addr, counts }
    }

    /// Starts it on a thread of its own with its own single-threaded runtime, so its work does
    /// not compete with the caller's runtime (benchmarks).
    ///
    /// # Panics
    /// No loopback port can be bound.
    #[must_use]
    pub fn start_on_thread() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let counts = Arc::new(Counts::default());
        let thread_counts = Arc::clone(&counts);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                accept(listener, thread_counts).await;
            });
        });
        Self { addr, counts }
    }

    /// `http://127.0.0.1:PORT/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Connections open right now.
    #[must_use]
    pub fn open(&self) -> u64 {
        self.counts.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.counts.accepted.load(Ordering::SeqCst)
    }
}

async fn accept(listener: TcpListener, counts: Arc<Counts>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else { continue };
        counts.open.fetch_add(1, Ordering::SeqCst);
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            serve(sock).await;
            counts.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Answers each request head on `sock` with `ok` until the peer closes; bodies are not read.
async fn serve(mut sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                break;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
        if sock.write_all(reply).await.is_err() {
            return;
        }
    }
}
