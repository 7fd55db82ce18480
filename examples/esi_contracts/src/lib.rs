//! The dual-mode example: public contracts of EVE Online regions from ESI, summarized per
//! region, with the same two services run behind an axum API (shared clients) and as queued
//! jobs on workers (a context of warm clients).
//!
//! - [`esi`]: [`EsiClient`](esi::EsiClient), every page of a region's public contracts from one
//!   cache generation, cached by `ETag`, within ESI's error and rate limits;
//! - [`aggregate`]: [`ContractAggregationService`](aggregate::ContractAggregationService), which
//!   nests the client and keeps each region's summaries over time;
//! - [`store`]: the database both hold through one shared `sqlx::AnyPool` (SQLite or
//!   Postgres);
//! - [`api`], [`jobs`]: API mode and job mode; [`app`]: the main job, both in one process;
//! - [`model`], [`timestamp`]: the contract model and the summary, pure;
//! - [`standin`]: an ESI stand-in serving recorded pages, with failure modes for tests;
//! - [`settings`]: what both modes are told, and the secrets.
//! - [`error_chain`]: an error with its causes, as the CLI, the API's error bodies and the logs
//!   print it (each error's `Display` says only what failed at its own level).
//!
//! The binary (`cargo run -p esi-contracts`) runs the main job or one role; see the README's
//! "The ESI example".

pub mod admin;
pub mod aggregate;
pub mod api;
pub mod app;
pub mod cli;
pub mod esi;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod settings;
pub mod standin;
pub mod store;
pub mod timestamp;

/// An error and its causes, `": "`-joined, as the job layer keeps them in job records: what the
/// CLI, the API's error bodies and the logs show.
pub use dual_mode::jobs::error_chain;

#[cfg(test)]
mod tests {
    use super::error_chain;
    use crate::aggregate::AggregateError;
    use crate::esi::EsiError;

    #[test]
    fn the_chain_says_each_level_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = AggregateError::Esi(EsiError::Cache { op: "read page", source: sqlx::Error::Io(io) });
        assert_eq!(e.to_string(), "ESI page cache (read page) failed");
        // sqlx's error prints its I/O cause too: it is not repeated.
        assert_eq!(
            error_chain(&e),
            "ESI page cache (read page) failed: error communicating with database: connection refused"
        );
        let e = AggregateError::Corrupt(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(e.to_string(), "stored summary does not decode");
        assert_eq!(error_chain(&e), "stored summary does not decode: expected value at line 1 column 1");
    }
}
