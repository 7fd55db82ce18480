//! Catching a panic inside a future, so that cleanup runs before it resumes.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::Poll;

/// Polls `fut` to completion, returning a panic it raised as `Err` instead of unwinding.
/// Allocates nothing and moves nothing: the future stays pinned in this one's state.
///
/// # Errors
/// The panic's payload, when `fut` panicked.
pub async fn catch_unwind<F: Future>(fut: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut fut = pin!(fut);
    poll_fn(|cx| match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
        Err(panic) => Poll::Ready(Err(panic)),
    })
    .await
}

/// The message of a panic payload, when it is a string.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}
