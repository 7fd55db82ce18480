//! The backend driven through the [`Backend`] trait: pushes, reads, leases and fencing.

mod admin;
mod flow;
mod gates;

use std::time::Duration;

use futures_util::StreamExt as _;

use super::MemoryPartition;
use crate::backend::{Backend, DoneRun, Ending, Entry, MarkRun, Marked, PushAnswer, Read, Renewed, RunRef, Written};
use crate::envelope::Envelope;
use crate::lane::Lane;
use crate::record::JobState;

/// A partition whose records live an hour and whose parked stream keeps 3 entries.
fn partition() -> MemoryPartition {
    MemoryPartition::new(
        crate::QueueConfig::new("t").record_ttl(Duration::from_secs(3600)).parked_max_len(3).retention(),
    )
}

/// A job `id` of type `mail`, first attempt.
fn env(id: &str) -> Envelope {
    Envelope {
        id: id.to_owned(),
        idempotency_key: id.to_owned(),
        type_name: "mail".to_owned(),
        version: 1,
        attempt: 1,
        max_attempts: None,
        unique: None,
        timeout_ms: None,
        rate_key: None,
        reserved: false,
        lane: Lane::Normal,
        traceparent: None,
        keep_ms: None,
        enqueued_at_ms: 1_700_000_000_000,
        payload: format!("{{\"to\":\"{id}\"}}").into_bytes(),
    }
}

/// Pushes `env`; its entry id.
async fn push(p: &MemoryPartition, env: &Envelope) -> String {
    match p.push(env, Duration::ZERO).await.expect("push") {
        PushAnswer::Added { entry_id } => entry_id,
        other => panic!("push answered {other:?}"),
    }
}

/// Reads up to `count` new entries for `consumer`, high lane first.
async fn read(p: &MemoryPartition, consumer: &str, count: usize) -> Vec<(Lane, Entry)> {
    let mut reader = p.reader(Duration::from_millis(10), Duration::from_secs(1)).await.expect("reader");
    match reader.read(consumer, count, Lane::ALL).await.expect("read") {
        Read::Entries(entries) => entries.into_iter().map(|(lane, entry, _)| (lane, entry)).collect(),
        Read::Paused => panic!("the queue is paused"),
    }
}

/// A successful run of `job` on `entry` with `token`.
fn done(entry: &str, token: u64, job: &str) -> DoneRun {
    DoneRun {
        entry_id: entry.to_owned(),
        token,
        job_id: job.to_owned(),
        result: b"\"sent\"".to_vec(),
        started_ms: 1,
        attempt: 1,
        ..DoneRun::default()
    }
}

/// The run of `job` on `entry` with `token`.
fn run<'a>(entry: &'a str, token: u64, job: &'a str) -> RunRef<'a> {
    RunRef { entry_id: entry, token, job: Some((job, None)) }
}

/// Job `id`'s state, per its record.
async fn state(p: &MemoryPartition, id: &str) -> Option<JobState> {
    p.record(id).await.expect("record").map(|r| r.state)
}

#[tokio::test]
async fn a_push_is_read_marked_and_acknowledged_with_its_record() {
    let p = partition();
    let mut ended = p.finished().await.expect("finished");
    let job = env("a");
    let entry = push(&p, &job).await;
    let record = p.record("a").await.expect("record").expect("a record");
    assert_eq!(
        (record.state, record.entry_id.as_deref(), record.type_name.as_str()),
        (JobState::Queued, Some(entry.as_str()), "mail")
    );
    assert_eq!(p.stats().await.expect("stats").length, 1);

    let got = read(&p, "w1", 10).await;
    assert_eq!(got.len(), 1);
    let (lane, (id, fields)) = &got[0];
    assert_eq!((*lane, id), (Lane::Normal, &entry));
    assert_eq!(Envelope::from_fields(fields).expect("an envelope"), job, "the fields round-trip");
    assert!(read(&p, "w1", 10).await.is_empty(), "delivered once");
    let stats = p.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending), (1, 1));

    let mark = MarkRun { entry_id: entry.clone(), token: 1, job_id: "a".to_owned(), attempt: 1, started_ms: 5 };
    assert_eq!(p.mark(Lane::Normal, "w1", &[mark]).await.expect("mark"), [Marked::Yes]);
    assert_eq!(state(&p, "a").await, Some(JobState::Running));
    assert_eq!(p.state_page("running", None, 10).await.expect("page").len(), 1);

    let answers = p.ack(Lane::Normal, "w1", &[done(&entry, 1, "a")]).await.expect("ack");
    assert_eq!(answers, [Written::Done]);
    let record = p.record("a").await.expect("record").expect("a record");
    assert_eq!(record.state, JobState::Done);
    assert_eq!(record.result.as_deref(), Some(&b"\"sent\""[..]));
    assert_eq!(record.worker.as_deref(), Some("w1"));
    assert!(record.finished_at.is_some());
    let stats = p.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending), (0, 0), "acknowledged and deleted");
    assert!(p.state_page("running", None, 10).await.expect("page").is_empty());
    assert_eq!(p.state_counts().await.expect("counts").done, 1);
    assert_eq!(ended.next().await.as_deref(), Some("a"));
}

