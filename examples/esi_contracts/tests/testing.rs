//! The aggregation job through the job layer's testing module, as a user's own job tests would
//! run it: no queue server, no worker process, the spec through the same JSON as a push. The
//! data goes to a SQLite file, ESI is the stand-in.

use std::sync::Arc;

use dual_mode::jobs::testing::{TestQueue, run_job};
use dual_mode::jobs::{Clients, Worker};
use dual_mode::{Context, Secret};
use esi_contracts::aggregate::{ContractAggregationService, ContractAggregationServiceSpec, aggregation_spec, history};
use esi_contracts::jobs;
use esi_contracts::settings::{DatabaseUrl, EsiToken, Settings};
use serde_json::Value;

mod support;

use support::{Backing, stale_standin};

const EXPECTED: &str = include_str!("../fixtures/expected.json");
const DOMAIN: i32 = 10_000_043;

/// A context that lends the secrets only: every client is opened for the job and closed after.
fn secrets_only(backing: &Backing) -> Clients {
    let mut ctx = Context::new();
    ctx.insert_keyed("DATABASE_URL", Secret::new(DatabaseUrl::new(backing.database_url.clone())))
        .insert_keyed("ESI_TOKEN", Secret::new(EsiToken::default()));
    Clients::Context(Arc::new(ctx))
}

/// One run of the job, as a worker's first attempt: its result is the summary it added to the
/// region's history, equal to the independently computed figures; the temporary HTTP client and
/// database pool it opened are closed (`run_job` fails the test otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_aggregation_runs_as_a_worker_would_run_it() {
    let backing = Backing::in_process().await;
    let db = backing.database().await;
    let esi = stale_standin().await;
    let spec = aggregation_spec(DOMAIN, &Settings::for_esi(esi.base_url()));
    let stored = run_job::<ContractAggregationService>(&spec, secrets_only(&backing)).await.expect("the job");
    let expected: Value = serde_json::from_str(EXPECTED).unwrap();
    assert_eq!(serde_json::to_value(&stored.summary).unwrap(), expected["summaries"][1]);
    assert_eq!(history(&db, DOMAIN, 10).await.unwrap(), [stored], "the job's result is what it stored");
}

/// What the API enqueues, asserted without running it; then drained by a real worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_enqueues_one_aggregation_per_region_until_it_runs() {
    let backing = Backing::in_process().await;
    let esi = stale_standin().await;
    let settings = Settings::for_esi(esi.base_url());
    let tq = TestQueue::manual_with(jobs::queue_config());
    let first = jobs::enqueue(tq.queue(), &settings, DOMAIN, None).await.expect("push");
    let again = jobs::enqueue(tq.queue(), &settings, DOMAIN, None).await.expect("push");
    assert!(!first.duplicate && again.duplicate && again.job_id == first.job_id, "{first:?} {again:?}");
    let specs = tq.enqueued_specs::<ContractAggregationService>().await;
    assert_eq!(specs.len(), 1);
    let ContractAggregationServiceSpec { region_id, esi: client } = &specs[0];
    assert_eq!((*region_id, client.settings.esi_url.as_str()), (DOMAIN, esi.base_url()));
    // The database URL is a secret: no spec carries it.
    let url = backing.database_url.clone();
    let name = <ContractAggregationServiceSpec as dual_mode::Spec>::NAME;
    assert_eq!(tq.enqueued::<Value>(name).await.len(), 1);
    tq.refute_enqueued::<Value>(name, |spec| spec.to_string().contains(&url)).await;

    drop(backing.database().await); // the tables
    let clients = secrets_only(&backing);
    let drained =
        tq.drain(|queue, config| Worker::new(queue, config).service::<ContractAggregationService>(clients)).await;
    assert_eq!((drained.succeeded, drained.parked), (1, 0), "{drained:?}");
    assert_eq!(history(&backing.database().await, DOMAIN, 10).await.unwrap().len(), 1);
}
