//! The dual-mode example: public contracts of EVE Online regions from ESI, summarized per
//! region, with the same two services run behind an axum API (shared clients) and as queued
//! jobs on workers (a context of warm clients).
//!
//! - [`esi`]: [`EsiClient`](esi::EsiClient), every page of a region's public contracts from one
//!   cache generation, cached in Redis by `ETag`, within ESI's error and rate limits;
//! - [`aggregate`]: [`ContractAggregationService`](aggregate::ContractAggregationService), which
//!   nests the client and stores a summary per region;
//! - [`api`], [`jobs`]: API mode and job mode; [`app`]: the main job, both in one process;
//! - [`model`], [`timestamp`]: the contract model and the summary, pure;
//! - [`standin`]: an ESI stand-in serving recorded pages, with failure modes for tests;
//! - [`settings`]: what both modes are told, and the two secrets.
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
pub mod timestamp;