#[tokio::test]
async fn a_claim_after_the_lease_raises_the_token_and_fences_the_old_owner() {
    let p = partition();
    let entry = push(&p, &env("a")).await;
    read(&p, "w1", 1).await;
    let (_, claimed) = p.claim(Lane::Normal, "w2", 1000, "0-0", 10).await.expect("claim");
    assert!(claimed.is_empty(), "the lease runs");
    p.advance(Duration::from_millis(1500));
    let (_, own) = p.claim(Lane::Normal, "w1", 1000, "0-0", 10).await.expect("claim");
    assert!(own.is_empty(), "never a consumer's own entry");
    let (cursor, claimed) = p.claim(Lane::Normal, "w2", 1000, "0-0", 10).await.expect("claim");
    assert_eq!(cursor, "0-0", "the scan is complete");
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].0.as_str(), claimed[0].2), (entry.as_str(), 2), "token 2");

    // The old owner is fenced everywhere.
    assert_eq!(p.ack(Lane::Normal, "w1", &[done(&entry, 1, "a")]).await.expect("ack"), [Written::Other]);
    assert_eq!(p.renew(Lane::Normal, "w1", &[(&entry, 1, "a")]).await.expect("renew"), [Renewed::Lost]);
    let parked = Ending::Parked { fields: &[] };
    assert_eq!(p.end(Lane::Normal, "w1", &run(&entry, 1, "a"), &parked, &[]).await.expect("end"), Written::Other);
    let mark = MarkRun { entry_id: entry.clone(), token: 1, job_id: "a".to_owned(), attempt: 1, started_ms: 5 };
    assert_eq!(p.mark(Lane::Normal, "w1", &[mark]).await.expect("mark"), [Marked::NotOwned]);

    // The new one holds it; a renewal keeps its token and restarts its lease.
    assert_eq!(p.renew(Lane::Normal, "w2", &[(&entry, 2, "a")]).await.expect("renew"), [Renewed::Yes]);
    p.advance(Duration::from_millis(600));
    let (_, claimed) = p.claim(Lane::Normal, "w3", 1000, "0-0", 10).await.expect("claim");
    assert!(claimed.is_empty(), "renewed 600 ms ago");
    assert_eq!(p.ack(Lane::Normal, "w2", &[done(&entry, 2, "a")]).await.expect("ack"), [Written::Done]);
    assert_eq!(p.ack(Lane::Normal, "w1", &[done(&entry, 1, "a")]).await.expect("ack"), [Written::Gone]);
    assert_eq!(state(&p, "a").await, Some(JobState::Done));
}

#[tokio::test]
async fn the_retry_of_a_write_whose_reply_was_lost_answers_landed() {
    let p = partition();
    let a = push(&p, &env("a")).await;
    let b = push(&p, &env("b")).await;
    read(&p, "w1", 2).await;
    assert_eq!(p.ack(Lane::Normal, "w1", &[done(&a, 1, "a")]).await.expect("ack"), [Written::Done]);
    assert_eq!(p.ack(Lane::Normal, "w1", &[done(&a, 1, "a")]).await.expect("ack again"), [Written::Landed]);
    let parked = Ending::Parked { fields: &[(b"raw:id".to_vec(), b"b".to_vec())] };
    // As the worker writes them: who ran which entry, so that a retry knows its own write.
    let items = [("worker", b"w1".to_vec()), ("entry", b.clone().into_bytes()), ("reason", b"rejected".to_vec())];
    assert_eq!(p.end(Lane::Normal, "w1", &run(&b, 1, "b"), &parked, &items).await.expect("park"), Written::Done);
    assert_eq!(p.end(Lane::Normal, "w1", &run(&b, 1, "b"), &parked, &items).await.expect("again"), Written::Landed);
    assert_eq!(p.stats().await.expect("stats").parked, 1, "parked once");
}

