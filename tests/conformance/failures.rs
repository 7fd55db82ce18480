//! What goes wrong: bad payloads, panics and errors retried with backoff, then parked with
//! their reason; the parked list's cap; re-drive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dual_mode::jobs::{JobError, JobInfo, JobState, ParkReason, PushOptions, QueueConfig, Worker, handler_fn, typed};
use serde::{Deserialize, Serialize};

use crate::harness::{Store, fast_worker, parked_count, start, stop, unique, wait_for};

cases! {
    bad_payloads_are_parked_with_their_reason_and_the_next_job_runs,
    a_panicking_job_is_retried_then_parked_and_the_worker_lives,
    handler_errors_are_retried_with_growing_delays_then_parked_with_the_last_error,
    a_parked_entry_runs_once_re_driven,
    the_parked_list_keeps_its_cap_and_counts_what_it_dropped,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Payload {
    n: u32,
    kind: Kind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum Kind {
    A,
    B,
}

async fn bad_payloads_are_parked_with_their_reason_and_the_next_job_runs(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("bad"))).await;
    let good = Arc::new(Mutex::new(Vec::new()));
    let seen = good.clone();
    let worker = Worker::new(q.clone(), fast_worker()).handle(
        "Payload",
        typed(move |p: Payload, _job: JobInfo| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(p.n);
                Ok(())
            }
        }),
    );
    let cases: Vec<(ParkReason, &str, &[u8])> = vec![
        (ParkReason::NotJson, "Payload", b"{not json"),
        (ParkReason::WrongShape, "Payload", br#"{"n":"seven","kind":"A"}"#),
        (ParkReason::UnknownVariant, "Payload", br#"{"n":1,"kind":"Zebra"}"#),
        (ParkReason::MissingField, "Payload", br#"{"kind":"A"}"#),
        (ParkReason::UnknownField, "Payload", br#"{"n":1,"kind":"A","extra":true}"#),
        (ParkReason::NotUtf8, "Payload", b"\xff\xfe\x00garbage"),
        (ParkReason::UnknownType, "NoSuchSpec", br#"{"n":1,"kind":"A"}"#),
    ];
    let mut expected = BTreeMap::new();
    for (reason, type_name, payload) in &cases {
        let pushed = q.push_raw(type_name, 1, payload.to_vec(), PushOptions::new()).await.expect("push raw");
        expected.insert(pushed.job_id, (*reason, *type_name, *payload));
    }
    q.push("Payload", 1, &Payload { n: 7, kind: Kind::B }, PushOptions::new()).await.expect("push good");

    let w = start(worker);
    wait_for(Duration::from_secs(10), "the good job", async || good.lock().expect("lock").contains(&7).then_some(()))
        .await;
    let n = cases.len() as u64;
    wait_for(Duration::from_secs(10), "all bad payloads parked", async || (parked_count(&q).await? == n).then_some(()))
        .await;
    let report = stop(w).await;

    let parked = q.parked(100).await.expect("list parked");
    assert_eq!(parked.len(), cases.len());
    for p in &parked {
        let envelope = p.envelope().expect("the envelope is kept");
        let (reason, type_name, payload) = expected[&envelope.id];
        assert_eq!(p.reason, Some(reason), "job {} parked as {} ({})", envelope.id, p.reason_code, p.detail);
        assert!(!p.detail.is_empty());
        assert_eq!((envelope.type_name.as_str(), envelope.attempt), (type_name, 1));
        assert_eq!(p.payload(), Some(payload), "the payload kept byte for byte");
        let inspected = q.parked_entry(&p.parked_id).await.expect("inspect").expect("exists");
        assert_eq!(&inspected, p);
        let record = q.job(&envelope.id).await.expect("read").expect("a record");
        assert_eq!((record.state, record.park_reason), (JobState::Parked, Some(reason)), "{record:?}");
    }
    let wrong = parked.iter().find(|p| p.reason == Some(ParkReason::WrongShape)).expect("wrong shape");
    assert!(wrong.detail.contains("Payload") && wrong.detail.contains("`n`"), "{}", wrong.detail);
    assert_eq!(report.counts.parked, n);
    assert_eq!(report.counts.succeeded, 1);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending), (0, 0));
}

async fn a_panicking_job_is_retried_then_parked_and_the_worker_lives(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("panic")).max_attempts(3)).await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let ran_good = Arc::new(AtomicBool::new(false));
    let (a, g) = (attempts.clone(), ran_good.clone());
    let worker = Worker::new(q.clone(), fast_worker())
        .handle(
            "Boom",
            handler_fn(move |job: JobInfo| {
                let a = a.clone();
                async move {
                    a.lock().expect("lock").push(job.attempt());
                    panic!("kaboom on attempt {}", job.attempt());
                    #[allow(unreachable_code, reason = "names the handler's output type")]
                    Ok::<(), JobError>(())
                }
            }),
        )
        .handle(
            "Good",
            handler_fn(move |_job: JobInfo| {
                let g = g.clone();
                async move {
                    g.store(true, Ordering::SeqCst);
                    Ok(())
                }
            }),
        );
    let stats = worker.stats();
    let w = start(worker);
    q.push("Boom", 1, &(), PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(10), "the panicking job parked", async || {
        (parked_count(&q).await? == 1).then_some(())
    })
    .await;
    q.push("Good", 1, &(), PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(10), "the next job", async || ran_good.load(Ordering::SeqCst).then_some(())).await;
    let report = stop(w).await;
    assert_eq!(*attempts.lock().expect("lock"), vec![1, 2, 3]);
    assert_eq!(stats.snapshot().panicked, 3);
    assert_eq!(report.counts.retried, 2);
    let parked = q.parked(10).await.expect("parked");
    assert_eq!(parked[0].reason, Some(ParkReason::Exhausted));
    assert!(parked[0].detail.contains("panicked: kaboom on attempt 3"), "{}", parked[0].detail);
    assert!(parked[0].detail.contains("3/3"), "{}", parked[0].detail);
}

