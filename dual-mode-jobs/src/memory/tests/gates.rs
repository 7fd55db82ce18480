//! Rate limits, rate-key pauses and key concurrency.

use std::time::Duration;

use super::{env, partition};
use crate::backend::{Backend, Gate, Passed};
use crate::limit::Bucket;

/// A bucket of one start per second, no burst.
fn per_second() -> Bucket {
    Bucket::new("queue".to_owned(), crate::RateLimit::per_second(1))
}

fn gate(job: &str, buckets: Vec<Bucket>) -> Gate {
    Gate { job_id: job.to_owned(), buckets, ..Gate::default() }
}

/// A job of rate key `key` with `slots` slots.
fn keyed(job: &str, key: &str, slots: u32) -> Gate {
    Gate { job_id: job.to_owned(), rate_key: Some(key.to_owned()), slots: Some(slots), ..Gate::default() }
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_rate_limit_reserves_the_next_start() {
    let p = partition();
    let passed = p.gate(&[gate("a", vec![per_second()]), gate("b", vec![per_second()])], LEASE).await.expect("gate");
    assert_eq!(passed[0], Passed::Start);
    let Passed::Wait(wait) = passed[1] else { panic!("b must wait, got {:?}", passed[1]) };
    assert!((Duration::from_millis(990)..=Duration::from_secs(1)).contains(&wait), "{wait:?}");
    // b's start is reserved: it goes ahead without drawing again, and c waits after it.
    let b = Gate { reserved: true, ..gate("b", vec![per_second()]) };
    assert_eq!(p.gate(&[b], LEASE).await.expect("gate"), [Passed::Start]);
    let Passed::Wait(wait) = p.gate(&[gate("c", vec![per_second()])], LEASE).await.expect("gate")[0] else {
        panic!("c must wait");
    };
    assert!(wait > Duration::from_millis(1900), "{wait:?}");
    p.advance(Duration::from_secs(3));
    assert_eq!(p.gate(&[gate("d", vec![per_second()])], LEASE).await.expect("gate"), [Passed::Start]);
}

#[tokio::test]
async fn a_burst_lets_starts_through_at_once() {
    let p = partition();
    let burst = Bucket::new("type:mail".to_owned(), crate::RateLimit::per_second(10).burst(3));
    let gates: Vec<Gate> = (0..4).map(|i| gate(&format!("j{i}"), vec![burst.clone()])).collect();
    let passed = p.gate(&gates, LEASE).await.expect("gate");
    assert_eq!(passed[..3], [Passed::Start; 3]);
    assert!(matches!(passed[3], Passed::Wait(_)), "{passed:?}");
}

#[tokio::test]
async fn a_paused_rate_key_delays_even_a_reserved_start() {
    let p = partition();
    p.pause_rate_key("region:1", Duration::from_secs(5)).await.expect("pause");
    p.pause_rate_key("region:1", Duration::from_secs(1)).await.expect("a shorter pause");
    let job = Gate { rate_key: Some("region:1".to_owned()), reserved: true, ..gate("a", Vec::new()) };
    let Passed::Wait(wait) = p.gate(std::slice::from_ref(&job), LEASE).await.expect("gate")[0] else {
        panic!("paused")
    };
    assert!(wait > Duration::from_secs(4), "the longer pause stays: {wait:?}");
    let other = Gate { rate_key: Some("region:2".to_owned()), ..gate("b", Vec::new()) };
    assert_eq!(p.gate(&[other], LEASE).await.expect("gate"), [Passed::Start]);
    p.advance(Duration::from_secs(6));
    assert_eq!(p.gate(&[job], LEASE).await.expect("gate"), [Passed::Start]);
}

#[tokio::test]
async fn key_concurrency_gives_a_slot_or_makes_a_waiter_woken_by_the_release() {
    let p = partition();
    let passed = p.gate(&[keyed("a", "k", 1), keyed("b", "k", 1), keyed("c", "k", 1)], LEASE).await.expect("gate");
    assert_eq!(passed, [Passed::Start, Passed::NoSlot, Passed::NoSlot]);
    assert_eq!(p.gate(&[keyed("a", "k", 1)], LEASE).await.expect("gate"), [Passed::Start], "a holds it already");
    // The waiters wait in the delayed set; the release wakes the oldest, b.
    for id in ["b", "c"] {
        assert!(!p.push_delayed(&env(id), Duration::ZERO, 0, 60_000).await.expect("push").is_held());
    }
    p.release_slot("k", "a").await.expect("release");
    assert_eq!(p.promote(10).await.expect("promote"), 1);
    assert_eq!(p.record("b").await.expect("record").expect("b").state, crate::record::JobState::Queued);
    assert_eq!(p.gate(&[keyed("b", "k", 1)], LEASE).await.expect("gate"), [Passed::Start]);
    // Across partitions: the waiter is taken off, and woken where it waits.
    assert_eq!(p.gate(&[keyed("d", "k", 1)], LEASE).await.expect("gate"), [Passed::NoSlot]);
    assert_eq!(p.release_slot_take("k", "b").await.expect("release"), Some("c".to_owned()));
    assert!(p.wake("c").await.expect("wake"));
    assert!(!p.wake("c").await.expect("wake"), "due already");
    assert!(!p.wake("nobody").await.expect("wake"));
}

#[tokio::test]
async fn a_slot_expires_with_its_lease_unless_renewed() {
    let p = partition();
    let lease = Duration::from_secs(2);
    assert_eq!(p.gate(&[keyed("a", "k", 1)], lease).await.expect("gate"), [Passed::Start]);
    p.advance(Duration::from_millis(1500));
    p.renew_slots(&[("k", "a")], lease).await.expect("renew");
    p.advance(Duration::from_millis(1500));
    assert_eq!(p.gate(&[keyed("b", "k", 1)], lease).await.expect("gate"), [Passed::NoSlot], "renewed");
    p.advance(Duration::from_secs(1));
    assert_eq!(p.gate(&[keyed("b", "k", 1)], lease).await.expect("gate"), [Passed::Start], "expired");
}

/// Reserved starts that come back late together (their workers had no free slot) start only
/// as far as the window of actual starts has room; the others wait, keeping their reservation.
#[tokio::test]
async fn late_reserved_starts_wait_for_room_in_the_window() {
    let p = partition();
    // 2 a second, burst 1: at most 3 starts in any second.
    let buckets = || vec![Bucket::new("key:k".to_owned(), crate::RateLimit::per_second(2))];
    let gates: Vec<Gate> = (0..6).map(|i| gate(&format!("j{i}"), buckets())).collect();
    let passed = p.gate(&gates, LEASE).await.expect("gate");
    assert_eq!(passed[0], Passed::Start);
    assert!(passed[1..].iter().all(|p| matches!(p, Passed::Wait(_))), "{passed:?}");
    p.advance(Duration::from_secs(5));
    let late: Vec<Gate> = (1..6).map(|i| Gate { reserved: true, ..gate(&format!("j{i}"), buckets()) }).collect();
    let passed = p.gate(&late, LEASE).await.expect("gate");
    assert_eq!(passed[..3], [Passed::Start; 3], "{passed:?}");
    for waits in &passed[3..] {
        let Passed::Wait(wait) = *waits else { panic!("{passed:?}") };
        assert!((Duration::from_millis(990)..=Duration::from_secs(1)).contains(&wait), "{wait:?}");
    }
}
