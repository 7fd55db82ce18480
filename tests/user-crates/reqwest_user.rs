//! A user's program that builds reqwest clients the ways applications do: its own client for
//! app state, a custom `open = path` opener, and the built-in resource. `tests/user_crates.rs`
//! builds and runs it twice, against reqwest with its default features and with
//! `default-features = false`: dual-mode in the dependency tree must leave every one of these
//! clients working, whatever TLS features Cargo unifies.

use std::time::Duration;

use dual_mode::{BoxError, DualMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(DualMode)]
struct Fetcher {
    url: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
    #[dual_mode(shared, key = "custom", open = open_custom)]
    custom: reqwest::Client,
}

/// A custom opener, as a user writes one: reqwest's own builder, no dual-mode helper.
async fn open_custom(_spec: &FetcherSpec) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build()
}

impl Fetcher {
    async fn fetch_both(&self) -> Result<String, reqwest::Error> {
        let a = self.http.get(&self.url).send().await?.text().await?;
        let b = self.custom.get(&self.url).send().await?.text().await?;
        Ok(format!("{a}+{b}"))
    }
}

/// An HTTP/1.1 server on a free loopback port that answers `ok` to every request.
async fn serve() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if socket.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(format!("http://{addr}/"))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = serve().await?;

    // App-state setup: the user's own clients, built before dual-mode runs any code.
    let own = reqwest::Client::builder().build()?;
    let default = reqwest::Client::new();
    assert_eq!(own.get(&url).send().await?.text().await?, "ok");
    assert_eq!(default.get(&url).send().await?.text().await?, "ok");

    // API mode: the user's client injected; job mode: both opened by the guard.
    let spec = FetcherSpec { url };
    let injected = FetcherParts { http: Some(own), ..spec.clone().into() }.enter().await?;
    assert_eq!(injected.opened(), 1, "only the custom client is opened");
    assert_eq!(injected.fetch_both().await?, "ok+ok");
    injected.exit().await?;

    let text = spec.run(async |f: &Fetcher| f.fetch_both().await.map_err(BoxError::from)).await?;
    assert_eq!(text, "ok+ok");
    println!("user crate: every client works");
    Ok(())
}
