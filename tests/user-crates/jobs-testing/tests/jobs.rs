//! The newsletter's jobs, tested with `dual_mode::jobs::testing` only.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use dual_mode::Context;
use dual_mode::jobs::testing::{TestQueue, run_job};
use dual_mode::jobs::{Clients, JobError, JobState, Worker};
use user_jobs_testing::{OPEN, Outbox, Subscriber, Welcome, WelcomeSpec, sign_up};

/// A warm outbox, as a worker's context holds one (the other tests open no temporary one, so
/// that the first can count).
fn warm() -> Clients {
    Clients::Context(Arc::new(Context::new().with(Outbox::default())))
}

fn spec(email: &str, language: &str) -> WelcomeSpec {
    WelcomeSpec { subscriber: Subscriber { email: email.into(), name: "Ada".into() }, language: language.into() }
}

#[tokio::test]
async fn one_job_runs_with_a_temporary_outbox_that_is_closed_after() {
    let text = run_job::<Welcome>(&spec("ada@example.de", "de"), Clients::Temporary).await.unwrap();
    assert_eq!(text, "Willkommen, Ada!");
    assert_eq!(OPEN.load(Ordering::SeqCst), 0, "the outbox the job opened is closed");
}

#[tokio::test]
async fn a_bad_address_is_a_permanent_error() {
    let err = run_job::<Welcome>(&spec("nobody", "en"), warm()).await.unwrap_err();
    assert!(matches!(err, JobError::Permanent(_)), "{err:?}");
}

#[tokio::test]
async fn a_sign_up_enqueues_one_welcome_and_a_drain_sends_it() {
    let tq = TestQueue::manual("welcome");
    sign_up(tq.queue(), "grace@example.com", "Grace").await.unwrap();
    let enqueued = tq.enqueued_specs::<Welcome>().await;
    assert_eq!(enqueued.len(), 1);
    assert_eq!(enqueued[0].language, "en");
    tq.assert_enqueued::<WelcomeSpec>("WelcomeSpec", |s| s.subscriber.email == "grace@example.com").await;
    tq.refute_enqueued::<WelcomeSpec>("WelcomeSpec", |s| s.language == "de").await;

    let ran = tq.drain(|queue, config| Worker::new(queue, config).service::<Welcome>(warm())).await;
    assert_eq!((ran.succeeded, ran.parked), (1, 0));
    assert!(tq.enqueued_specs::<Welcome>().await.is_empty(), "nothing left after the drain");
}

#[tokio::test]
async fn an_inline_queue_runs_each_push_before_it_returns() {
    let tq = TestQueue::inline("welcome", |queue, config| {
        Worker::new(queue, config).service::<Welcome>(warm())
    });
    let pushed = sign_up(tq.queue(), "edsger@example.com", "Edsger").await.unwrap();
    let record = tq.queue().job(&pushed.job_id).await.unwrap().expect("a record");
    assert_eq!(record.state, JobState::Done);
}

/// A spec whose field is written but never read back: what a real push would lose.
#[derive(dual_mode::DualMode)]
struct Digest {
    #[serde(skip_serializing)]
    since: String,
}

impl dual_mode::jobs::Job for Digest {
    type Output = ();

    async fn run(&self, _job: &dual_mode::jobs::JobInfo) -> Result<(), JobError> {
        let _ = &self.since;
        Ok(())
    }
}

#[tokio::test]
#[should_panic(expected = "since")]
async fn a_spec_that_does_not_round_trip_fails_the_test_naming_the_field() {
    let _ = run_job::<Digest>(&DigestSpec { since: "2026-12-01".into() }, warm()).await;
}

#[tokio::test]
async fn a_queue_that_keeps_no_done_jobs_still_hands_the_result_to_its_waiter() {
    use std::time::Duration;

    use dual_mode::jobs::{JobOutcome, Keep, QueueConfig, WaitError};

    let tq = TestQueue::manual_with(QueueConfig::new("welcome").keep_done(Keep::none()));
    let waited = sign_up(tq.queue(), "barbara@example.com", "Barbara").await.unwrap();
    let forgotten = sign_up(tq.queue(), "alan@example.com", "Alan").await.unwrap();
    // A wait that begins before the job ends keeps its record.
    let early = tq.queue().wait_for::<Welcome>(&waited.job_id, Duration::from_millis(10)).await;
    assert!(matches!(early, Err(WaitError::Timeout { .. })), "{early:?}");
    let ran = tq.drain(|queue, config| Worker::new(queue, config).service::<Welcome>(warm())).await;
    assert_eq!(ran.succeeded, 2);
    let outcome = tq.queue().wait_for::<Welcome>(&waited.job_id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(outcome, JobOutcome::Done("Welcome, Barbara!".to_owned()));
    assert!(tq.queue().job(&forgotten.job_id).await.unwrap().is_none());
    let late = tq.queue().wait_for::<Welcome>(&forgotten.job_id, Duration::from_secs(1)).await;
    assert!(matches!(late, Err(WaitError::NotKept { .. })), "{late:?}");
}
