//! Built-in resources, each behind a default-on feature.

#[cfg(feature = "reqwest")]
pub(crate) mod http;
#[cfg(feature = "reqwest-0-12")]
mod http_0_12;
#[cfg(feature = "redis")]
mod redis;
