//! Operator reads, pauses, schedules, the reader's wait, and bad input.

use std::time::{Duration, Instant};

use super::{done, env, partition, push, read};
use crate::backend::{Backend, Read, Ticked};
use crate::envelope::Envelope;
use crate::error::QueueError;
use crate::lane::Lane;
use crate::record::JobState;

#[tokio::test]
async fn pages_list_what_is_queued_and_what_ended() {
    let p = partition();
    let mut entries = Vec::new();
    for i in 0..5 {
        entries.push(push(&p, &env(&format!("j{i}"))).await);
    }
    let first = p.queued_page(Lane::Normal, None, 2).await.expect("page");
    assert_eq!(first.iter().map(|(id, _)| id).collect::<Vec<_>>(), [&entries[0], &entries[1]]);
    let next = p.queued_page(Lane::Normal, Some((&entries[1], false)), 2).await.expect("page");
    assert_eq!(next[0].0, entries[2]);
    let (records, total) = p.records(JobState::Queued, 1, 2).await.expect("records");
    assert_eq!((records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), total), (vec!["j1", "j2"], 5));

    let got = read(&p, "w1", 2).await;
    // Before the acks: the jobs end in the second bucket, however many ms they take.
    let now = crate::envelope::unix_ms(std::time::SystemTime::now());
    assert_eq!(p.queued_page(Lane::Normal, None, 10).await.expect("page").len(), 3, "delivered ones are not listed");
    assert_eq!(p.records(JobState::Queued, 0, 10).await.expect("records").1, 3);
    for (_, (entry, fields)) in &got {
        let id = Envelope::from_fields(fields).expect("envelope").id;
        p.ack(Lane::Normal, "w1", &[done(entry, 1, &id)]).await.expect("ack");
    }
    let done_page = p.state_page("done", None, 1).await.expect("page");
    assert_eq!(done_page.len(), 1);
    let (member, score) = &done_page[0];
    let rest = p.state_page("done", Some((score, member)), 10).await.expect("page");
    assert_eq!(rest.len(), 1);
    assert_ne!(&rest[0].0, member);
    assert!(p.state_page("nothing", None, 10).await.expect("page").is_empty());
    let (records, total) = p.records(JobState::Done, 0, 10).await.expect("records");
    assert_eq!((records.len(), total), (2, 2));

    let counts = p.entered(&["done", "parked"], now - 60_000, 60_000, 2).await.expect("entered");
    assert_eq!(counts, [vec![0, 2], vec![0, 0]]);
    assert!(p.entered(&["done"], 0, 1, 0).await.expect("entered").is_empty());
}

#[tokio::test]
async fn stats_and_consumers_count_what_each_holds() {
    let p = partition();
    for i in 0..3 {
        push(&p, &env(&format!("j{i}"))).await;
    }
    read(&p, "w1", 2).await;
    read(&p, "w2", 5).await;
    let stats = p.stats().await.expect("stats");
    assert_eq!((stats.length, stats.pending, stats.delayed, stats.parked), (3, 3, 0, 0));
    let consumers = p.consumers(Lane::Normal).await.expect("consumers");
    let held: Vec<(&str, u64)> = consumers.iter().map(|c| (c.name.as_str(), c.pending)).collect();
    assert_eq!(held, [("w1", 2), ("w2", 1)]);
    assert!(!p.remove_consumer_if_idle(Lane::Normal, "w1").await.expect("remove"));
    read(&p, "w3", 1).await;
    p.advance(Duration::from_secs(10));
    assert_eq!(p.prune_consumers(Lane::Normal, "w2", Duration::from_secs(5)).await.expect("prune"), 1, "w3");
    assert!(p.remove_consumer_if_idle(Lane::High, "w1").await.expect("remove"));
    assert_eq!(p.sweep(Lane::Normal, "0-0", 200).await.expect("sweep"), (None, 0), "nothing orphaned");
    assert_eq!(p.ensure_group(Duration::from_secs(1)).await.expect("group"), None, "it exists from the start");
    assert_eq!(p.claim_partitions(1).await.expect("partitions"), 1);
    assert_eq!(p.claim_partitions(4).await.expect("partitions"), 1, "the first count stays");
}

