//! The job routes, with the queue in process, and the stand-in: `GET /jobs/{id}` answers the job
//! layer's record, `DELETE /jobs/{id}` cancels (a queued job never runs, a running one stops),
//! a region has one pending aggregation at a time and one running across workers, and
//! `wait_for` gives the summary back.

use std::time::{Duration, Instant};

use dual_mode::jobs::{JobOutcome, JobState, PushOptions};

use esi_contracts::aggregate::{ContractAggregationService, aggregation_spec, stored_summary};
use esi_contracts::jobs;
use esi_contracts::settings::Settings;
use esi_contracts::standin::{self, RECORDED_AT, RateLimit, StandInOptions};
use serde_json::Value;

mod support;

use support::{Api, Backing, Running, get_json, http, stale_standin, start_api};

const DOMAIN: i32 = 10_000_043;
const FORGE: i32 = 10_000_002;

/// `POST /regions/{region}/aggregate`: `202`, and its body.
async fn post_aggregate(http: &reqwest::Client, base: &str, region: i32) -> Value {
    let resp = http.post(format!("{base}/regions/{region}/aggregate")).send().await.expect("request");
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status, 202, "{body}");
    body
}

/// `DELETE /jobs/{id}`: its status and body.
async fn delete_job(http: &reqwest::Client, api: &Api, id: &str) -> (u16, Value) {
    let resp = http.delete(format!("{}/jobs/{id}", api.base)).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap())
}

