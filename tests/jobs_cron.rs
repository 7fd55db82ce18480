//! Cron in time zones: ticks around the 2026 daylight-saving changes in `Europe/Berlin` and
//! `America/New_York`, the `L`, `#` and `W` extensions, and, against a real redis-server, ticks
//! deduped by their UTC instant, pausing and resuming across schedulers, and listing.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::RedisServer;
use dual_mode::jobs::{Cron, Queue, QueueConfig, Schedule, Scheduler, SchedulerConfig};
use jobs_support::{con, queue, unique, wait_for};

/// Unix seconds of `yyyy-mm-ddThh:mm:00Z`.
fn utc(date: &str, hm: &str) -> i64 {
    let num = |s: &str| s.parse::<i64>().expect("a number");
    let (year, month, day) = (num(&date[0..4]), num(&date[5..7]), num(&date[8..10]));
    let (hour, minute) = (num(&hm[0..2]), num(&hm[3..5]));
    // Days from civil (H. Hinnant).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + hour * 3600 + minute * 60
}

/// The ticks of `cron` in `zone` strictly after `from` and at or before `to`.
fn ticks(cron: &str, zone: &str, from: i64, to: i64) -> Vec<i64> {
    let cron = Cron::parse_in(cron, zone).expect("valid");
    let mut out = Vec::new();
    let mut t = from;
    while let Some(next) = cron.next_after_secs(t).filter(|n| *n <= to) {
        out.push(next);
        t = next;
    }
    out
}

/// Every `step` seconds from `first` to `last`, both included.
fn every(first: i64, last: i64, step: i64) -> Vec<i64> {
    (0..=(last - first) / step).map(|i| first + i * step).collect()
}

// Berlin: 2026-03-29 02:00 CET becomes 03:00 CEST at 01:00 UTC; 2026-10-25 03:00 CEST becomes
// 02:00 CET at 01:00 UTC. New York: 2026-03-08 02:00 EST becomes 03:00 EDT at 07:00 UTC;
// 2026-11-01 02:00 EDT becomes 01:00 EST at 06:00 UTC.

#[test]
fn a_fixed_time_in_the_skipped_hour_runs_once_when_the_clock_jumps() {
    // 02:30 does not exist on the spring-forward day: the tick runs at 03:00 local time, the
    // first instant after the gap, once; the days around it tick at 02:30.
    let berlin = ticks("30 2 * * *", "Europe/Berlin", utc("2026-03-27", "12:00"), utc("2026-03-31", "12:00"));
    assert_eq!(
        berlin,
        [
            utc("2026-03-28", "01:30"), // 02:30 CET
            utc("2026-03-29", "01:00"), // 03:00 CEST
            utc("2026-03-30", "00:30"), // 02:30 CEST
            utc("2026-03-31", "00:30"),
        ]
    );
    let new_york = ticks("30 2 * * *", "America/New_York", utc("2026-03-07", "00:00"), utc("2026-03-09", "23:00"));
    assert_eq!(new_york, [utc("2026-03-07", "07:30"), utc("2026-03-08", "07:00"), utc("2026-03-09", "06:30")]);
    // Several fixed times in one gap still give one tick each, at the same instant: the
    // dedupe key, named by that instant, makes them one job. `0,30 2` is no fixed time (two
    // minutes): an interval job, whose ticks in the gap do not exist.
    let interval = ticks("0,30 2 * * *", "Europe/Berlin", utc("2026-03-28", "12:00"), utc("2026-03-30", "12:00"));
    assert_eq!(interval, [utc("2026-03-30", "00:00"), utc("2026-03-30", "00:30")]);
}

