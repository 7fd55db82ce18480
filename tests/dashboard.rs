//! The dashboard over HTTP on 127.0.0.1, against a real redis-server and real workers: counts,
//! lists paged by cursor, a job's and a parked entry's page, escaping of what jobs carry, and
//! actions behind their CSRF token (refused without it, and in read-only mode).

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::time::Duration;

use common::RedisServer;
use dual_mode::jobs::dashboard::Dashboard;
use dual_mode::jobs::{
    CancelOutcome, JobError, JobInfo, JobState, Keep, PushOptions, Queue, QueueConfig, Schedule, Scheduler,
    SchedulerConfig, Worker, WorkerConfig, handler_fn, typed,
};
use jobs_support::{queue, start, stop, unique, wait_for, wait_state};

const MOUNT: &str = "/admin/jobs";

fn fast_worker() -> WorkerConfig {
    jobs_support::fast_worker(4).backoff(Duration::from_millis(50), Duration::from_millis(200))
}

/// A worker that runs `Ok` jobs, parks `Reject` jobs (a permanent error naming their payload)
/// and keeps `Slow` jobs running for as long as the payload says (ms), `concurrency` at once.
fn worker(q: &Queue, concurrency: usize) -> Worker {
    Worker::new(q.clone(), fast_worker().concurrency(concurrency))
        .handle("Ok", handler_fn(|_job: JobInfo| async { Ok(()) }))
        .handle(
            "Reject",
            typed(|v: serde_json::Value, _job: JobInfo| async move {
                Err::<(), _>(JobError::permanent(format!("rejected {v}")))
            }),
        )
        .handle(
            "Slow",
            typed(|ms: u64, job: JobInfo| async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = job.cancelled() => {}
                }
                Ok(())
            }),
        )
}