/// `GET /jobs/{id}`, which must answer `200`, as a [`jobs::JobView`].
async fn job_view(http: &reqwest::Client, api: &Api, id: &str) -> jobs::JobView {
    let (status, body) = get_json(http, &format!("{}/jobs/{id}", api.base)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("a job view")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobs_record_shows_it_queued_then_done_with_its_summary() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();

    let posted = post_aggregate(&http, &api.base, DOMAIN).await;
    assert_eq!(posted["duplicate"], false, "{posted}");
    let id = posted["job_id"].as_str().unwrap().to_owned();
    assert_eq!(posted["status"], format!("/jobs/{id}"));

    // No worker yet: queued, never started.
    let queued = job_view(&http, &api, &id).await;
    assert_eq!((queued.state, queued.attempt, queued.max_attempts), (JobState::Queued, 1, 5), "{queued:?}");
    assert_eq!(queued.unique_key.as_deref(), Some("aggregate:10000043"));
    assert!(queued.type_name.contains("ContractAggregationService"), "{queued:?}");
    assert!(queued.started_at.is_none() && queued.worker.is_none() && queued.result.is_none(), "{queued:?}");
    assert_eq!(esi_server.stats().requests, 0);

    // A worker runs it; waiting for it gives the summary back.
    let worker = Running::start(&api, &backing, jobs::worker_config(2)).await;
    let outcome =
        api.state.queue.wait_for::<ContractAggregationService>(&id, Duration::from_secs(30)).await.expect("ended");
    let JobOutcome::Done(summary) = outcome else { panic!("not done: {outcome:?}") };
    let stored = stored_summary(&api.state.db, DOMAIN).await.unwrap().expect("stored");
    assert_eq!(summary, stored, "the result is the summary the job stored");
    assert_eq!(summary.summary.region_id, DOMAIN);

    let done = job_view(&http, &api, &id).await;
    assert_eq!((done.state, done.attempt), (JobState::Done, 1), "{done:?}");
    assert!(done.worker.as_deref().is_some_and(|w| !w.is_empty()), "{done:?}");
    assert!(done.error.is_none() && done.park_reason.is_none(), "{done:?}");
    let (started, finished) = (done.started_at.expect("started"), done.finished_at.expect("finished"));
    assert!(done.enqueued_at <= started && started <= finished, "{done:?}");
    assert_eq!(done.result, Some(serde_json::to_value(&summary).unwrap()), "GET /jobs/{{id}} has the result");

    let report = worker.stop().await;
    assert_eq!(report.counts.succeeded, 1, "{report:?}");
    let _ = api.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_queued_job_removes_it_and_it_never_runs() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();

    let first = post_aggregate(&http, &api.base, DOMAIN).await["job_id"].as_str().unwrap().to_owned();
    let (status, body) = delete_job(&http, &api, &first).await;
    assert_eq!((status, &body["cancel"], &body["state"]), (200, &"removed".into(), &"cancelled".into()), "{body}");
    assert_eq!(job_view(&http, &api, &first).await.state, JobState::Cancelled);
    let (status, again) = delete_job(&http, &api, &first).await;
    assert_eq!((status, &again["cancel"], &again["state"]), (200, &"already_ended".into(), &"cancelled".into()));
    let waited = api.state.queue.wait_for::<ContractAggregationService>(&first, Duration::from_secs(5)).await;
    assert_eq!(waited.expect("ended"), JobOutcome::Cancelled);

    // The region's unique key went with it: the next POST is a new job, and only that one runs.
    let second = post_aggregate(&http, &api.base, DOMAIN).await;
    assert_eq!(second["duplicate"], false, "{second}");
    let second = second["job_id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let worker = Running::start(&api, &backing, jobs::worker_config(2)).await;
    let outcome = api.state.queue.wait_for::<ContractAggregationService>(&second, Duration::from_secs(30)).await;
    assert!(matches!(outcome, Ok(JobOutcome::Done(_))), "{outcome:?}");
    let report = worker.stop().await;
    assert_eq!((report.counts.received, report.counts.succeeded), (1, 1), "{report:?}");
    assert_eq!(esi_server.page_ok_count(DOMAIN, 1), 1, "one walk of the region: the second job's");
    let cancelled = job_view(&http, &api, &first).await;
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.started_at.is_none() && cancelled.worker.is_none(), "never ran: {cancelled:?}");
    let _ = api.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unknown_job_is_a_404() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();
    for id in ["0123456789abcdef0123456789abcdef", "01890a5d-ac96-774b-bcce-b302099a8057"] {
        let (status, body) = delete_job(&http, &api, id).await;
        assert_eq!(status, 404, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(id)), "{body}");
    }
    let _ = api.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posts_for_a_region_whose_job_is_pending_are_that_job() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();

    // Eight at once, no worker running: one job, seven duplicates naming it.
    let posts: Vec<_> = (0..8)
        .map(|_| {
            let (http, base) = (http.clone(), api.base.clone());
            tokio::spawn(async move { post_aggregate(&http, &base, FORGE).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for post in posts {
        bodies.push(post.await.unwrap());
    }
    let id = bodies[0]["job_id"].as_str().unwrap().to_owned();
    assert!(bodies.iter().all(|b| b["job_id"] == id.as_str()), "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| b["duplicate"] == false).count(), 1, "{bodies:?}");
    let other = post_aggregate(&http, &api.base, DOMAIN).await;
    assert_ne!(other["job_id"], id.as_str(), "another region is another job");
    let (queued, total) = api.state.queue.jobs(JobState::Queued, 0, 10).await.unwrap();
    assert_eq!((queued.len(), total), (2, 2), "{queued:?}");
    assert_eq!(api.state.queue.stats().await.unwrap().length, 2);

    // Once it ended, the region's next POST is a new job.
    let worker = Running::start(&api, &backing, jobs::worker_config(2)).await;
    let outcome = api.state.queue.wait_for::<ContractAggregationService>(&id, Duration::from_secs(30)).await;
    assert!(matches!(outcome, Ok(JobOutcome::Done(_))), "{outcome:?}");
    let next = post_aggregate(&http, &api.base, FORGE).await;
    assert_eq!(next["duplicate"], false, "{next}");
    assert_ne!(next["job_id"], id.as_str());
    worker.stop().await;
    let _ = api.stop.send(true);
}

/// A job pacing its walk to ESI's rate limit stops when cancelled: it ends `cancelled` long
/// before its pages could be read, and before its worker would abort it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_job_stops_its_walk_when_cancelled() {
    let backing = Backing::in_process().await;
    // 5 tokens refilling one per 12 s: the walk of The Forge's 3 pages paces itself for
    // about 24 s inside the job.
    let limit = RateLimit { group: "contracts".into(), tokens: 5, window: Duration::from_secs(60), headers: true };
    let opts = StandInOptions { last_modified: Some(RECORDED_AT), rate_limit: Some(limit), ..Default::default() };
    let esi_server = standin::start(opts).await.unwrap();
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();
    // Renewals every second tell a cancelled job quickly; the grace is longer than the test
    // waits, so a job that ends cancelled stopped by itself.
    let config = jobs::worker_config(2).lease(Duration::from_secs(3)).cancel_grace(Duration::from_secs(120));
    let worker = Running::start(&api, &backing, config).await;

    let id = post_aggregate(&http, &api.base, FORGE).await["job_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The record says `running` once the run has lasted a moment (the job layer's MARK_AFTER).
    while esi_server.page_ok_count(FORGE, 1) == 0 || job_view(&http, &api, &id).await.state != JobState::Running {
        let state = job_view(&http, &api, &id).await;
        assert!(Instant::now() < deadline, "not walking: {:?} {state:?}", esi_server.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = delete_job(&http, &api, &id).await;
    assert_eq!((status, &body["cancel"]), (200, &"requested".into()), "{body}");

    let outcome = api.state.queue.wait_for::<ContractAggregationService>(&id, Duration::from_secs(15)).await;
    assert_eq!(outcome.expect("ended"), JobOutcome::Cancelled);
    let record = job_view(&http, &api, &id).await;
    assert!(record.state == JobState::Cancelled && record.cancel_requested, "{record:?}");
    assert_eq!(esi_server.page_ok_count(FORGE, 3), 0, "the walk stopped");
    assert!(stored_summary(&api.state.db, FORGE).await.unwrap().is_none(), "no summary stored");
    let report = worker.stop().await;
    assert_eq!((report.counts.cancelled, report.counts.succeeded), (1, 0), "{report:?}");
    let _ = api.stop.send(true);
}

/// Two aggregations of one region pushed with its rate key, without a unique key, and two
/// workers of one slot each: the second starts only after the first ended, and waiting for
/// the region's slot costs it no attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_aggregation_of_a_region_runs_at_a_time_across_workers() {
    let backing = Backing::in_process().await;
    // 10 tokens refilling 5 a second: every page is followed by a 400 ms pause, so one walk of
    // The Forge's 3 pages lasts about a second, long enough for two at once to overlap.
    let limit = RateLimit { group: "contracts".into(), tokens: 10, window: Duration::from_secs(2), headers: true };
    let opts = StandInOptions {
        last_modified: Some(RECORDED_AT),
        expires_after: Duration::ZERO,
        rate_limit: Some(limit),
        ..Default::default()
    };
    let esi_server = standin::start(opts).await.unwrap();
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();

    let spec = aggregation_spec(FORGE, &api.state.settings);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let pushed = api.state.queue.push_spec(&spec, PushOptions::new().rate_key(jobs::rate_key(FORGE))).await;
        ids.push(pushed.expect("pushed").job_id);
    }
    let workers = [
        Running::start(&api, &backing, jobs::worker_config(1)).await,
        Running::start(&api, &backing, jobs::worker_config(1)).await,
    ];
    for id in &ids {
        let outcome = api.state.queue.wait_for::<ContractAggregationService>(id, Duration::from_secs(30)).await;
        assert!(matches!(outcome, Ok(JobOutcome::Done(_))), "{outcome:?}");
    }

    let mut views = Vec::new();
    for id in &ids {
        views.push(job_view(&http, &api, id).await);
    }
    views.sort_by_key(|v| v.started_at);
    let [first, second] = &views[..] else { unreachable!() };
    assert!((first.attempt, second.attempt) == (1, 1), "waiting for the region is no attempt: {views:?}");
    let (first_end, second_start) = (first.finished_at.expect("finished"), second.started_at.expect("started"));
    assert!(second_start >= first_end, "the walks overlapped: {views:?}");
    assert_eq!(esi_server.page_ok_count(FORGE, 1), 1, "{:?}", esi_server.stats());
    assert_eq!(esi_server.stats().rate_limited, 0, "{:?}", esi_server.stats());
    let mut succeeded = 0;
    for worker in workers {
        succeeded += worker.stop().await.counts.succeeded;
    }
    assert_eq!(succeeded, 2);
    let _ = api.stop.send(true);
}

/// A schedule's tick takes its region's unique key: while the region's job from a POST is
/// pending, the tick adds nothing; the schedule reads its cron in a time zone, and an unknown
/// zone is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_tick_adds_nothing_while_its_regions_job_is_pending() {
    let backing = Backing::in_process().await;
    let esi_server = stale_standin().await;
    let mut settings = Settings::for_esi(esi_server.base_url());
    settings.regions = vec![FORGE];
    let api = start_api(&backing, settings.clone()).await;
    let posted = post_aggregate(&http(), &api.base, FORGE).await;

    let queue = api.state.queue.clone();
    let scheduler = jobs::scheduler(queue.clone(), &settings, "0 3 * * *", Some("Europe/Berlin")).expect("scheduler");
    let schedule = &scheduler.schedules()[0];
    assert_eq!(schedule.cron().zone(), "Europe/Berlin");
    let tick = schedule.cron().next_after_secs(0).expect("a next tick");
    assert_eq!(scheduler.enqueue_tick(schedule, tick).await.expect("tick"), None, "the region's job is pending");
    let (queued, total) = queue.jobs(JobState::Queued, 0, 10).await.unwrap();
    assert_eq!(total, 1, "{queued:?}");
    assert_eq!(queued[0].id, posted["job_id"].as_str().unwrap());
    assert_eq!(queued[0].lane, dual_mode::jobs::Lane::High, "a job asked for through the API");

    let e = jobs::scheduler(queue, &settings, "0 3 * * *", Some("Mars/Olympus_Mons")).expect_err("refused");
    assert!(e.to_string().contains("Mars/Olympus_Mons"), "{e}");
    let _ = api.stop.send(true);
}
