//! The first hour's three tests, on servers they start: a `redis-server` (the README's
//! "Testing your jobs") and an HTTP greeting service (axum).

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use dual_mode::jobs::{
    CancelOutcome, Clients, JobOutcome, JobState, PushOptions, Queue, QueueConfig, Schedule, Scheduler,
    SchedulerConfig, Worker, WorkerConfig,
};
use dual_mode::{BoxError, Context, Secret};
use tokio::sync::oneshot;
use user_first_hour::{AppState, Greeter, GreeterParts, GreeterSpec, Greeting, Settings, app, open_state};

/// A `redis-server` on a free loopback port, stopped when dropped.
pub struct TestRedis(std::process::Child, pub String);

impl TestRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let args = ["--port", &port.to_string(), "--save", "", "--appendonly", "no"];
        let child = std::process::Command::new("redis-server").args(args).stdout(std::process::Stdio::null()).spawn();
        let redis = Self(child.expect("redis-server on the PATH"), format!("redis://127.0.0.1:{port}/"));
        let up = (0..1000).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "redis-server did not start on port {port}");
        redis
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TOKEN: &str = "s3cret";

/// An HTTP server answering `GET /{name}` with `hello {name}` when the bearer token is
/// right, `401` otherwise.
async fn greeting_server() -> String {
    let hello = async |axum::extract::Path(name): axum::extract::Path<String>, headers: HeaderMap| {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth == Some(&format!("Bearer {TOKEN}")) {
            Ok(format!("hello {name}"))
        } else {
            Err(axum::http::StatusCode::UNAUTHORIZED)
        }
    };
    serve(axum::Router::new().route("/{name}", axum::routing::get(hello))).await
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn setup() -> (TestRedis, AppState, GreeterSpec) {
    let redis = TestRedis::start();
    let settings = Settings { greeting_url: greeting_server().await, redis_url: redis.1.clone() };
    let state = open_state(settings.clone(), Secret::new(TOKEN.to_owned())).await.expect("state opens");
    let spec = GreeterSpec { settings, name: "Ada".to_owned() };
    (redis, state, spec)
}

/// A worker of `queue` lending the state's clients and secret; stopped by dropping the sender.
fn worker(queue: &Queue, state: &AppState) -> oneshot::Sender<()> {
    let ctx = Context::new()
        .with(state.http.clone())
        .with(state.redis.clone())
        .with_keyed("GREETER_TOKEN", state.token.clone());
    let worker = Worker::new(queue.clone(), WorkerConfig::new()).service::<Greeter>(Clients::Context(Arc::new(ctx)));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_mode_and_job_mode_greet_with_the_same_service() -> Result<(), BoxError> {
    let (_redis, state, spec) = setup().await;
    let api = serve(app(state.clone())).await;
    let http = reqwest::Client::new();
    let text = http.get(format!("{api}/greet/Grace")).send().await?.error_for_status()?.text().await?;
    assert_eq!(text, "hello Grace");

    // Job mode with the token lent and the HTTP client injected: the guard opens the Redis
    // connection only, and closes it on exit.
    let parts = GreeterParts { http: Some(state.http.clone()), token: Some(state.token.clone()), ..spec.into() };
    let guard = parts.enter().await?;
    assert_eq!(guard.opened(), 1, "only the Redis connection is opened");
    let greeting = guard.greet().await?;
    guard.exit().await?;
    assert_eq!(greeting, Greeting { text: "hello Ada".to_owned(), count: 2 });
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_waited_for_with_its_typed_result_and_another_cancelled() -> Result<(), BoxError> {
    let (redis, state, spec) = setup().await;
    let queue = Queue::connect(redis::Client::open(redis.1.as_str())?, QueueConfig::new("greetings")).await?;
    let stop = worker(&queue, &state);

    let pushed = queue.push_spec(&spec, PushOptions::new()).await?;
    let greeting = match queue.wait_for::<Greeter>(&pushed.job_id, Duration::from_secs(30)).await? {
        JobOutcome::Done(greeting) => greeting,
        other => panic!("the job did not succeed: {other:?}"),
    };
    assert_eq!(greeting, Greeting { text: "hello Ada".to_owned(), count: 1 });
    let record = queue.job(&pushed.job_id).await?.expect("kept for a day");
    assert_eq!(record.output::<Greeter>()?, Some(greeting));
    let shown = format!("{record:?}");
    assert!(shown.contains(r#"result: Some("{\"text\":\"hello Ada\",\"count\":1}")"#), "{shown}");

    let later = queue.push_spec(&spec, PushOptions::new().delay(Duration::from_secs(60))).await?;
    assert_eq!(queue.cancel(&later.job_id).await?, CancelOutcome::Removed);
    let cancelled = queue.job(&later.job_id).await?.expect("a record");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.output::<Greeter>()?, None);
    drop(stop);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_in_berlin_enqueues_jobs_that_run() -> Result<(), BoxError> {
    let (redis, state, spec) = setup().await;
    let queue = Queue::connect(redis::Client::open(redis.1.as_str())?, QueueConfig::new("greetings")).await?;
    let stop_worker = worker(&queue, &state);

    // Every second, read on Berlin's wall clock.
    let every_second = Schedule::for_spec("greet-often", "* * * * * *", &spec)?.in_zone("Europe/Berlin")?;
    let shown = format!("{every_second:?}");
    assert!(shown.contains(r#"cron: Cron { expr: "* * * * * *", zone: "Europe/Berlin" }"#), "{shown}");
    assert!(shown.lines().count() == 1 && shown.len() < 1000, "a short Debug: {shown}");
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduler = Scheduler::new(queue.clone(), SchedulerConfig::new()).schedule(every_second);
    let running = tokio::spawn(scheduler.run(async move {
        let _ = stopped.await;
    }));

    let mut done = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = queue.jobs(JobState::Done, 0, 10).await?.1;
        if done >= 2 {
            break;
        }
    }
    assert!(done >= 2, "two ticks ran within ten seconds, {done} did");
    let listed = queue.schedules().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].cron.zone(), "Europe/Berlin");
    let _ = stop.send(());
    assert!(running.await?? >= 2, "the scheduler enqueued the ticks");
    drop(stop_worker);
    Ok(())
}