#[tokio::test]
async fn a_paused_queue_delivers_nothing_until_resumed() {
    let p = partition();
    push(&p, &env("a")).await;
    assert!(p.pause_queue(42).await.expect("pause"));
    assert!(!p.pause_queue(43).await.expect("pause again"));
    assert!(p.is_paused().await.expect("paused"));
    assert_eq!(p.state_counts().await.expect("counts").paused_at_ms, Some(42));
    let mut reader = p.reader(Duration::from_millis(10), Duration::from_secs(1)).await.expect("reader");
    assert!(matches!(reader.read("w1", 10, Lane::ALL).await.expect("read"), Read::Paused));
    assert!(p.resume_queue().await.expect("resume"));
    assert!(!p.resume_queue().await.expect("resume again"));
    assert_eq!(read(&p, "w1", 10).await.len(), 1);
}

#[tokio::test]
async fn a_tick_is_enqueued_once_and_not_while_its_schedule_is_paused() {
    let p = partition();
    let ttl = Duration::from_secs(60);
    assert!(matches!(p.tick("daily", ttl, 1000, &env("t1"), Duration::ZERO).await.expect("tick"), Ticked::Enqueued(_)));
    assert_eq!(p.tick("daily", ttl, 1000, &env("t1b"), Duration::ZERO).await.expect("tick"), Ticked::Duplicate);
    assert_eq!(p.record("t1").await.expect("record").expect("a record").state, JobState::Queued);
    assert_eq!(p.last_tick("daily").await.expect("last"), Some(1000));
    assert!(p.pause_schedule("daily", 5).await.expect("pause"));
    assert!(!p.pause_schedule("daily", 6).await.expect("pause again"));
    assert_eq!(p.tick("daily", ttl, 2000, &env("t2"), Duration::ZERO).await.expect("tick"), Ticked::Paused);
    assert!(p.resume_schedule("daily", 7).await.expect("resume"));
    assert!(!p.resume_schedule("daily", 8).await.expect("resume again"));
    let states = p.schedule_states(&["daily".to_owned(), "never".to_owned()]).await.expect("states");
    assert_eq!((states[0].last, states[0].paused, states[0].resumed), (Some(1000), None, Some(7)));
    assert_eq!((states[1].last, states[1].paused), (None, None));
    // The tick of a job still holding its unique key is marked, not enqueued.
    let unique = Envelope { unique: Some("daily".to_owned()), ..env("u1") };
    p.tick("daily", ttl, 3000, &unique, Duration::ZERO).await.expect("tick");
    let again = Envelope { unique: Some("daily".to_owned()), ..env("u2") };
    assert_eq!(p.tick("daily", ttl, 4000, &again, Duration::ZERO).await.expect("tick"), Ticked::Held("u1".to_owned()));
    assert_eq!(p.tick("daily", ttl, 4000, &again, Duration::ZERO).await.expect("tick"), Ticked::Duplicate);
    assert_eq!(p.last_tick("daily").await.expect("last"), Some(4000));
    // Its mark lives the dedupe time.
    p.advance(Duration::from_secs(61));
    assert!(matches!(p.tick("daily", ttl, 1000, &env("t3"), Duration::ZERO).await.expect("tick"), Ticked::Enqueued(_)));
    assert_eq!(p.last_tick("daily").await.expect("last"), Some(4000), "an older tick leaves the last one");

    p.register_schedules(&[("daily".to_owned(), "every day".to_owned()), ("a".to_owned(), "x".to_owned())])
        .await
        .expect("register");
    let index = p.schedule_index().await.expect("index");
    assert_eq!(index.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["a", "daily"]);
    assert!(p.forget_schedule("daily").await.expect("forget"));
    assert!(!p.forget_schedule("daily").await.expect("forget again"));
    assert_eq!(p.last_tick("daily").await.expect("last"), None);
}

