//! Built-in resources, each behind a default-on feature.

#[cfg(feature = "reqwest")]
pub(crate) mod http;
#[cfg(feature = "redis")]
mod redis;
