//! Delays, retries, parking and re-drives; unique keys; cancellation; record expiry.

use std::time::Duration;

use futures_util::StreamExt as _;

use super::{done, env, partition, push, read, run, state};
use crate::backend::{Backend, Ending, PushAnswer, Written};
use crate::envelope::{Envelope, field_of};
use crate::lane::Lane;
use crate::record::{CancelOutcome, JobState};

#[tokio::test]
async fn a_delayed_push_waits_for_its_due_time_then_is_promoted() {
    let p = partition();
    assert_eq!(p.push_delayed(&env("a"), Duration::ZERO, 0, 1000).await.expect("push"), PushAnswer::Delayed);
    let record = p.record("a").await.expect("record").expect("a record");
    assert_eq!(record.state, JobState::Delayed);
    assert!(record.due_at.is_some());
    let high = Envelope { lane: Lane::High, ..env("b") };
    assert!(!p.push_delayed(&high, Duration::ZERO, 1, 0).await.expect("push").is_held());
    assert_eq!(p.stats().await.expect("stats").delayed, 2);
    let page = p.state_page("delayed", None, 10).await.expect("page");
    assert_eq!(page[0], ("b".to_owned(), "1".to_owned()), "by due time");
    assert_eq!(page[1].0, "a");
    let (records, total) = p.records(JobState::Delayed, 0, 10).await.expect("records");
    assert_eq!((records.len(), total), (2, 2));
    assert_eq!(p.promote(10).await.expect("promote"), 1, "b was due at 1 ms after the epoch");
    assert_eq!(p.promote(10).await.expect("promote"), 0);
    p.advance(Duration::from_millis(1500));
    assert_eq!(p.promote(10).await.expect("promote"), 1);
    let record = p.record("a").await.expect("record").expect("a record");
    assert_eq!(record.state, JobState::Queued);
    let got = read(&p, "w1", 10).await;
    assert_eq!(got.iter().map(|(lane, _)| *lane).collect::<Vec<_>>(), [Lane::High, Lane::Normal], "lanes kept");
    assert_eq!(record.entry_id.as_deref(), Some(got[1].1.0.as_str()));
    assert_eq!(p.stats().await.expect("stats").delayed, 0);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_later_and_the_last_one_parked() {
    let p = partition();
    let mut ended = p.finished().await.expect("finished");
    let first = env("a");
    let entry = push(&p, &first).await;
    read(&p, "w1", 1).await;
    let next = Envelope { attempt: 2, ..first.clone() };
    let later = Ending::Later { retry: true, delay: Duration::from_millis(500), next: &next };
    let items = [("attempt", b"2".to_vec()), ("error", b"boom".to_vec())];
    assert_eq!(p.end(Lane::Normal, "w1", &run(&entry, 1, "a"), &later, &items).await.expect("retry"), Written::Done);
    let record = p.record("a").await.expect("record").expect("a record");
    assert_eq!((record.state, record.attempt, record.error.as_deref()), (JobState::Retrying, 2, Some("boom")));
    assert_eq!(field_of(&p.delayed_fields("a").await.expect("fields"), "attempt"), Some(&b"2"[..]));
    assert_eq!(p.stats().await.expect("stats").length, 0);
    assert_eq!(p.records(JobState::Retrying, 0, 10).await.expect("records").0.len(), 1);

    p.advance(Duration::from_secs(1));
    assert_eq!(p.promote(10).await.expect("promote"), 1);
    let got = read(&p, "w1", 1).await;
    let (entry, fields) = &got[0].1;
    assert_eq!(Envelope::from_fields(fields).expect("envelope").attempt, 2);
    let parked_fields = [(b"reason".to_vec(), b"exhausted".to_vec()), (b"raw:id".to_vec(), b"a".to_vec())];
    let parked = Ending::Parked { fields: &parked_fields };
    let items = [("reason", b"exhausted".to_vec()), ("error", b"boom".to_vec())];
    assert_eq!(p.end(Lane::Normal, "w1", &run(entry, 1, "a"), &parked, &items).await.expect("park"), Written::Done);
    let record = p.record("a").await.expect("record").expect("a record");
    assert_eq!(record.state, JobState::Parked);
    assert_eq!(record.park_reason, Some(crate::error::ParkReason::Exhausted));
    assert!(record.finished_at.is_some());
    assert_eq!(p.parked_range("-", "+", 10).await.expect("parked").len(), 1);
    assert_eq!(ended.next().await.as_deref(), Some("a"));
}

#[tokio::test]
async fn the_parked_stream_keeps_its_cap_and_entries_are_re_driven() {
    let p = partition();
    let mut parked_ids = Vec::new();
    for i in 0..5 {
        let job = Envelope { attempt: 3, ..env(&format!("j{i}")) };
        let entry = push(&p, &job).await;
        read(&p, "w1", 1).await;
        let mut fields = vec![(b"reason".to_vec(), b"rejected".to_vec())];
        fields
            .extend(crate::memory::state::entry_fields(&job).into_iter().map(|(k, v)| ([b"raw:", &k[..]].concat(), v)));
        let ending = Ending::Parked { fields: &fields };
        p.end(Lane::Normal, "w1", &run(&entry, 1, &job.id), &ending, &[]).await.expect("park");
        parked_ids.push(p.parked_newest(None, 1).await.expect("newest")[0].0.clone());
    }
    let stats = p.stats().await.expect("stats");
    assert_eq!((stats.parked, stats.parked_dropped), (3, 2), "the oldest two dropped");
    let newest = p.parked_newest(None, 2).await.expect("newest");
    assert_eq!(newest.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [&parked_ids[4], &parked_ids[3]]);
    let older = p.parked_newest(Some((&parked_ids[3], false)), 10).await.expect("older");
    assert_eq!(older.len(), 1);

    let entry = p.redrive(&parked_ids[4], "raw:", Some("j4")).await.expect("redrive").expect("an entry");
    let record = p.record("j4").await.expect("record").expect("a record");
    assert_eq!((record.state, record.attempt, record.finished_at), (JobState::Queued, 1, None));
    assert_eq!(record.entry_id.as_deref(), Some(entry.as_str()));
    let fields = p.stream_entry(Lane::Normal, &entry).await.expect("entry").expect("fields");
    assert_eq!(Envelope::from_fields(&fields).expect("envelope").attempt, 1, "the attempt reset");
    assert_eq!(p.redrive(&parked_ids[4], "raw:", Some("j4")).await.expect("again"), None);
    assert!(p.state_page("parked", None, 10).await.expect("page").iter().all(|(m, _)| m != "j4"));
}

#[tokio::test]
async fn a_unique_key_answers_its_holder_until_the_job_ends() {
    let p = partition();
    let a = Envelope { unique: Some("report".to_owned()), ..env("a") };
    let b = Envelope { unique: Some("report".to_owned()), ..env("b") };
    let entry = push(&p, &a).await;
    assert_eq!(p.push(&b, Duration::ZERO).await.expect("push"), PushAnswer::Held { holder: "a".to_owned() });
    assert_eq!(
        p.push_delayed(&b, Duration::ZERO, 0, 10).await.expect("push"),
        PushAnswer::Held { holder: "a".to_owned() }
    );
    assert_eq!(p.push_many(&[b.clone(), env("c")], Duration::ZERO).await.expect("push").len(), 2);
    assert_eq!(p.record("b").await.expect("record"), None, "nothing written");
    read(&p, "w1", 1).await;
    let mut run = done(&entry, 1, "a");
    run.unique = Some("report".to_owned());
    p.ack(Lane::Normal, "w1", &[run]).await.expect("ack");
    assert!(matches!(p.push(&b, Duration::ZERO).await.expect("push"), PushAnswer::Added { .. }), "released at the end");
    let c = Envelope { unique: Some("report".to_owned()), ..env("c2") };
    assert_eq!(p.push(&c, Duration::from_secs(60)).await.expect("push"), PushAnswer::Held { holder: "b".to_owned() });
    assert_eq!(p.cancel("b").await.expect("cancel"), CancelOutcome::Removed);
    assert!(
        matches!(p.push(&c, Duration::ZERO).await.expect("push"), PushAnswer::Added { .. }),
        "released by the cancel"
    );
}

#[tokio::test]
async fn a_unique_key_expires_after_its_lifetime() {
    let p = partition();
    let a = Envelope { unique: Some("k".to_owned()), ..env("a") };
    let b = Envelope { unique: Some("k".to_owned()), ..env("b") };
    push(&p, &a).await;
    assert_eq!(p.push(&b, Duration::from_secs(1)).await.expect("push"), PushAnswer::Held { holder: "a".to_owned() });
    p.advance(Duration::from_secs(25 * 3600));
    assert!(
        matches!(p.push(&b, Duration::ZERO).await.expect("push"), PushAnswer::Added { .. }),
        "a day without a lifetime"
    );
}

#[tokio::test]
async fn cancel_removes_waiting_jobs_and_flags_running_ones() {
    let p = partition();
    let mut ended = p.finished().await.expect("finished");
    push(&p, &env("queued")).await;
    assert_eq!(p.cancel("queued").await.expect("cancel"), CancelOutcome::Removed);
    assert_eq!(p.stats().await.expect("stats").length, 0, "its entry is gone");
    let record = p.record("queued").await.expect("record").expect("a record");
    assert!(record.state == JobState::Cancelled && record.cancel_requested && record.finished_at.is_some());
    assert_eq!(ended.next().await.as_deref(), Some("queued"));
    assert_eq!(p.cancel("queued").await.expect("cancel"), CancelOutcome::AlreadyEnded(JobState::Cancelled));

    assert!(!p.push_delayed(&env("delayed"), Duration::ZERO, 0, 60_000).await.expect("push").is_held());
    assert_eq!(p.cancel("delayed").await.expect("cancel"), CancelOutcome::Removed);
    assert_eq!(p.stats().await.expect("stats").delayed, 0);
    assert!(p.delayed_fields("delayed").await.expect("fields").is_empty());

    // Delivered, not started: flagged, and its start is told.
    let entry = push(&p, &env("delivered")).await;
    read(&p, "w1", 1).await;
    assert_eq!(p.cancel("delivered").await.expect("cancel"), CancelOutcome::Requested);
    let mark = crate::backend::MarkRun {
        entry_id: entry.clone(),
        token: 1,
        job_id: "delivered".to_owned(),
        attempt: 1,
        started_ms: 1,
    };
    assert_eq!(p.mark(Lane::Normal, "w1", &[mark]).await.expect("mark"), [crate::backend::Marked::CancelRequested]);
    assert_eq!(state(&p, "delivered").await, Some(JobState::Queued));
    assert_eq!(
        p.renew(Lane::Normal, "w1", &[(&entry, 1, "delivered")]).await.expect("renew"),
        [crate::backend::Renewed::CancelRequested]
    );
    let ending = Ending::Cancelled;
    assert_eq!(
        p.end(Lane::Normal, "w1", &run(&entry, 1, "delivered"), &ending, &[]).await.expect("end"),
        Written::Done
    );
    assert_eq!(state(&p, "delivered").await, Some(JobState::Cancelled));
    assert_eq!(p.cancel("nobody").await.expect("cancel"), CancelOutcome::Unknown);
}

#[tokio::test]
async fn ended_records_expire_and_their_ids_are_trimmed() {
    let p = super::MemoryPartition::new(crate::QueueConfig::new("t").record_ttl(Duration::from_secs(1)).retention());
    let entry = push(&p, &env("a")).await;
    read(&p, "w1", 1).await;
    p.ack(Lane::Normal, "w1", &[done(&entry, 1, "a")]).await.expect("ack");
    assert_eq!(p.trim_ended().await.expect("trim"), 0);
    p.advance(Duration::from_millis(2500));
    assert_eq!(p.record("a").await.expect("record"), None);
    assert_eq!(p.trim_ended().await.expect("trim"), 1);
    assert_eq!(p.state_counts().await.expect("counts").done, 0);
}

#[tokio::test]
async fn done_records_beyond_the_newest_go_unless_marked_to_stay() {
    let config = crate::QueueConfig::new("t").keep_done(crate::Keep::newest(2));
    let p = super::MemoryPartition::new(config.retention());
    for id in ["a", "b", "c", "d"] {
        let entry = push(&p, &env(id)).await;
        read(&p, "w1", 1).await;
        if id == "a" {
            assert!(p.keep_waited("a").await.expect("mark"), "a waiter marks a live record");
        }
        p.ack(Lane::Normal, "w1", &[done(&entry, 1, id)]).await.expect("ack");
        p.advance(Duration::from_millis(5));
    }
    let (listed, total) = p.records(JobState::Done, 0, 10).await.expect("list");
    assert_eq!((listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), total), (vec!["c", "d"], 2));
    assert_eq!(p.record("b").await.expect("record"), None, "beyond the newest two");
    assert_eq!(state(&p, "a").await, Some(JobState::Done), "the waited-for record outlives the count");
    p.advance(Duration::from_secs(601));
    assert_eq!(p.record("a").await.expect("record"), None, "and goes after keep_waited");
    assert!(!p.keep_waited("b").await.expect("mark"), "no record, nothing to mark");
}