#[tokio::test]
async fn a_wait_returns_when_an_entry_arrives_or_after_its_block_time() {
    let p = partition();
    let mut reader = p.reader(Duration::from_secs(10), Duration::from_secs(1)).await.expect("reader");
    // No short read yet: no wait.
    let started = Instant::now();
    reader.wait().await.expect("wait");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(reader.read("w1", 10, Lane::ALL).await.expect("read"), Read::Entries(e) if e.is_empty()));
    let pusher = p.clone();
    let pushing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let low = Envelope { lane: Lane::Low, ..env("a") };
        assert!(!pusher.push(&low, Duration::ZERO).await.expect("push").is_held());
    });
    let started = Instant::now();
    reader.wait().await.expect("wait");
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the push");
    pushing.await.expect("pushed");
    // An entry already there: at once.
    reader.wait().await.expect("wait");
    let mut short = p.reader(Duration::from_millis(50), Duration::from_secs(1)).await.expect("reader");
    assert!(matches!(short.read("w1", 10, Lane::ALL).await.expect("read"), Read::Entries(e) if e.len() == 1));
    let started = Instant::now();
    short.wait().await.expect("wait");
    assert!(started.elapsed() >= Duration::from_millis(40), "waited its block time");
    // A block too long for a deadline.
    let mut endless = p.reader(Duration::MAX, Duration::from_secs(1)).await.expect("reader");
    assert!(matches!(endless.read("w2", 10, Lane::ALL).await.expect("read"), Read::Entries(e) if e.is_empty()));
    push(&p, &env("b")).await;
    endless.wait().await.expect("wait");
}

#[tokio::test]
async fn bad_ids_are_typed_errors_and_unknown_ones_answer_nothing() {
    fn config<T>(answer: &Result<T, QueueError>) -> bool {
        matches!(answer, Err(QueueError::Config(_)))
    }
    let p = partition();
    assert!(config(&p.stream_entry(Lane::Normal, "nope").await));
    assert!(config(&p.parked_range("(x", "+", 10).await));
    assert!(config(&p.parked_newest(Some(("1-x", false)), 10).await));
    assert!(config(&p.claim(Lane::Normal, "w1", 0, "cursor", 10).await));
    assert!(config(&p.ack(Lane::Normal, "w1", &[done("-", 1, "a")]).await));
    assert!(config(&p.state_page("done", Some(("x", "a")), 10).await));
    assert!(config(&p.sweep(Lane::Normal, "", 10).await));
    assert_eq!(p.stream_entry(Lane::Normal, "1-1").await.expect("entry"), None);
    assert_eq!(p.stream_entry(Lane::Normal, "18446744073709551615-18446744073709551615").await.expect("entry"), None);
    assert!(p.parked_range("(18446744073709551615-18446744073709551615", "+", 10).await.expect("range").is_empty());
    assert!(p.parked_range("+", "-", 10).await.expect("inverted range").is_empty());
    assert_eq!(p.redrive("1-1", "raw:", Some("a")).await.expect("redrive"), None);
    assert_eq!(p.ack(Lane::Normal, "w1", &[done("1-1", 1, "a")]).await.expect("ack"), [crate::backend::Written::Gone]);
    assert!(p.delayed_fields("a").await.expect("fields").is_empty());
    assert!(p.records_of(&["a".to_owned()]).await.expect("records")[0].is_none());
    let (records, total) = p.records(JobState::Running, 5, 0).await.expect("records");
    assert_eq!((records.len(), total), (0, 0));
}

#[tokio::test]
async fn a_partition_announces_its_ended_jobs_on_its_home() {
    let home = partition();
    let part = home.partition();
    let mut ended = home.finished().await.expect("finished");
    push(&part, &env("a")).await;
    assert_eq!(home.stats().await.expect("stats").length, 0, "a partition of its own");
    assert_eq!(part.cancel("a").await.expect("cancel"), crate::record::CancelOutcome::Removed);
    assert_eq!(futures_util::StreamExt::next(&mut ended).await.as_deref(), Some("a"));
}
