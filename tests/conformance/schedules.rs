//! Schedules: ticks enqueued once by their UTC instant whatever the number of schedulers,
//! catch-up, pause and resume from any handle, listing, and unique schedules.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dual_mode::jobs::{
    JobError, JobState, Lane, PushOptions, Queue, QueueConfig, Schedule, Scheduler, SchedulerConfig, Worker,
    WorkerConfig, handler_fn,
};

use crate::cron_support::{every, ticks, utc};
use crate::harness::{Store, queued, queued_ticks, start, stop, tick_ms, unique, wait_for, wait_state};

cases! {
    ticks_across_a_daylight_saving_change_are_enqueued_once_by_their_utc_instant,
    a_scheduler_catches_up_ticks_missed_while_all_were_down,
    a_paused_schedule_enqueues_nothing_on_any_scheduler_and_skips_its_missed_ticks,
    schedules_are_listed_with_their_zone_state_and_next_tick,
    a_catch_up_after_a_resume_does_not_reach_back_into_the_pause,
    a_unique_schedule_skips_ticks_while_its_last_job_is_unfinished_and_keeps_its_lane,
}

fn now_secs() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("secs")
}

fn ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

/// The ticks (ms) of schedule `name`'s queued jobs, in queue order.
async fn ticks_of(q: &Queue, name: &str) -> Vec<i64> {
    let prefix = format!("sched:{name}:");
    queued(q).await.iter().filter(|r| r.idempotency_key.starts_with(&prefix)).map(tick_ms).collect()
}

async fn ticks_across_a_daylight_saving_change_are_enqueued_once_by_their_utc_instant(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("dst"))).await;
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
    assert_eq!(queued_ticks(&q).await, want);
    assert_eq!(a.last_tick(&hourly).await.expect("last"), day.last().copied());
}

async fn a_scheduler_catches_up_ticks_missed_while_all_were_down(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("catchup"))).await;
    let schedule = Schedule::new("every-second", "* * * * * *", "Tick", 1, &()).expect("schedule");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new().catch_up(true));
    let now = now_secs();
    // The last tick anyone enqueued was 6 s ago.
    assert!(scheduler.enqueue_tick(&schedule, now - 6).await.expect("tick").is_some());
    assert!(scheduler.enqueue_tick(&schedule, now - 6).await.expect("tick").is_none(), "a tick is enqueued once");
    assert_eq!(scheduler.last_tick(&schedule).await.expect("last"), Some(now - 6));
    let scheduler = scheduler.schedule(schedule);
    let enqueued = scheduler.run(tokio::time::sleep(Duration::from_millis(100))).await.expect("run");
    assert!(enqueued >= 5, "caught up {enqueued} ticks");
    let ticks = queued_ticks(&q).await;
    let expected: Vec<i64> = (now - 6..now - 6 + i64::try_from(ticks.len()).expect("len")).map(|s| s * 1000).collect();
    assert_eq!(ticks, expected, "every second from the last tick on, once");
}

/// Two schedulers run `beat` and `witness`, both every second; `beat` is paused through one
/// handle and resumed through another. The witness's ticks show the schedulers at work while
/// `beat` is paused.
async fn a_paused_schedule_enqueues_nothing_on_any_scheduler_and_skips_its_missed_ticks(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("pause"))).await;
    let every_second = |name: &str| Schedule::new(name, "* * * * * *", "Tick", 1, &()).expect("schedule");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = |scheduler: Scheduler| {
        let mut stop = stop_rx.clone();
        let scheduler = scheduler.schedule(every_second("beat")).schedule(every_second("witness"));
        tokio::spawn(scheduler.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let first = run(Scheduler::new(q.clone(), SchedulerConfig::new()));
    let second = run(Scheduler::new(q.clone(), SchedulerConfig::new()));
    wait_for(Duration::from_secs(5), "a tick", async || (!ticks_of(&q, "beat").await.is_empty()).then_some(())).await;

    // Paused through the queue handle of one process...
    assert!(q.pause_schedule("beat").await.expect("pause"));
    assert!(!q.pause_schedule("beat").await.expect("pause again"), "paused already");
    let paused_at = ms(SystemTime::now());
    let before = ticks_of(&q, "beat").await;
    assert!(before.iter().all(|t| *t <= paused_at), "no tick after the pause: {before:?} > {paused_at}");
    let listed = q.schedules().await.expect("list");
    let beat = listed.iter().find(|s| s.name == "beat").expect("beat listed");
    assert!(beat.paused_since.is_some(), "{listed:?}");
    // The witness's second tick after the pause comes a second after `beat`'s first would have.
    wait_for(Duration::from_secs(5), "two witness ticks after the pause", async || {
        let late = ticks_of(&q, "witness").await.into_iter().filter(|t| *t > paused_at).count();
        (late >= 2).then_some(())
    })
    .await;
    assert_eq!(ticks_of(&q, "beat").await, before, "nothing enqueued while paused");

    // ...and resumed through a scheduler of another.
    let other = Scheduler::new(store.other_handle(&q).await, SchedulerConfig::new());
    let resumed_at = ms(SystemTime::now());
    assert!(other.resume("beat").await.expect("resume"));
    assert!(!other.resume("beat").await.expect("resume again"), "running already");
    wait_for(Duration::from_secs(5), "two ticks after the resume", async || {
        (ticks_of(&q, "beat").await.len() >= before.len() + 2).then_some(())
    })
    .await;
    let _ = stop_tx.send(true);
    let enqueued = first.await.expect("join").expect("run") + second.await.expect("join").expect("run");

    let all = queued(&q).await;
    assert_eq!(u64::try_from(all.len()).expect("len"), enqueued, "the schedulers' counts add up to the queue");
    let keys: HashSet<&str> = all.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), all.len(), "each tick once");
    let beat = ticks_of(&q, "beat").await;
    let mut after = beat[before.len()..].to_vec();
    after.sort_unstable();
    // The ticks missed while paused are skipped, not caught up: the first tick after the
    // resume is the first second after it, and they go on every second.
    assert!(after[0] > resumed_at - 1000, "{after:?} resumed at {resumed_at}");
    assert_eq!(after, every(after[0], after[after.len() - 1], 1000));
}