#[test]
fn a_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() {
    // 01:30 happens twice in New York on 2026-11-01: at 05:30 UTC (EDT) and 06:30 UTC (EST).
    // The tick runs at the first, as Vixie cron does: it is 24 h after the day before's, and
    // the second 01:30 is the same wall-clock tick again.
    let new_york = ticks("30 1 * * *", "America/New_York", utc("2026-10-31", "00:00"), utc("2026-11-02", "23:00"));
    assert_eq!(new_york, [utc("2026-10-31", "05:30"), utc("2026-11-01", "05:30"), utc("2026-11-02", "06:30")]);
    let berlin = ticks("30 2 * * *", "Europe/Berlin", utc("2026-10-24", "12:00"), utc("2026-10-26", "12:00"));
    assert_eq!(berlin, [utc("2026-10-25", "00:30"), utc("2026-10-26", "01:30")]);
    // Asked from inside either pass, the answer is the same: the first pass's tick if it is
    // still ahead, else the next day's, never the second 02:30.
    let daily = Cron::parse_in("30 2 * * *", "Europe/Berlin").expect("valid");
    assert_eq!(daily.next_after_secs(utc("2026-10-25", "00:10")), Some(utc("2026-10-25", "00:30")));
    assert_eq!(daily.next_after_secs(utc("2026-10-25", "00:40")), Some(utc("2026-10-26", "01:30")));
    assert_eq!(daily.next_after_secs(utc("2026-10-25", "01:10")), Some(utc("2026-10-26", "01:30")));
}

#[test]
fn an_hourly_schedule_ticks_every_real_hour_across_both_changes() {
    for (zone, spring_day, fall_day) in
        [("Europe/Berlin", "2026-03-29", "2026-10-25"), ("America/New_York", "2026-03-08", "2026-11-01")]
    {
        let offset_hours = |date: &str| -> i64 {
            // Local midnight of the day before the change, as a UTC hour.
            let cron = Cron::parse_in("0 0 * * *", zone).expect("valid");
            let midnight = cron.next_after_secs(utc(date, "00:00") - 86_400).expect("a midnight");
            midnight - (utc(date, "00:00") - 86_400)
        };
        for (day, hours) in [(spring_day, 23), (fall_day, 25)] {
            let start = utc(day, "00:00") + offset_hours(day);
            let got = ticks("0 * * * *", zone, start - 1, start + hours * 3600 - 1);
            assert_eq!(got, every(start, start + (hours - 1) * 3600, 3600), "{zone} {day}");
            assert_eq!(got.len(), usize::try_from(hours).expect("hours"), "{zone} {day}");
            // `@hourly` is the same expression.
            assert_eq!(ticks("@hourly", zone, start - 1, start + hours * 3600 - 1), got, "{zone} {day}");
        }
    }
    // Interval ticks inside the repeated hour run in both passes.
    let half_hourly = ticks("*/30 2 * * *", "Europe/Berlin", utc("2026-10-24", "12:00"), utc("2026-10-25", "12:00"));
    assert_eq!(half_hourly, every(utc("2026-10-25", "00:00"), utc("2026-10-25", "01:30"), 1800));
}

#[test]
fn last_nth_and_nearest_weekday() {
    let first = |cron: &str, zone: &str, from: i64| Cron::parse_in(cron, zone).expect(cron).next_after_secs(from);
    // The last day of February, in a common and a leap year.
    assert_eq!(first("0 0 L * *", "UTC", utc("2026-02-01", "00:00")), Some(utc("2026-02-28", "00:00")));
    assert_eq!(first("0 0 L * *", "UTC", utc("2028-02-01", "00:00")), Some(utc("2028-02-29", "00:00")));
    // In New York, 09:00 EST on the last day of February is 14:00 UTC.
    assert_eq!(first("0 9 L * *", "America/New_York", utc("2026-02-01", "00:00")), Some(utc("2026-02-28", "14:00")));
    // The second Friday of January 2026 (the 1st is a Thursday), by name and by number.
    assert_eq!(first("0 9 * * FRI#2", "UTC", utc("2026-01-01", "00:00")), Some(utc("2026-01-09", "09:00")));
    assert_eq!(first("0 9 * * 5#2", "UTC", utc("2026-01-01", "00:00")), Some(utc("2026-01-09", "09:00")));
    // The last Friday of January 2026.
    assert_eq!(first("0 9 * * 5L", "UTC", utc("2026-01-01", "00:00")), Some(utc("2026-01-30", "09:00")));
    // The weekday nearest the 15th: 2026-08-15 is a Saturday, so Friday the 14th.
    assert_eq!(first("0 9 15W * *", "UTC", utc("2026-08-01", "00:00")), Some(utc("2026-08-14", "09:00")));
    // The 2nd of August 2026 is a Sunday: Monday the 3rd.
    assert_eq!(first("0 9 2W * *", "UTC", utc("2026-07-15", "00:00")), Some(utc("2026-08-03", "09:00")));
    // Berlin in summer: 09:00 CEST on the second Friday of July 2026 (the 10th) is 07:00 UTC.
    assert_eq!(first("0 9 * * FRI#2", "Europe/Berlin", utc("2026-07-01", "00:00")), Some(utc("2026-07-10", "07:00")));
}

