//! The job layer's conformance suite: what a job layer promises (records and results, waits,
//! cancellation and time limits, retries, parking and re-drive, rate limits, key concurrency
//! and unique keys, lanes and several queues, pauses, schedules, services), written once
//! against the public API and run against every backend.
//!
//! Each case is an `async fn case(store: &Store)`; `cases!` (in `harness.rs`) makes one test of
//! it per backend, `<module>::redis::<case>`, `<module>::in_process::<case>` and
//! `<module>::postgres::<case>` (each Postgres case in a schema of its own, on a throwaway
//! cluster that the running cases share). A case reads the queue only as a user can (records,
//! stats, overview, pages, parked entries, waits), never a store's own keys: what only one
//! store can be asked lives in that store's tests (`jobs_core`, `jobs_control`, `jobs_lanes`
//! and the others for Redis, `dual-mode-postgres/tests/` for Postgres). Where the backends
//! differ on purpose, `differences.rs` says how and asserts each side.

#[macro_use]
#[path = "conformance/harness.rs"]
mod harness;
#[path = "common/cron.rs"]
mod cron_support;
#[path = "common/jobs.rs"]
mod jobs_support;
#[path = "common/probe.rs"]
mod probe;

#[path = "conformance/control.rs"]
mod control;
#[path = "conformance/differences.rs"]
mod differences;
#[path = "conformance/failures.rs"]
mod failures;
#[path = "conformance/flow.rs"]
mod flow;
#[path = "conformance/lanes.rs"]
mod lanes;
#[path = "conformance/records.rs"]
mod records;
#[path = "conformance/schedules.rs"]
mod schedules;
#[path = "conformance/services.rs"]
mod services;
