//! `Probe`: a resource whose close is explicit and shared by clones, like a pool, and which
//! logs every open and close so tests can assert order and exactly-once closing.
#![allow(dead_code, reason = "each test binary uses part of the probe")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dual_mode::Resource;
use serde::{Deserialize, Serialize};

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The log lines (`open NAME`, `close NAME`) whose name starts with `prefix`.
pub fn log(prefix: &str) -> Vec<String> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|l| l.split_once(' ').is_some_and(|(_, name)| name.starts_with(prefix)))
        .cloned()
        .collect()
}

fn record(line: String) {
    LOG.lock().unwrap().push(line);
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeConfig {
    pub name: String,
    pub fail_open: bool,
    pub fail_close: bool,
    pub panic_close: bool,
    pub close_delay_ms: u64,
}

impl ProbeConfig {
    pub fn named(name: &str) -> Self {
        Self { name: name.into(), ..Self::default() }
    }
}

/// A pool-like handle: clones share one `closed` flag; only `close` sets it.
#[derive(Clone, Debug)]
pub struct Probe {
    pub name: String,
    closed: Arc<AtomicBool>,
    closes: Arc<AtomicUsize>,
    fail_close: bool,
    panic_close: bool,
    close_delay: Duration,
}

impl Probe {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            closed: Arc::default(),
            closes: Arc::default(),
            fail_close: false,
            panic_close: false,
            close_delay: Duration::ZERO,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }

    /// What a client does: fails once the pool is closed.
    pub fn use_it(&self) -> Result<(), String> {
        if self.is_closed() { Err(format!("{} is closed", self.name)) } else { Ok(()) }
    }
}

impl Resource for Probe {
    type Config = ProbeConfig;
    type Error = std::io::Error;

    async fn open(config: &ProbeConfig) -> Result<Self, std::io::Error> {
        if config.fail_open {
            record(format!("fail {}", config.name));
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, format!("{} refused", config.name)));
        }
        record(format!("open {}", config.name));
        let mut probe = Probe::new(&config.name);
        probe.fail_close = config.fail_close;
        probe.panic_close = config.panic_close;
        probe.close_delay = Duration::from_millis(config.close_delay_ms);
        Ok(probe)
    }

    async fn close(self) -> Result<(), std::io::Error> {
        if !self.close_delay.is_zero() {
            tokio::time::sleep(self.close_delay).await;
        }
        self.closed.store(true, Ordering::SeqCst);
        self.closes.fetch_add(1, Ordering::SeqCst);
        record(format!("close {}", self.name));
        assert!(!self.panic_close, "{} close panicked", self.name);
        if self.fail_close {
            return Err(std::io::Error::other(format!("{} close failed", self.name)));
        }
        Ok(())
    }
}
