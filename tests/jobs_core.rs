//! The job layer on a real redis-server, where only Redis can be asked: entries written with
//! `XADD` that no push makes (parked with their raw fields, byte for byte), and entries another
//! consumer takes with `XCLAIM` while their runs finish. What every backend does (retries,
//! parking, re-drive, delays, rate limits, leases, shutdown, drains, catch-up) is in the
//! conformance suite, `tests/conformance/`.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RedisServer;
use dual_mode::jobs::{
    JobError, JobInfo, ParkReason, PushOptions, Queue, QueueConfig, Worker, WorkerConfig, handler_fn, typed,
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

/// Entries without a whole envelope: a push always writes one, so only a raw `XADD` makes them.
/// (Bad payloads in whole envelopes are the conformance suite's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_parked_with_their_raw_fields_and_the_next_job_runs() {
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
    assert_eq!(report.counts.parked, n);
    assert_eq!(report.counts.succeeded, 1);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending), (0, 0));
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

async fn entry_ids(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<String> {
    let entries: Vec<(String, Fields)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(c).await.expect("xrange");
    entries.into_iter().map(|(id, _)| id).collect()
}
