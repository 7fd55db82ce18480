//! Waiting in tests for a condition that other tasks or processes bring about.

use std::time::Duration;

use tokio::time::Instant;

/// Asks `done` every 20 ms until it answers `true`.
///
/// # Panics
/// When `within` passes first: the message names `what` was waited for.
pub async fn wait_until(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