async fn schedules_are_listed_with_their_zone_state_and_next_tick(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("list"))).await;
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

async fn a_catch_up_after_a_resume_does_not_reach_back_into_the_pause(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("resume-catchup"))).await;
    let schedule = Schedule::new("every-second", "* * * * * *", "Tick", 1, &()).expect("schedule");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new().catch_up(true));
    let now = now_secs();
    // The last tick was 6 s ago; then the schedule was paused, and resumed just now.
    assert!(scheduler.enqueue_tick(&schedule, now - 6).await.expect("tick").is_some());
    assert!(scheduler.pause("every-second").await.expect("pause"));
    let resumed_at = ms(SystemTime::now());
    assert!(scheduler.resume("every-second").await.expect("resume"));
    let enqueued = scheduler.schedule(schedule).run(tokio::time::sleep(Duration::from_millis(100))).await.expect("run");
    let ticks = queued_ticks(&q).await;
    assert_eq!(u64::try_from(ticks.len()).expect("len"), enqueued + 1);
    assert!(ticks[1..].iter().all(|t| *t >= resumed_at / 1000 * 1000), "{ticks:?} resumed at {resumed_at}");
}

async fn a_unique_schedule_skips_ticks_while_its_last_job_is_unfinished_and_keeps_its_lane(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("no-overlap"))).await;
    let options = PushOptions::new().lane(Lane::High).unique("rollup", Duration::from_secs(60));
    let schedule = Schedule::new("rollup", "* * * * *", "Rollup", 1, &()).expect("schedule");
    let schedule = schedule.push_options(options).expect("options");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new());
    let t0 = now_secs() / 60 * 60;

    let first = scheduler.enqueue_tick(&schedule, t0).await.expect("tick").expect("enqueued");
    let listed = queued(&q).await;
    let entries: Vec<(Option<&str>, Lane)> = listed.iter().map(|r| (r.entry_id.as_deref(), r.lane)).collect();
    assert_eq!(entries, [(Some(first.as_str()), Lane::High)], "the tick's job is the one job, in the high lane");
    assert_eq!(listed[0].unique_key.as_deref(), Some("rollup"));
    // The next tick finds the key held: nothing enqueued, the tick marked on every scheduler.
    assert_eq!(scheduler.enqueue_tick(&schedule, t0 + 60).await.expect("tick"), None);
    assert_eq!(q.stats().await.expect("stats").length, 1);
    assert_eq!(scheduler.last_tick(&schedule).await.expect("last"), Some(t0 + 60));

    // Once the job ran, the key is free again.
    let (started, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let w = start(Worker::new(q.clone(), WorkerConfig::new().concurrency(1).block(Duration::from_millis(100))).handle(
        "Rollup",
        handler_fn(move |job| {
            let _ = started.send(job.id().to_owned());
            async { Ok::<_, JobError>(()) }
        }),
    ));
    let id = ran.recv().await.expect("ran");
    wait_state(&q, &[&id], JobState::Done).await;
    stop(w).await;
    assert!(
        scheduler.enqueue_tick(&schedule, t0 + 120).await.expect("tick").is_some(),
        "enqueued once the key was free"
    );

    let bad = Schedule::new("bad", "* * * * *", "Rollup", 1, &()).expect("schedule");
    let e = bad.push_options(PushOptions::new().delay(Duration::from_secs(1))).expect_err("refused");
    assert!(e.to_string().contains("\"bad\"") && e.to_string().contains("delay"), "{e}");
}
