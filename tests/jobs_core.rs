//! The job layer in one process against a real redis-server: bad entries, panics, retries,
//! re-drive, long jobs, a 20,000-job drain, delays, shutdown and schedule catch-up.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::RedisServer;
use dual_mode::jobs::{
    JobError, JobInfo, JobState, ParkReason, PushOptions, Queue, QueueConfig, RateLimit, RateScope, Schedule,
    Scheduler, SchedulerConfig, Worker, WorkerConfig, handler_fn, typed,
};
use jobs_support::{con, queue, start, stop, unique, wait_for};
use serde::{Deserialize, Serialize};

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

/// Field-value pairs of a stream entry.
type Fields = Vec<(String, Vec<u8>)>;

fn fast_worker() -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(8)
        .lease(Duration::from_secs(2))
        .block(Duration::from_millis(200))
        .poll_delayed_every(Duration::from_millis(20))
        .backoff(Duration::from_millis(50), Duration::from_secs(2))
        .shutdown_deadline(Duration::from_secs(5))
}

async fn parked_count(q: &Queue) -> Option<u64> {
    Some(q.stats().await.ok()?.parked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one case per bad entry kind")]
async fn bad_entries_are_parked_with_their_reason_and_the_next_job_runs() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("bad"))).await;
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
    let mut c = con(&redis.url).await;
    let stream = q.keys().stream.clone();
    let envelope = |type_name: &str, payload: &[u8]| -> Fields {
        vec![
            ("id".into(), b"job-x".to_vec()),
            ("key".into(), b"key-x".to_vec()),
            ("type".into(), type_name.as_bytes().to_vec()),
            ("v".into(), b"1".to_vec()),
            ("attempt".into(), b"1".to_vec()),
            ("enq".into(), b"0".to_vec()),
            ("payload".into(), payload.to_vec()),
        ]
    };
    let cases: Vec<(ParkReason, Fields)> = vec![
        (ParkReason::NotJson, envelope("Payload", b"{not json")),
        (ParkReason::WrongShape, envelope("Payload", br#"{"n":"seven","kind":"A"}"#)),
        (ParkReason::UnknownVariant, envelope("Payload", br#"{"n":1,"kind":"Zebra"}"#)),
        (ParkReason::MissingField, envelope("Payload", br#"{"kind":"A"}"#)),
        (ParkReason::UnknownField, envelope("Payload", br#"{"n":1,"kind":"A","extra":true}"#)),
        (ParkReason::NotUtf8, envelope("Payload", b"\xff\xfe\x00garbage")),
        (ParkReason::MalformedEntry, vec![("foo".into(), b"bar".to_vec())]),
        (ParkReason::MalformedEntry, {
            let mut e = envelope("Payload", b"{}");
            e.retain(|(k, _)| k != "payload");
            e
        }),
        (ParkReason::MalformedEntry, {
            let mut e = envelope("Payload", b"{}");
            e[4].1 = b"x".to_vec();
            e
        }),
        (ParkReason::UnknownType, envelope("NoSuchSpec", br#"{"n":1,"kind":"A"}"#)),
    ];
    let mut expected = BTreeMap::new();
    for (reason, fields) in &cases {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream).arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v.as_slice());
        }
        let id: String = cmd.query_async(&mut c).await.expect("xadd");
        expected.insert(id, (*reason, fields.clone()));
    }
    q.push("Payload", 1, &Payload { n: 7, kind: Kind::B }, PushOptions::new()).await.expect("push good");

    let w = start(worker);
    wait_for(Duration::from_secs(10), "the good job", async || good.lock().expect("lock").contains(&7).then_some(()))
        .await;
    let n = cases.len() as u64;
    wait_for(Duration::from_secs(10), "all bad entries parked", async || (parked_count(&q).await? == n).then_some(()))
        .await;
    let report = stop(w).await;

    let parked = q.parked(100).await.expect("list parked");
    assert_eq!(parked.len(), cases.len());
    for p in &parked {
        let (reason, fields) = &expected[&p.source_entry_id];
        assert_eq!(p.reason, Some(*reason), "entry {} parked as {} ({})", p.source_entry_id, p.reason_code, p.detail);
        assert!(!p.detail.is_empty());
        let original: Vec<(Vec<u8>, Vec<u8>)> =
            fields.iter().map(|(k, v)| (k.clone().into_bytes(), v.clone())).collect();
        assert_eq!(p.fields, original, "raw fields kept byte for byte");
        let inspected = q.parked_entry(&p.parked_id).await.expect("inspect").expect("exists");
        assert_eq!(&inspected, p);
    }
    let not_utf8 = parked.iter().find(|p| p.reason == Some(ParkReason::NotUtf8)).expect("not utf8 parked");
    assert_eq!(not_utf8.payload(), Some(&b"\xff\xfe\x00garbage"[..]));
    let wrong = parked.iter().find(|p| p.reason == Some(ParkReason::WrongShape)).expect("wrong shape");
    assert!(wrong.detail.contains("Payload") && wrong.detail.contains("`n`"), "{}", wrong.detail);
    assert_eq!(report.counts.parked, n);
    assert_eq!(report.counts.succeeded, 1);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_retried_then_parked_and_the_worker_lives() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("panic")).max_attempts(3)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_are_retried_with_growing_delays_then_parked_with_the_last_error() {
    let redis = RedisServer::start();
    // The queue allows 10 attempts; the job overrides it to 4.
    let q = queue(&redis.url, QueueConfig::new(unique("retry")).max_attempts(10)).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_entry_runs_once_re_driven() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("redrive"))).await;
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
    q.push("Payload", 1, &Payload { n: 5, kind: Kind::A }, PushOptions::new().idempotency_key("order-5"))
        .await
        .expect("push");
    wait_for(Duration::from_secs(10), "parked", async || (parked_count(&q).await? == 1).then_some(())).await;
    let parked = q.parked(10).await.expect("parked");
    assert_eq!(parked[0].reason, Some(ParkReason::Rejected));
    assert!(parked[0].detail.contains("rejects it"), "{}", parked[0].detail);
    fixed.store(true, Ordering::SeqCst);
    assert!(q.redrive(&parked[0].parked_id).await.expect("redrive").is_some());
    assert_eq!(q.redrive(&parked[0].parked_id).await.expect("redrive again"), None, "gone from the parked stream");
    wait_for(Duration::from_secs(10), "the re-driven job", async || {
        (!ran.lock().expect("lock").is_empty()).then_some(())
    })
    .await;
    stop(w).await;
    assert_eq!(*ran.lock().expect("lock"), vec![(5, 1, "order-5".to_owned())]);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending, stats.parked), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parked_stream_keeps_its_cap_and_counts_what_it_dropped() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("parkcap")).parked_max_len(5)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_their_type_limit_wait_as_delayed_and_start_spaced_without_burning_attempts() {
    let redis = RedisServer::start();
    let config = QueueConfig::new(unique("type-rate"))
        .rate_limit(RateScope::Type("Payload".into()), RateLimit::new(10, Duration::from_secs(1)));
    let q = queue(&redis.url, config).await;
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let worker = Worker::new(q.clone(), fast_worker()).handle(
        "Payload",
        typed(move |p: Payload, job: JobInfo| {
            let s = s.clone();
            async move {
                s.lock().expect("lock").push((p.n, job.attempt(), Instant::now()));
                Ok(())
            }
        }),
    );
    let counts = worker.stats();
    let w = start(worker);
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(q.push("Payload", 1, &Payload { n, kind: Kind::A }, PushOptions::new()).await.expect("push").job_id);
    }
    let waiting = wait_for(Duration::from_secs(5), "a job waiting for the limit", async || {
        for id in &ids {
            let r = q.job(id).await.ok()??;
            if r.state == JobState::Delayed {
                return Some(r);
            }
        }
        None
    })
    .await;
    assert_eq!(waiting.attempt, 1);
    assert_eq!(waiting.error.as_deref(), Some("waiting for its rate limit"));
    wait_for(Duration::from_secs(10), "every job ran", async || (starts.lock().ok()?.len() == 8).then_some(())).await;
    stop(w).await;
    let mut starts = starts.lock().expect("lock").clone();
    starts.sort_by_key(|s| s.2);
    assert!(starts.iter().all(|s| s.1 == 1), "no attempt burnt");
    // The i-th start is never before its reserved slot, i * 100 ms after the first.
    for (i, s) in (0u32..).zip(&starts) {
        let since = s.2 - starts[0].2;
        assert!(since + Duration::from_millis(30) >= Duration::from_millis(100) * i, "start {i} after {since:?}");
    }
    assert!(counts.snapshot().rate_limited >= 7, "{:?}", counts.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_lease_is_not_run_twice_while_its_worker_lives() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("long"))).await;
    let runs = Arc::new(AtomicU32::new(0));
    let make = |runs: Arc<AtomicU32>| {
        handler_fn(move |job: JobInfo| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3500)).await;
                assert!(!job.lease().is_lost(), "the lease stays ours");
                Ok(())
            }
        })
    };
    let cfg = fast_worker().lease(Duration::from_secs(1));
    let w1 = Worker::new(q.clone(), cfg.clone()).handle("Long", make(runs.clone()));
    let w2 = Worker::new(q.clone(), cfg).handle("Long", make(runs.clone()));
    let (s1, s2) = (w1.stats(), w2.stats());
    let (w1, w2) = (start(w1), start(w2));
    q.push("Long", 1, &(), PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(15), "the job done", async || {
        let s = q.stats().await.ok()?;
        (s.length == 0 && s.pending == 0 && s1.snapshot().succeeded + s2.snapshot().succeeded == 1).then_some(())
    })
    .await;
    let (r1, r2) = (stop(w1).await, stop(w2).await);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(r1.counts.lease_lost + r2.counts.lease_lost, 0);
    assert_eq!(r1.counts.received + r2.counts.received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_lease_keeps_the_slot_of_its_key() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("long-slot")).key_concurrency("region:", 1)).await;
    let spans = Arc::new(Mutex::new(Vec::new()));
    let s = spans.clone();
    let worker = Worker::new(q.clone(), fast_worker().lease(Duration::from_millis(500))).handle(
        "Long",
        handler_fn(move |_job: JobInfo| {
            let s = s.clone();
            async move {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_millis(2000)).await;
                s.lock().expect("lock").push((started, Instant::now()));
                Ok(())
            }
        }),
    );
    let w = start(worker);
    for _ in 0..2 {
        q.push("Long", 1, &(), PushOptions::new().rate_key("region:1")).await.expect("push");
    }
    wait_for(Duration::from_secs(15), "both jobs ran", async || (spans.lock().ok()?.len() == 2).then_some(())).await;
    stop(w).await;
    let mut spans = spans.lock().expect("lock").clone();
    spans.sort();
    // The first job runs four leases: its slot is renewed with its entry's lease, so the
    // second job of the key waits for its end.
    assert!(spans[1].0 >= spans[0].1, "two jobs of the key ran at once: {spans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_finishing_together_are_refused_only_for_the_entries_this_worker_lost() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("acks"))).await;
    let started = Arc::new(AtomicU32::new(0));
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let handler = {
        let started = started.clone();
        handler_fn(move |_job: JobInfo| {
            let (started, mut go) = (started.clone(), go_rx.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                go.wait_for(|go| *go).await.map_err(JobError::failed)?;
                Ok(())
            }
        })
    };
    // A long lease: no renewal runs during the test, so the lost entries are found by the acks.
    let worker = Worker::new(q.clone(), fast_worker().lease(Duration::from_secs(60))).handle("Wait", handler);
    let stats = worker.stats();
    let w = start(worker);
    for n in 0..6u32 {
        q.push("Wait", 1, &n, PushOptions::new()).await.expect("push");
    }
    wait_for(Duration::from_secs(10), "6 jobs running", async || (started.load(Ordering::SeqCst) == 6).then_some(()))
        .await;
    // Another consumer takes 2 of the 6 entries (as a claim after an expired lease would).
    let mut c = con(&redis.url).await;
    let stream = q.keys().stream.clone();
    let ids = entry_ids(&mut c, &stream).await;
    let stolen = &ids[..2];
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&stream)
        .arg(&q.config().group)
        .arg("thief")
        .arg(0)
        .arg(stolen)
        .arg("JUSTID")
        .query_async(&mut c)
        .await
        .expect("XCLAIM");
    go_tx.send_replace(true);
    wait_for(Duration::from_secs(10), "6 jobs finished", async || {
        let s = stats.snapshot();
        (s.succeeded + s.lease_lost == 6).then_some(())
    })
    .await;
    let report = stop(w).await;
    assert_eq!((report.counts.succeeded, report.counts.lease_lost), (4, 2));
    assert_eq!(entry_ids(&mut c, &stream).await, stolen, "the stolen entries are neither acked nor deleted");
    let pending: redis::Value =
        redis::cmd("XPENDING").arg(&stream).arg(&q.config().group).query_async(&mut c).await.expect("XPENDING");
    let redis::Value::Array(summary) = pending else { panic!("XPENDING summary: {pending:?}") };
    assert_eq!(summary.first(), Some(&redis::Value::Int(2)), "the thief's 2 stay pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_jobs_pushed_without_workers_all_drain() {
    const N: u32 = 20_000;
    const DELAYED: u32 = 2_000;
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("drain"))).await;
    let payloads: Vec<Payload> = (0..N).map(|n| Payload { n, kind: Kind::A }).collect();
    let t = Instant::now();
    q.push_bulk("Payload", 1, &payloads, PushOptions::new()).await.expect("bulk push");
    let push_rate = f64::from(N) / t.elapsed().as_secs_f64();
    // Due delayed entries too: they must drain through the move script in batches.
    let delayed: Vec<Payload> = (N..N + DELAYED).map(|n| Payload { n, kind: Kind::B }).collect();
    let past = SystemTime::now() - Duration::from_secs(1);
    q.push_bulk("Payload", 1, &delayed, PushOptions::new().not_before(past)).await.expect("delayed push");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.delayed), (u64::from(N), u64::from(DELAYED)));

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let dups = Arc::new(AtomicU32::new(0));
    let make = |seen: Arc<Mutex<HashSet<u32>>>, dups: Arc<AtomicU32>| {
        typed(move |p: Payload, _job: JobInfo| {
            let (seen, dups) = (seen.clone(), dups.clone());
            async move {
                if !seen.lock().expect("lock").insert(p.n) {
                    dups.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            }
        })
    };
    let cfg = fast_worker().concurrency(64);
    let t = Instant::now();
    let w1 = start(Worker::new(q.clone(), cfg.clone()).handle("Payload", make(seen.clone(), dups.clone())));
    let w2 = start(Worker::new(q.clone(), cfg).handle("Payload", make(seen.clone(), dups.clone())));
    let total = (N + DELAYED) as usize;
    wait_for(Duration::from_secs(120), "all jobs drained", async || {
        (seen.lock().expect("lock").len() == total).then_some(())
    })
    .await;
    let elapsed = t.elapsed();
    wait_for(Duration::from_secs(10), "the queue idle", async || q.stats().await.ok()?.is_idle().then_some(())).await;
    let (r1, r2) = (stop(w1).await, stop(w2).await);
    println!(
        "pushed {N} in bulk at {push_rate:.0}/s; drained {total} with 2 workers x 64 in {elapsed:?} ({:.0} jobs/s); split {} / {}",
        f64::from(N + DELAYED) / elapsed.as_secs_f64(),
        r1.counts.succeeded,
        r2.counts.succeeded
    );
    assert_eq!(dups.load(Ordering::SeqCst), 0);
    assert_eq!(r1.counts.succeeded + r2.counts.succeeded, total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_push_waits_for_its_time() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("delay"))).await;
    let ran_at = Arc::new(Mutex::new(None));
    let r = ran_at.clone();
    let t0 = Instant::now();
    q.push("D", 1, &(), PushOptions::new().delay(Duration::from_millis(600))).await.expect("push");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.delayed), (0, 1));
    assert_eq!(q.promote_due().await.expect("promote"), 0, "not due yet");
    let w = start(Worker::new(q.clone(), fast_worker()).handle(
        "D",
        handler_fn(move |_job: JobInfo| {
            let r = r.clone();
            async move {
                *r.lock().expect("lock") = Some(Instant::now());
                Ok(())
            }
        }),
    ));
    let at = wait_for(Duration::from_secs(10), "the delayed job", async || *ran_at.lock().expect("lock")).await;
    stop(w).await;
    assert!(at - t0 >= Duration::from_millis(550), "ran after {:?}", at - t0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_running_jobs_up_to_the_deadline() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("shutdown"))).await;
    let sleeper = || {
        handler_fn(|job: JobInfo| async move {
            let ms: u64 = job.decode().map_err(JobError::from)?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    };
    // A 600 ms job finishes within a 5 s deadline.
    let w = Worker::new(q.clone(), fast_worker()).handle("Sleep", sleeper());
    let stats = w.stats();
    let w = start(w);
    q.push("Sleep", 1, &600u64, PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(5), "the job started", async || (stats.snapshot().received == 1).then_some(())).await;
    let report = stop(w).await;
    assert_eq!((report.counts.succeeded, report.abandoned), (1, 0));
    // A 5 s job that ignores the shutdown signal is handed back before a 400 ms deadline,
    // without counting an attempt: another worker runs it at once.
    let w =
        Worker::new(q.clone(), fast_worker().shutdown_deadline(Duration::from_millis(400))).handle("Sleep", sleeper());
    let stats = w.stats();
    let w = start(w);
    let pushed = q.push("Sleep", 1, &5000u64, PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(5), "the job started", async || (stats.snapshot().received == 1).then_some(())).await;
    let t = Instant::now();
    let report = stop(w).await;
    assert!(t.elapsed() < Duration::from_secs(2), "shutdown took {:?}", t.elapsed());
    assert_eq!((report.counts.succeeded, report.counts.handed_back, report.abandoned), (0, 1, 0));
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.length + stats.delayed), (0, 1), "{stats:?}");
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempt), (JobState::Delayed, 1), "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_catches_up_ticks_missed_while_all_were_down() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("catchup"))).await;
    let schedule = Schedule::new("every-second", "* * * * * *", "Tick", 1, &()).expect("schedule");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new().catch_up(true));
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs();
    let now = i64::try_from(now).expect("secs");
    // The last tick anyone enqueued was 6 s ago.
    assert!(scheduler.enqueue_tick(&schedule, now - 6).await.expect("tick").is_some());
    assert!(scheduler.enqueue_tick(&schedule, now - 6).await.expect("tick").is_none(), "a tick is enqueued once");
    assert_eq!(scheduler.last_tick(&schedule).await.expect("last"), Some(now - 6));
    let scheduler = scheduler.schedule(schedule);
    let enqueued = scheduler.run(tokio::time::sleep(Duration::from_millis(100))).await.expect("run");
    assert!(enqueued >= 5, "caught up {enqueued} ticks");
    let mut c = con(&redis.url).await;
    let keys: Vec<String> = entries_keys(&mut c, &q.keys().stream).await;
    let ticks: Vec<i64> =
        keys.iter().map(|k| k.rsplit(':').next().and_then(|t| t.parse().ok()).expect("tick")).collect();
    let expected: Vec<i64> = (now - 6..now - 6 + i64::try_from(ticks.len()).expect("len")).map(|s| s * 1000).collect();
    assert_eq!(ticks, expected, "every second from the last tick on, once");
}