#[tokio::test]
async fn a_consumer_takes_back_its_own_entries_with_a_new_token() {
    let p = partition();
    let entry = push(&p, &env("a")).await;
    read(&p, "w1", 1).await;
    assert!(p.own_pending(Lane::Normal, "w1", Duration::from_secs(1), 10).await.expect("own").is_empty());
    p.advance(Duration::from_secs(2));
    let own = p.own_pending(Lane::Normal, "w1", Duration::from_secs(1), 10).await.expect("own");
    assert_eq!(own, std::slice::from_ref(&entry));
    assert!(p.own_pending(Lane::Normal, "w2", Duration::ZERO, 10).await.expect("own").is_empty());
    assert!(p.reclaim(Lane::Normal, "w2", &own).await.expect("not w2's").is_empty());
    let claimed = p.reclaim(Lane::Normal, "w1", &own).await.expect("reclaim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].2, 2);
    assert_eq!(p.ack(Lane::Normal, "w1", &[done(&entry, 1, "a")]).await.expect("ack"), [Written::Other]);
    assert_eq!(p.ack(Lane::Normal, "w1", &[done(&entry, 2, "a")]).await.expect("ack"), [Written::Done]);
}

#[tokio::test]
async fn lanes_are_read_in_the_order_given_and_keep_their_jobs() {
    let p = partition();
    let low = Envelope { lane: Lane::Low, ..env("low") };
    let high = Envelope { lane: Lane::High, ..env("high") };
    push(&p, &low).await;
    push(&p, &env("normal")).await;
    push(&p, &high).await;
    assert_eq!(p.record("high").await.expect("record").expect("a record").lane, Lane::High);
    let got = read(&p, "w1", 2).await;
    assert_eq!(got.iter().map(|(lane, _)| *lane).collect::<Vec<_>>(), [Lane::High, Lane::Normal]);
    let mut reader = p.reader(Duration::from_millis(10), Duration::from_secs(1)).await.expect("reader");
    let Read::Entries(rest) = reader.read("w1", 5, [Lane::Low, Lane::High, Lane::Normal]).await.expect("read") else {
        panic!("paused");
    };
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, Lane::Low);
    assert_eq!(p.stats().await.expect("stats").pending, 3);
}

#[tokio::test]
async fn claims_page_through_the_expired_leases_from_a_cursor() {
    let p = partition();
    let mut entries = Vec::new();
    for i in 0..3 {
        entries.push(push(&p, &env(&format!("j{i}"))).await);
    }
    read(&p, "w1", 3).await;
    p.advance(Duration::from_secs(2));
    let (cursor, claimed) = p.claim(Lane::Normal, "w2", 1000, "0-0", 1).await.expect("claim");
    assert_eq!((cursor.as_str(), claimed[0].0.as_str()), (entries[0].as_str(), entries[0].as_str()));
    let (cursor, claimed) = p.claim(Lane::Normal, "w2", 1000, &cursor, 2).await.expect("claim");
    assert_eq!(claimed.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), [&entries[1], &entries[2]]);
    assert_eq!(cursor, entries[2], "a full page: more may follow");
    let (cursor, claimed) = p.claim(Lane::Normal, "w2", 1000, &cursor, 2).await.expect("claim");
    assert_eq!((cursor.as_str(), claimed.len()), ("0-0", 0), "the end");
    let consumers = p.consumers(Lane::Normal).await.expect("consumers");
    assert_eq!(consumers.iter().map(|c| (c.name.as_str(), c.pending)).collect::<Vec<_>>(), [("w1", 0), ("w2", 3)]);
}

#[tokio::test]
async fn a_bulk_push_answers_in_order() {
    let p = partition();
    let envs = [
        env("a"),
        Envelope { unique: Some("u".to_owned()), ..env("b") },
        Envelope { unique: Some("u".to_owned()), ..env("c") },
    ];
    let answers = p.push_many(&envs, Duration::ZERO).await.expect("push");
    assert!(
        matches!(&answers[..], [PushAnswer::Added { .. }, PushAnswer::Added { .. }, PushAnswer::Held { holder }] if holder == "b"),
        "{answers:?}"
    );
    let got = read(&p, "w1", 10).await;
    let ids: Vec<String> = got.iter().map(|(_, (_, f))| Envelope::from_fields(f).expect("envelope").id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(p.push_many(&[], Duration::ZERO).await.expect("push").is_empty());
}
