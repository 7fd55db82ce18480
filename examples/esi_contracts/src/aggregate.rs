//! [`ContractAggregationService`]: one region's summary, computed from every page of its
//! public contracts, added to the region's history in the example's database with the time it
//! was computed.
//!
//! The summary is computed **as of the data's own time**: the newest `Last-Modified` of the
//! pages read (see [`RegionContracts::as_of`]). Real ESI's `Last-Modified` is at most about
//! 30 minutes old, so this is "now" for live data; for recorded pages (the stand-in serves the
//! fixtures with the recording time as `Last-Modified`) it is the recording time, so "expiring
//! within 24 h" means the same thing whenever the example runs. The wall-clock time of the
//! computation is stored next to it, as [`StoredSummary::aggregated_at`].

use std::time::Duration;

use dual_mode::jobs::{CancelReason, Job, JobError, JobInfo};
use dual_mode::{DualMode, Secret};
use serde::{Deserialize, Serialize};

use crate::esi::{EsiClient, EsiClientSpec, EsiError, FetchCounts, RegionContracts};
use crate::model::{RegionSummary, summarize};
use crate::settings::{DatabaseUrl, Settings};
use crate::store;
use crate::timestamp::Timestamp;

/// Aggregates one region. Its spec is the job payload: the region and the ESI client's spec
/// (the settings), nothing else.
#[derive(DualMode)]
pub struct ContractAggregationService {
    /// The region to aggregate.
    pub region_id: i32,
    /// The ESI client; entering this service enters it with the same clients, so one job
    /// opens one temporary database pool, not two.
    #[dual_mode(nested)]
    pub esi: EsiClient,
    /// Where summaries are stored.
    #[dual_mode(secret, env = "DATABASE_URL")]
    pub database_url: Secret<DatabaseUrl>,
    /// The summaries' history (the page cache's database: one pool for both).
    #[dual_mode(shared, config = database_url)]
    pub db: sqlx::AnyPool,
}

/// The spec of an aggregation of `region_id` with `settings`.
#[must_use]
pub fn aggregation_spec(region_id: i32, settings: &Settings) -> ContractAggregationServiceSpec {
    ContractAggregationServiceSpec { region_id, esi: EsiClientSpec { settings: settings.clone() } }
}

/// A summary as stored in its region's history (the table `region_summaries`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSummary {
    /// The summary, as of the data's time (`summary.computed_at`).
    pub summary: RegionSummary,
    /// When it was computed (wall clock).
    pub aggregated_at: Timestamp,
    /// How the pages were obtained.
    pub fetch: FetchCounts,
}

/// Why an aggregation failed.
///
/// `Display` says what failed at this level; the cause is in
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// ESI failed.
    #[error(transparent)]
    Esi(#[from] EsiError),
    /// The summary store failed.
    #[error("summary store failed")]
    Store(#[source] sqlx::Error),
    /// A stored summary does not decode.
    #[error("stored summary does not decode")]
    Corrupt(#[source] serde_json::Error),
    /// Entering or exiting the service's clients failed (`spec.run` outside a worker).
    #[error(transparent)]
    Clients(#[from] dual_mode::Error),
    /// The job was asked to stop (cancelled, or its worker shutting down) during the walk.
    #[error("stopped: {0:?}")]
    Stopped(CancelReason),
}

/// The newest summary of `region_id`, if any.
///
/// # Errors
/// The database fails, or the stored value does not decode.
pub async fn stored_summary(db: &sqlx::AnyPool, region_id: i32) -> Result<Option<StoredSummary>, AggregateError> {
    Ok(history(db, region_id, 1).await?.pop())
}

/// The newest `limit` summaries of `region_id`, newest first.
///
/// # Errors
/// The database fails, or a stored value does not decode.
pub async fn history(db: &sqlx::AnyPool, region_id: i32, limit: u32) -> Result<Vec<StoredSummary>, AggregateError> {
    let rows = store::summaries(db, region_id, limit).await.map_err(AggregateError::Store)?;
    rows.iter().map(|raw| serde_json::from_str(raw).map_err(AggregateError::Corrupt)).collect()
}

impl ContractAggregationService {
    /// Fetches every page of the region, summarizes it as of the data's time, adds the
    /// summary to the region's history and returns it.
    ///
    /// # Errors
    /// ESI or the store failed.
    pub async fn aggregate(&self) -> Result<StoredSummary, AggregateError> {
        let contracts = self.esi.public_contracts(self.region_id).await?;
        self.store(contracts).await
    }

    /// Summarizes the region's contracts as of the data's time and stores the summary.
    async fn store(&self, region: RegionContracts) -> Result<StoredSummary, AggregateError> {
        let RegionContracts { contracts, skipped, as_of, fetch } = region;
        let stored = StoredSummary {
            summary: RegionSummary { skipped, ..summarize(self.region_id, &contracts, as_of) },
            aggregated_at: Timestamp::now(),
            fetch,
        };
        let json = serde_json::to_string(&stored).map_err(AggregateError::Corrupt)?;
        store::record_summary(&self.db, &stored, &json).await.map_err(AggregateError::Store)?;
        Ok(stored)
    }
}

/// Job mode: a worker runs the aggregation; the summary is the job's result, stored with its
/// record by the job layer (`Queue::wait_for` and `GET /jobs/{id}` give it back).
///
/// At-least-once delivery is harmless here: a second run of the same job overwrites the
/// summary with an equal or newer one.
impl Job for ContractAggregationService {
    type Output = StoredSummary;

    /// An attempt that takes longer is dropped and retried: the walk waits out pauses of up
    /// to 70 s in a job, a few times at most, so 10 minutes means something is stuck.
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10 * 60));

    async fn run(&self, job: &JobInfo) -> Result<StoredSummary, JobError> {
        // A cancelled job (or one whose worker shuts down) stops walking at once; returning
        // exits the service, so the clients it opened close. Storing is one command and
        // is not interrupted.
        let walked = tokio::select! {
            walked = self.esi.public_contracts(self.region_id) => walked,
            reason = job.cancelled() => return Err(JobError::failed(AggregateError::Stopped(reason))),
        };
        match walked.map_err(AggregateError::from) {
            Ok(contracts) => self.store(contracts).await.map_err(JobError::failed),
            Err(e) => {
                let (permanent, retry_after) = match &e {
                    AggregateError::Esi(esi) => (esi.is_permanent(), esi.retry_after()),
                    _ => (false, None),
                };
                // A job told to wait keeps its attempt: it is delayed whatever its number.
                Err(match retry_after {
                    _ if permanent => JobError::permanent(e),
                    Some(after) => JobError::retry_after(after, e),
                    None => JobError::failed(e),
                })
            }
        }
    }
}