async fn entry_ids(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<String> {
    let entries: Vec<(String, Fields)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(c).await.expect("xrange");
    entries.into_iter().map(|(id, _)| id).collect()
}

async fn entries_keys(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<String> {
    let entries: Vec<(String, Fields)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(c).await.expect("xrange");
    entries
        .into_iter()
        .map(|(_, f)| {
            let v = &f.iter().find(|(k, _)| k == "key").expect("key field").1;
            String::from_utf8(v.clone()).expect("utf8")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_told_to_wait_runs_again_later_without_burning_an_attempt() {
    let redis = RedisServer::start();
    // One attempt only: a wait that counted as an attempt would park the job.
    let q = queue(&redis.url, QueueConfig::new(unique("wait")).max_attempts(1)).await;
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = runs.clone();
    let worker = Worker::new(q.clone(), fast_worker()).handle(
        "Payload",
        typed(move |_p: Payload, job: JobInfo| {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut runs = seen.lock().expect("lock");
                    runs.push((Instant::now(), job.attempt()));
                    runs.len()
                };
                if n < 3 { Err(JobError::retry_after(Duration::from_millis(300), "remote said 429")) } else { Ok(()) }
            }
        }),
    );
    let w = start(worker);
    q.push("Payload", 1, &Payload { n: 1, kind: Kind::A }, PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(10), "three runs", async || (runs.lock().expect("lock").len() >= 3).then_some(()))
        .await;
    wait_for(Duration::from_secs(5), "an idle queue", async || {
        q.stats().await.ok().filter(dual_mode::jobs::QueueStats::is_idle)
    })
    .await;
    let report = stop(w).await;
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 1, 1], "the attempt number is kept");
    for pair in runs.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= Duration::from_millis(300), "each try waited the time it was told");
    }
    assert_eq!(
        (report.counts.waited, report.counts.retried, report.counts.parked, report.counts.succeeded),
        (2, 0, 0, 1)
    );
    assert_eq!(q.stats().await.expect("stats").parked, 0);
}
