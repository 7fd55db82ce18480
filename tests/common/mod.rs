//! Real servers for the integration tests (from `dual-mode-test-support`: a `redis-server` on a
//! free loopback port, or the one `REDIS_URL` names, and an HTTP server on 127.0.0.1 that counts
//! its open connections) and polling with a deadline.
#![allow(dead_code, unused_imports, reason = "each test binary uses part of the harness")]

use std::time::{Duration, Instant};

pub use dual_mode_test_support::{CountingHttp, RedisServer};

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

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    dual_mode_test_support::free_port().expect("a free loopback port")
}
