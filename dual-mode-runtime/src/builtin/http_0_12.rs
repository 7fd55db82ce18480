//! reqwest 0.12's `Client` as a [`Resource`] (feature `reqwest-0-12`), built on the same
//! process-wide TLS configuration as reqwest 0.13's.
//!
//! reqwest 0.12 comes without a TLS provider of its own (`rustls-tls-no-provider`): its clients
//! built here use the process-wide configuration (aws-lc-rs, the platform's verifier). A client
//! your own code builds with `reqwest::Client::builder()` of 0.12 needs a TLS feature of its
//! own in your `Cargo.toml` (reqwest 0.12's default features have one), or
//! [`HttpConfig::builder_0_12`].

use reqwest_0_12 as reqwest;

use super::http::{apply_config, tls_config};
use crate::{HttpConfig, Resource};

impl HttpConfig {
    /// A reqwest 0.12 `ClientBuilder` with this config on the process-wide TLS configuration
    /// (feature `reqwest-0-12`), the one [`builder`](Self::builder) uses for reqwest 0.13.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let config = dual_mode::HttpConfig { timeout_ms: Some(5_000), ..Default::default() };
    /// let client: dual_mode::reqwest_0_12::Client = config.builder_0_12().build().unwrap();
    /// # let _ = client;
    /// # }
    /// ```
    pub fn builder_0_12(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder();
        if let Some(tls) = tls_config() {
            b = b.use_preconfigured_tls(tls.as_ref().clone());
        }
        apply_config!(self, b)
    }
}

impl Resource for reqwest::Client {
    type Config = HttpConfig;
    type Error = reqwest::Error;

    async fn open(config: &HttpConfig) -> Result<Self, reqwest::Error> {
        config.builder_0_12().build()
    }

    /// Fields with equal HTTP configs share one client within an enter.
    fn share_key(config: &HttpConfig) -> u64 {
        <::reqwest::Client as Resource>::share_key(config)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::reqwest;
    use crate::{HttpConfig, Resource};

    /// An HTTP/1.1 server on a free loopback port that answers each request with the
    /// `User-Agent` it received.
    async fn echo_user_agent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    let request = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    let agent = request
                        .lines()
                        .find_map(|l| l.strip_prefix("user-agent: "))
                        .unwrap_or("none")
                        .trim()
                        .to_owned();
                    let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{agent}", agent.len());
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_0_12_client_opens_with_its_config_and_fetches() {
        let url = echo_user_agent().await;
        let config = HttpConfig { user_agent: Some("probe/0.12".into()), ..HttpConfig::default() };
        let client = <reqwest::Client as Resource>::open(&config).await.expect("a 0.12 client opens");
        let agent = client.get(&url).send().await.expect("sent").text().await.expect("body");
        assert_eq!(agent, "probe/0.12");
    }

    /// reqwest 0.12 is built without a provider: a client that did not take the process-wide
    /// configuration would panic for want of one ("No provider set").
    #[test]
    fn a_0_12_client_builds_on_the_process_wide_tls_configuration() {
        assert!(rustls::crypto::CryptoProvider::get_default().is_none(), "no process default provider is installed");
        assert!(super::tls_config().is_some(), "the process-wide TLS configuration builds on this machine");
        let built = std::panic::catch_unwind(|| HttpConfig::default().builder_0_12().build());
        assert!(matches!(built, Ok(Ok(_))), "a 0.12 client builds without a provider of its own");
    }

    #[test]
    fn equal_configs_share_one_client_whatever_the_version() {
        let config = HttpConfig { timeout_ms: Some(1_000), ..HttpConfig::default() };
        let other = HttpConfig { timeout_ms: Some(2_000), ..HttpConfig::default() };
        let key = <reqwest::Client as Resource>::share_key;
        assert_eq!(key(&config), <::reqwest::Client as Resource>::share_key(&config));
        assert_ne!(key(&config), key(&other));
    }
}