async fn handler_errors_are_retried_with_growing_delays_then_parked_with_the_last_error(store: &Store) {
    // The queue allows 10 attempts; the job overrides it to 4.
    let q = store.queue(QueueConfig::new(unique("retry")).max_attempts(10)).await;
    let seen = Arc::new(Mutex::new(Vec::<(u32, u32, Instant, String)>::new()));
    let s = seen.clone();
    let cfg = fast_worker().backoff(Duration::from_millis(200), Duration::from_secs(5));
    let worker = Worker::new(q.clone(), cfg).handle(
        "Flaky",
        handler_fn(move |job: JobInfo| {
            let s = s.clone();
            async move {
                s.lock().expect("lock").push((job.attempt(), job.max_attempts(), Instant::now(), job.id().to_owned()));
                Err::<(), _>(JobError::failed(format!("boom attempt {}", job.attempt())))
            }
        }),
    );
    let w = start(worker);
    let pushed = q.push("Flaky", 1, &(), PushOptions::new().max_attempts(4)).await.expect("push");
    wait_for(Duration::from_secs(15), "the job parked", async || (parked_count(&q).await? == 1).then_some(())).await;
    stop(w).await;
    let seen = seen.lock().expect("lock").clone();
    let attempts: Vec<u32> = seen.iter().map(|s| s.0).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    assert!(seen.iter().all(|s| s.1 == 4 && s.3 == pushed.job_id), "max attempts and job id kept: {seen:?}");
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].2 - w[0].2).collect();
    // Backoff d = 200ms * 2^(attempt-1), jittered in [d/2, d]: lower bounds 100, 200, 400 ms.
    for (i, gap) in gaps.iter().enumerate() {
        let floor = Duration::from_millis(100 << i);
        assert!(*gap >= floor, "gap {i} is {gap:?}, below {floor:?}: {gaps:?}");
    }
    assert!(gaps[2] > gaps[0], "delays grow: {gaps:?}");
    let parked = q.parked(10).await.expect("parked");
    assert_eq!(parked[0].reason, Some(ParkReason::Exhausted));
    assert!(parked[0].detail.contains("boom attempt 4"), "{}", parked[0].detail);
    assert_eq!(parked[0].envelope().expect("envelope").attempt, 4);
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempt, record.max_attempts), (JobState::Parked, 4, Some(4)));
    assert!(record.error.as_deref().is_some_and(|e| e.contains("boom attempt 4")), "{record:?}");
}

async fn a_parked_entry_runs_once_re_driven(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("redrive"))).await;
    let fixed = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(Mutex::new(Vec::new()));
    let (f, r) = (fixed.clone(), ran.clone());
    let worker = Worker::new(q.clone(), fast_worker()).handle(
        "Payload",
        typed(move |p: Payload, job: JobInfo| {
            let (f, r) = (f.clone(), r.clone());
            async move {
                if !f.load(Ordering::SeqCst) {
                    return Err(JobError::permanent("the downstream API rejects it until the fix"));
                }
                r.lock().expect("lock").push((p.n, job.attempt(), job.idempotency_key().to_owned()));
                Ok(())
            }
        }),
    );
    let w = start(worker);
    let pushed = q
        .push("Payload", 1, &Payload { n: 5, kind: Kind::A }, PushOptions::new().idempotency_key("order-5"))
        .await
        .expect("push");
    wait_for(Duration::from_secs(10), "parked", async || (parked_count(&q).await? == 1).then_some(())).await;
    let parked = q.parked(10).await.expect("parked");
    assert_eq!(parked[0].reason, Some(ParkReason::Rejected));
    assert!(parked[0].detail.contains("rejects it"), "{}", parked[0].detail);
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!(q.parked_of(&record).await.expect("parked of").as_ref(), Some(&parked[0]));
    fixed.store(true, Ordering::SeqCst);
    assert!(q.redrive(&parked[0].parked_id).await.expect("redrive").is_some());
    assert_eq!(q.redrive(&parked[0].parked_id).await.expect("redrive again"), None, "gone from the parked list");
    wait_for(Duration::from_secs(10), "the re-driven job", async || {
        (!ran.lock().expect("lock").is_empty()).then_some(())
    })
    .await;
    stop(w).await;
    assert_eq!(*ran.lock().expect("lock"), vec![(5, 1, "order-5".to_owned())]);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending, stats.parked), (0, 0, 0));
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempt), (JobState::Done, 1), "the same job, done: {record:?}");
}

async fn the_parked_list_keeps_its_cap_and_counts_what_it_dropped(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("parkcap")).parked_max_len(5)).await;
    let worker = Worker::new(q.clone(), fast_worker())
        .handle("Payload", typed(|_: Payload, _: JobInfo| async { Err::<(), _>(JobError::permanent("rejected")) }));
    let w = start(worker);
    for n in 0..12 {
        q.push("Payload", 1, &Payload { n, kind: Kind::A }, PushOptions::new()).await.expect("push");
    }
    let stats = wait_for(Duration::from_secs(10), "every job parked or dropped", async || {
        let s = q.stats().await.ok()?;
        (s.parked + s.parked_dropped == 12).then_some(s)
    })
    .await;
    stop(w).await;
    assert_eq!((stats.parked, stats.parked_dropped), (5, 7));
    let parked = q.parked(100).await.expect("parked");
    assert_eq!(parked.len(), 5);
    assert!(parked.iter().all(|p| p.reason == Some(ParkReason::Rejected)));
}