fn now_secs() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("secs")
}

fn ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

/// The tick (ms) of each entry in the stream, in stream order, from its idempotency key.
async fn stream_ticks(url: &str, q: &Queue) -> Vec<i64> {
    let mut c = con(url).await;
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(&q.keys().stream).arg("-").arg("+").query_async(&mut c).await.expect("xrange");
    entries
        .into_iter()
        .map(|(_, fields)| {
            let key = &fields.iter().find(|(k, _)| k == "key").expect("a key field").1;
            key.rsplit(':').next().and_then(|t| t.parse().ok()).expect("a tick")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_across_a_daylight_saving_change_are_enqueued_once_by_their_utc_instant() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("dst"))).await;
    let hourly = Schedule::new("hourly", "0 * * * *", "Tick", 1, &()).expect("schedule").in_zone("America/New_York");
    let hourly = hourly.expect("zone");
    // Two schedulers each enqueue every tick of the fall-back day they compute: the repeated
    // hour's two 01:00s are two instants, so two jobs; every tick is one job.
    let (a, b) = (Scheduler::new(q.clone(), SchedulerConfig::new()), Scheduler::new(q.clone(), SchedulerConfig::new()));
    let day = ticks("0 * * * *", "America/New_York", utc("2026-11-01", "04:00") - 1, utc("2026-11-02", "04:59"));
    assert_eq!(day.len(), 25);
    let mut enqueued = 0;
    for &tick in &day {
        for scheduler in [&a, &b] {
            enqueued += usize::from(scheduler.enqueue_tick(&hourly, tick).await.expect("tick").is_some());
        }
    }
    assert_eq!(enqueued, 25, "each tick once");
    let want: Vec<i64> = day.iter().map(|t| t * 1000).collect();
    assert_eq!(stream_ticks(&redis.url, &q).await, want);
    assert_eq!(a.last_tick(&hourly).await.expect("last"), day.last().copied());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_enqueues_nothing_on_any_scheduler_and_skips_its_missed_ticks() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("pause"))).await;
    let schedule = || Schedule::new("beat", "* * * * * *", "Tick", 1, &()).expect("schedule");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = |scheduler: Scheduler| {
        let mut stop = stop_rx.clone();
        tokio::spawn(scheduler.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let first = run(Scheduler::new(q.clone(), SchedulerConfig::new()).schedule(schedule()));
    let second = run(Scheduler::new(q.clone(), SchedulerConfig::new()).schedule(schedule()));
    wait_for(Duration::from_secs(5), "two ticks", async || {
        (stream_ticks(&redis.url, &q).await.len() >= 2).then_some(())
    })
    .await;

    // Paused through the queue handle of one process...
    assert!(q.pause_schedule("beat").await.expect("pause"));
    assert!(!q.pause_schedule("beat").await.expect("pause again"), "paused already");
    let paused_at = ms(SystemTime::now());
    let before = stream_ticks(&redis.url, &q).await;
    assert!(before.iter().all(|t| *t <= paused_at), "no tick after the pause: {before:?} > {paused_at}");
    let listed = q.schedules().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].paused_since.is_some(), "{listed:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stream_ticks(&redis.url, &q).await, before, "nothing enqueued while paused");

    // ...and resumed through a scheduler of another.
    let other = Scheduler::new(queue(&redis.url, QueueConfig::new(q.name())).await, SchedulerConfig::new());
    let resumed_at = ms(SystemTime::now());
    assert!(other.resume("beat").await.expect("resume"));
    assert!(!other.resume("beat").await.expect("resume again"), "running already");
    wait_for(Duration::from_secs(5), "two ticks after the resume", async || {
        (stream_ticks(&redis.url, &q).await.len() >= before.len() + 2).then_some(())
    })
    .await;
    let _ = stop_tx.send(true);
    let enqueued = first.await.expect("join").expect("run") + second.await.expect("join").expect("run");

    let all = stream_ticks(&redis.url, &q).await;
    assert_eq!(u64::try_from(all.len()).expect("len"), enqueued, "the schedulers' counts add up to the stream");
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len(), "each tick once: {all:?}");
    let mut after = all[before.len()..].to_vec();
    after.sort_unstable();
    // The ticks missed while paused are skipped, not caught up: the first tick after the
    // resume is the first second after it, and they go on every second.
    assert!(after[0] > resumed_at - 1000, "{after:?} resumed at {resumed_at}");
    assert_eq!(after, every(after[0], after[after.len() - 1], 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_with_their_zone_state_and_next_tick() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("list"))).await;
    let daily = Schedule::new("berlin-daily", "30 2 * * *", "Report", 1, &()).expect("schedule");
    let daily = daily.in_zone("Europe/Berlin").expect("zone");
    let hourly = Schedule::new("hourly", "CRON_TZ=America/New_York @hourly", "Sync", 1, &()).expect("schedule");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new()).schedule(daily.clone()).schedule(hourly.clone());
    assert!(q.schedules().await.expect("list").is_empty(), "nothing registered yet");
    scheduler.register().await.expect("register");

    let before = SystemTime::now();
    let listed = q.schedules().await.expect("list");
    let after = SystemTime::now();
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["berlin-daily", "hourly"]);
    assert_eq!((listed[0].cron.zone(), listed[1].cron.zone()), ("Europe/Berlin", "America/New_York"));
    for (info, schedule) in listed.iter().zip([&daily, &hourly]) {
        let next = info.next_tick.expect("a next tick");
        // Computed at a moment between `before` and `after`.
        let lo = schedule.cron().next_after(before).expect("next");
        let hi = schedule.cron().next_after(after).expect("next");
        assert!(lo <= next && next <= hi, "{info:?}");
        assert!(next > before, "{info:?}");
        assert_eq!((info.paused_since, info.last_tick), (None, None), "{info:?}");
    }
    // An hourly tick is on the hour in UTC as well (New York's offset is whole hours).
    assert_eq!(ms(listed[1].next_tick.expect("next")) % 3_600_000, 0);

    // A paused schedule enqueues no tick, however it is asked, and says since when.
    assert!(scheduler.pause("hourly").await.expect("pause"));
    let tick = now_secs() / 3600 * 3600;
    assert_eq!(scheduler.enqueue_tick(&hourly, tick).await.expect("tick"), None);
    let listed = q.schedules().await.expect("list");
    assert!(listed[1].paused_since.is_some() && listed[0].paused_since.is_none(), "{listed:?}");
    assert_eq!(listed[1].last_tick, None);
    assert!(scheduler.resume("hourly").await.expect("resume"));
    assert!(scheduler.enqueue_tick(&hourly, tick).await.expect("tick").is_some(), "a resumed schedule ticks");
    let listed = q.schedules().await.expect("list");
    assert_eq!(listed[1].paused_since, None);
    assert_eq!(listed[1].last_tick.map(ms), Some(tick * 1000));

    // A schedule no scheduler runs any more is forgotten, with its state.
    assert!(scheduler.pause("berlin-daily").await.expect("pause"));
    assert!(q.forget_schedule("berlin-daily").await.expect("forget"));
    assert!(!q.forget_schedule("berlin-daily").await.expect("forget again"), "gone already");
    let names: Vec<String> = q.schedules().await.expect("list").into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["hourly"]);
    assert!(scheduler.pause("berlin-daily").await.expect("pause"), "its pause was forgotten too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_after_a_resume_does_not_reach_back_into_the_pause() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("resume-catchup"))).await;
    let schedule = Schedule::new("every-second", "* * * * * *", "Tick", 1, &()).expect("schedule");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new().catch_up(true));
    let now = now_secs();
    // The last tick was 6 s ago; then the schedule was paused, and resumed just now.
    assert!(scheduler.enqueue_tick(&schedule, now - 6).await.expect("tick").is_some());
    assert!(scheduler.pause("every-second").await.expect("pause"));
    let resumed_at = ms(SystemTime::now());
    assert!(scheduler.resume("every-second").await.expect("resume"));
    let enqueued = scheduler.schedule(schedule).run(tokio::time::sleep(Duration::from_millis(100))).await.expect("run");
    let ticks = stream_ticks(&redis.url, &q).await;
    assert_eq!(u64::try_from(ticks.len()).expect("len"), enqueued + 1);
    assert!(ticks[1..].iter().all(|t| *t >= resumed_at / 1000 * 1000), "{ticks:?} resumed at {resumed_at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_schedule_skips_ticks_while_its_last_job_is_unfinished_and_keeps_its_lane() {
    use dual_mode::jobs::{JobState, Lane, PushOptions, Worker, WorkerConfig, handler_fn};
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("no-overlap"))).await;
    let options = PushOptions::new().lane(Lane::High).unique("rollup", Duration::from_secs(60));
    let schedule = Schedule::new("rollup", "* * * * *", "Rollup", 1, &()).expect("schedule");
    let schedule = schedule.push_options(options).expect("options");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new());
    let t0 = now_secs() / 60 * 60;

    let first = scheduler.enqueue_tick(&schedule, t0).await.expect("tick").expect("enqueued");
    let mut c = con(&redis.url).await;
    let high: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(q.keys().lane_stream(Lane::High))
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .expect("xrange");
    let ids: Vec<&str> = high.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [first.as_str()], "the tick's job is the one entry of the high lane");
    // The next tick finds the key held: nothing enqueued, the tick marked on every scheduler.
    assert_eq!(scheduler.enqueue_tick(&schedule, t0 + 60).await.expect("tick"), None);
    assert_eq!(q.stats().await.expect("stats").length, 1);
    assert_eq!(scheduler.last_tick(&schedule).await.expect("last"), Some(t0 + 60));

    // Once the job ran, the key is free again.
    let (started, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let w = jobs_support::start(
        Worker::new(q.clone(), WorkerConfig::new().concurrency(1).block(Duration::from_millis(100))).handle(
            "Rollup",
            handler_fn(move |job| {
                let _ = started.send(job.id().to_owned());
                async { Ok::<_, dual_mode::jobs::JobError>(()) }
            }),
        ),
    );
    let id = ran.recv().await.expect("ran");
    jobs_support::wait_state(&q, &[&id], JobState::Done, Duration::from_secs(10)).await;
    jobs_support::stop(w).await;
    assert!(
        scheduler.enqueue_tick(&schedule, t0 + 120).await.expect("tick").is_some(),
        "enqueued once the key was free"
    );

    let bad = Schedule::new("bad", "* * * * *", "Rollup", 1, &()).expect("schedule");
    let e = bad.push_options(PushOptions::new().delay(Duration::from_secs(1))).expect_err("refused");
    assert!(e.to_string().contains("\"bad\"") && e.to_string().contains("delay"), "{e}");
}