/// The dashboard of `q` (with `dashboard`'s settings) served under [`MOUNT`] on a free port.
struct Served {
    base: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(dashboard: Dashboard) -> Served {
    let app: axum::Router = axum::Router::new().nest(MOUNT, dashboard.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}{MOUNT}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    Served { base, http, task }
}

impl Served {
    /// `GET path`: its status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// `GET path`, which must answer 200.
    async fn page(&self, path: &str) -> String {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST path` with a form body: its status and `Location`.
    async fn post(&self, path: &str, form: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("POST");
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        (resp.status().as_u16(), location)
    }
}

/// The CSRF token of the first action form on a page.
fn token(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("an action form") + 19;
    page[start..].split('"').next().unwrap().to_owned()
}

/// The count a cell of the overview shows for `state` of queue `q`.
fn count(page: &str, q: &str, list: &str) -> u64 {
    let link = format!("{MOUNT}/queues/{q}/{list}\">");
    let at = page.find(&link).unwrap_or_else(|| panic!("no link {link} in {page}")) + link.len();
    page[at..].split('<').next().unwrap().parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_every_state_and_lists_show_jobs_with_their_workers() {
    let redis = RedisServer::start();
    let name = unique("dash-counts");
    let q = queue(&redis.url, QueueConfig::new(&name).max_attempts(1)).await;
    // One job at a time: while the slow one runs, the worker reads nothing more.
    let w = start(worker(&q, 1));
    let done = q.push("Ok", 1, &(), PushOptions::new()).await.unwrap();
    let parked = q.push("Reject", 1, &serde_json::json!({"n": 1}), PushOptions::new()).await.unwrap();
    wait_state(&q, &[&done.job_id], JobState::Done, Duration::from_secs(10)).await;
    wait_state(&q, &[&parked.job_id], JobState::Parked, Duration::from_secs(10)).await;
    let slow = q.push("Slow", 1, &10_000u64, PushOptions::new()).await.unwrap();
    wait_state(&q, &[&slow.job_id], JobState::Running, Duration::from_secs(10)).await;
    let cancelled = q.push("Ok", 1, &(), PushOptions::new().delay(Duration::from_secs(3600))).await.unwrap();
    assert_eq!(q.cancel(&cancelled.job_id).await.unwrap(), CancelOutcome::Removed);
    q.push("Ok", 1, &(), PushOptions::new().delay(Duration::from_secs(3600))).await.unwrap();
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(q.push("Ok", 1, &(), PushOptions::new()).await.unwrap().job_id);
    }
    q.pause().await.unwrap();

    let served = serve(Dashboard::new([q.clone()])).await;
    let overview = served.page("").await;
    assert_eq!(count(&overview, &name, "jobs?state=queued"), 3, "{overview}");
    assert_eq!(count(&overview, &name, "jobs?state=running"), 1);
    assert_eq!(count(&overview, &name, "jobs?state=delayed"), 1);
    assert_eq!(count(&overview, &name, "parked"), 1);
    assert_eq!(count(&overview, &name, "jobs?state=done"), 1);
    assert_eq!(count(&overview, &name, "jobs?state=cancelled"), 1);
    assert!(overview.contains("<span class=\"state paused\">paused</span>"), "{overview}");
    assert!(overview.contains("<svg class=\"plot\""), "{overview}");
    assert!(overview.contains("done 1</span>") && overview.contains("parked 1</span>"), "{overview}");

    // Running jobs with their workers; workers with their heartbeat.
    let consumer = q.workers().await.unwrap().into_iter().next().expect("a worker").name;
    let running = served.page(&format!("/queues/{name}/jobs?state=running")).await;
    assert!(running.contains(&slow.job_id) && running.contains(&consumer), "{running}");
    let queue_page = served.page(&format!("/queues/{name}")).await;
    assert!(queue_page.contains(&consumer) && queue_page.contains("live</span>"), "{queue_page}");
    let done_page = served.page(&format!("/queues/{name}/jobs?state=done")).await;
    assert!(done_page.contains(&done.job_id), "{done_page}");
    let ready = served.page(&format!("/queues/{name}/jobs?state=queued")).await;
    assert!(queued.iter().all(|id| ready.contains(id.as_str())), "{ready}");

    // A job's page: its record and payload; finding it by id.
    let job = served.page(&format!("/queues/{name}/jobs/{}", slow.job_id)).await;
    assert!(job.contains("<span class=\"state running\">running</span>") && job.contains(&consumer), "{job}");
    assert!(job.contains("<pre id=\"payload\">10000</pre>"), "{job}");
    let (status, _) = served.get(&format!("/find?id={}", slow.job_id)).await;
    assert_eq!(status, 303);
    assert_eq!(served.get("/queues/nope").await.0, 404);
    assert_eq!(served.get(&format!("/queues/{name}/jobs/not-a-job")).await.0, 404);
    assert_eq!(served.get(&format!("/queues/{name}/jobs?state=sleeping")).await.0, 400);
    // A cursor that names no place of the queue's lists is the request's fault too.
    assert_eq!(served.get(&format!("/queues/{name}/parked?before=not-a-cursor")).await.0, 400);
    assert_eq!(served.get(&format!("/queues/{name}/jobs?state=done&after=soon:{}", done.job_id)).await.0, 400);

    q.resume().await.unwrap();
    q.cancel(&slow.job_id).await.unwrap();
    stop(w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_cursor_through_every_entry_once() {
    let redis = RedisServer::start();
    for partitions in [1, 3] {
        lists_page_through(&redis, partitions).await;
    }
}

/// Pages of a queue of `partitions` partitions (the cursors of several name their partition).
async fn lists_page_through(redis: &RedisServer, partitions: u16) {
    let name = unique("dash-pages");
    let q = queue(&redis.url, QueueConfig::new(&name).partitions(partitions)).await;
    let mut delayed = Vec::new();
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    for i in 0..7u64 {
        // Two share each due time, so the cursor must break ties by id.
        let at = later + Duration::from_secs(i / 2);
        delayed.push((i / 2, q.push("Ok", 1, &i, PushOptions::new().not_before(at)).await.unwrap().job_id));
    }
    delayed.sort();
    let delayed: Vec<String> = delayed.into_iter().map(|(_, id)| id).collect();
    for i in 0..7u64 {
        q.push("Ok", 1, &i, PushOptions::new()).await.unwrap();
    }
    let served = serve(Dashboard::new([q.clone()]).page_size(3)).await;
    let overview = served.page(&format!("/queues/{name}")).await;
    assert_eq!(
        overview.contains(&format!("<p class=\"muted\" id=\"partitions\">{partitions} partitions</p>")),
        partitions > 1,
        "the queue's page names its partitions when it has several"
    );
    for (list, want) in [("jobs?state=delayed", 7), ("jobs?state=queued", 7)] {
        let mut seen = Vec::new();
        let mut path = format!("/queues/{name}/{list}");
        loop {
            let page = served.page(&path).await;
            for row in page.split("<tr><td class=\"mono\"><a href=\"").skip(1) {
                seen.push(row.split('"').next().unwrap().to_owned());
            }
            match page.split("id=\"next\" href=\"").nth(1) {
                Some(rest) => {
                    rest.split('"').next().unwrap().replace("&amp;", "&")[MOUNT.len()..].clone_into(&mut path);
                }
                None => break,
            }
        }
        let mut unique_seen = seen.clone();
        unique_seen.sort();
        unique_seen.dedup();
        assert_eq!((seen.len(), unique_seen.len()), (want, want), "{list}: {seen:?}");
    }
    let page = q.jobs_page(JobState::Delayed, None, 7).await.unwrap();
    assert_eq!(page.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), delayed, "by due time, then id");

    // A cursor whose job left the list meanwhile: the next page starts right after its place.
    let first = q.jobs_page(JobState::Delayed, None, 3).await.unwrap();
    assert_eq!(q.cancel(&delayed[2]).await.unwrap(), CancelOutcome::Removed);
    let next = q.jobs_page(JobState::Delayed, first.next.as_deref(), 3).await.unwrap();
    assert_eq!(next.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), delayed[3..6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_jobs_carry_renders_as_text() {
    let redis = RedisServer::start();
    for partitions in [1, 2] {
        renders_as_text(&redis, partitions).await;
    }
}

/// A job's and a parked entry's pages of a queue of `partitions` partitions (whose ids, with
/// several, end in their partition).
async fn renders_as_text(redis: &RedisServer, partitions: u16) {
    let name = unique("dash-escape");
    let q = queue(&redis.url, QueueConfig::new(&name).max_attempts(1).partitions(partitions)).await;
    let w = start(worker(&q, 4));
    let evil = serde_json::json!({"name": "<script>alert('x')</script>", "a": "\"><img src=x onerror=alert(1)>"});
    let pushed = q.push("Reject", 1, &evil, PushOptions::new()).await.unwrap();
    wait_state(&q, &[&pushed.job_id], JobState::Parked, Duration::from_secs(10)).await;
    stop(w).await;
    let parked_id = q.parked(1).await.unwrap()[0].parked_id.clone();

    let served = serve(Dashboard::new([q.clone()])).await;
    for path in [
        format!("/queues/{name}/parked"),
        format!("/queues/{name}/parked/{parked_id}"),
        format!("/queues/{name}/jobs/{}", pushed.job_id),
    ] {
        let page = served.page(&path).await;
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img src=x"), "{path}: {page}");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "{path}: {page}");
    }
    let entry = served.page(&format!("/queues/{name}/parked/{parked_id}")).await;
    assert!(entry.contains("<dd class=\"bad\" id=\"reason\">rejected</dd>"), "{entry}");
    let resp = served.http.get(format!("{}/queues/{name}/parked", served.base)).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_this_dashboards_token_and_are_refused_read_only() {
    let redis = RedisServer::start();
    let name = unique("dash-actions");
    let q = queue(&redis.url, QueueConfig::new(&name).max_attempts(1)).await;
    let w = start(worker(&q, 4));
    let first = q.push("Reject", 1, &1, PushOptions::new()).await.unwrap();
    let second = q.push("Reject", 1, &2, PushOptions::new()).await.unwrap();
    wait_state(&q, &[&first.job_id, &second.job_id], JobState::Parked, Duration::from_secs(10)).await;
    stop(w).await;
    let served = serve(Dashboard::new([q.clone()])).await;
    let list = served.page(&format!("/queues/{name}/parked")).await;
    let csrf = token(&list);
    let parked_id = q.parked(1).await.unwrap()[0].parked_id.clone();
    let redrive = format!("/queues/{name}/parked/{parked_id}/redrive");

    for (form, headers) in [
        (String::new(), vec![]),
        ("csrf=0123456789abcdef0123456789abcdef".to_owned(), vec![]),
        (format!("csrf={csrf}x"), vec![]),
        (format!("csrf={csrf}"), vec![("sec-fetch-site", "cross-site")]),
    ] {
        assert_eq!(served.post(&redrive, &form, &headers).await.0, 403, "{form} {headers:?}");
    }
    assert_eq!(q.stats().await.unwrap().parked, 2, "nothing re-driven");

    let (status, location) = served.post(&redrive, &format!("csrf={csrf}"), &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!((status, location.as_str()), (303, format!("{MOUNT}/queues/{name}/parked?done=redriven").as_str()));
    let after_one = q.stats().await.unwrap();
    assert_eq!((after_one.parked, after_one.length), (1, 1));
    let notice = served.page(&location[MOUNT.len()..]).await;
    assert!(notice.contains("Re-driven"), "{notice}");

    let (status, _) = served.post(&format!("/queues/{name}/parked/redrive-all"), &format!("csrf={csrf}"), &[]).await;
    assert_eq!(status, 303);
    let after_all = q.stats().await.unwrap();
    assert_eq!((after_all.parked, after_all.length), (0, 2));

    // Cancel, pause and resume a queue and a schedule.
    let later = q.push("Ok", 1, &(), PushOptions::new().delay(Duration::from_secs(3600))).await.unwrap();
    let (status, _) =
        served.post(&format!("/queues/{name}/jobs/{}/cancel", later.job_id), &format!("csrf={csrf}"), &[]).await;
    assert_eq!(status, 303);
    assert_eq!(q.job(&later.job_id).await.unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(served.post(&format!("/queues/{name}/pause"), &format!("csrf={csrf}"), &[]).await.0, 303);
    assert!(q.is_paused().await.unwrap());
    assert_eq!(served.post(&format!("/queues/{name}/resume"), &format!("csrf={csrf}"), &[]).await.0, 303);
    assert!(!q.is_paused().await.unwrap());
    let schedule = Schedule::new("nightly", "0 3 * * *", "Ok", 1, &()).unwrap();
    Scheduler::new(q.clone(), SchedulerConfig::new()).schedule(schedule).register().await.unwrap();
    assert!(served.page(&format!("/queues/{name}")).await.contains("nightly"));
    let pause = format!("/queues/{name}/schedules/nightly/pause");
    assert_eq!(served.post(&pause, &format!("csrf={csrf}"), &[]).await.0, 303);
    assert!(q.schedules().await.unwrap()[0].paused_since.is_some());
    assert_eq!(
        served.post(&format!("/queues/{name}/schedules/nightly/resume"), &format!("csrf={csrf}"), &[]).await.0,
        303
    );
    assert!(q.schedules().await.unwrap()[0].paused_since.is_none());

    // Read-only: no action shown, every POST refused, with the right token too.
    let read_only = serve(Dashboard::new([q.clone()]).read_only(true).csrf_token("known")).await;
    q.push("Reject", 1, &3, PushOptions::new()).await.unwrap();
    let w = start(worker(&q, 4));
    // The two re-driven entries are parked again with it.
    wait_for(Duration::from_secs(10), "3 parked entries", async || (q.stats().await.ok()?.parked == 3).then_some(()))
        .await;
    stop(w).await;
    let parked_id = q.parked(1).await.unwrap()[0].parked_id.clone();
    for path in
        [format!("/queues/{name}"), format!("/queues/{name}/parked"), format!("/queues/{name}/parked/{parked_id}")]
    {
        assert!(!read_only.page(&path).await.contains("<form class=\"action\""), "{path}");
    }
    let (status, _) = read_only.post(&format!("/queues/{name}/parked/{parked_id}/redrive"), "csrf=known", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(q.stats().await.unwrap().parked, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_job_pages_say_what_is_kept_of_ended_jobs() {
    let q = Queue::in_process(QueueConfig::new(unique("dash-kept")).keep_done(Keep::none())).expect("queue");
    let name = q.name().to_owned();
    let w = start(worker(&q, 2));
    let done = q.push("Ok", 1, &(), PushOptions::new()).await.unwrap();
    let kept = q.push("Ok", 1, &(), PushOptions::new().keep_for(Duration::from_secs(60))).await.unwrap();
    wait_state(&q, &[&kept.job_id], JobState::Done, Duration::from_secs(10)).await;
    wait_for(Duration::from_secs(10), "the other job's end", async || {
        q.job(&done.job_id).await.unwrap().is_none().then_some(())
    })
    .await;
    stop(w).await;

    let served = serve(Dashboard::new([q.clone()])).await;
    let done_page = served.page(&format!("/queues/{name}/jobs?state=done")).await;
    assert!(done_page.contains("done jobs: not kept"), "{done_page}");
    let parked_page = served.page(&format!("/queues/{name}/jobs?state=parked")).await;
    assert!(parked_page.contains("parked jobs: kept for 1d"), "{parked_page}");
    let (status, body) = served.get(&format!("/queues/{name}/jobs/{}", done.job_id)).await;
    assert_eq!(status, 404);
    assert!(body.contains("it ended and was not kept") && body.contains("done not kept, parked for 1d"), "{body}");
    let job = served.page(&format!("/queues/{name}/jobs/{}", kept.job_id)).await;
    assert!(job.contains("<span class=\"state done\">done</span>"), "{job}");
}
