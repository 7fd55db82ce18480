//! Side-by-side benchmarks of dual-mode, on loopback servers this binary starts itself: a
//! `redis-server` on a free port and a small HTTP/1.1 keep-alive server.
//!
//! `cargo bench --bench dual_mode` (about 170 s) or `cargo bench --bench dual_mode -- --quick`
//! (about 20 s). Every comparison runs in this one process, its modes interleaved round by
//! round; the table shows medians over the rounds and the ratios of those medians.
//!
//! 1. per job, 1 HTTP GET + 1 Redis SET: shared clients, temporary clients, a worker context
//!    and naive per-job clients, sequential and 16 concurrent, with new TCP connections;
//! 2. the guard's own cost: enter + exit with everything injected vs a hand-written struct,
//!    and heap allocations per enter + exit (a counting global allocator);
//! 3. the job layer: no-op jobs end to end and draining a backlog with 2 workers (also with a
//!    rate limit never hit, and with metrics recorded), pickup latency after idle,
//!    `redis-benchmark`'s XADD rate, and the layer's overhead on a 1 GET + 1 SET job;
//! 4. the Python original's anchor, quoted;
//! 6. Redis deployments: draining on one server vs a 3-primary Redis Cluster (one queue, and
//!    three queues on three primaries), and Redis memory per queued and per ended job;
//! 7. the drain as the backlog grows; s. the drain and end to end on each store (Redis and in
//!    process) in turn.
//!
//! Section `p` shows where a no-op job's time goes, in a drain and end to end: Redis CPU, Redis
//! time and calls per command (`INFO commandstats`), this process's CPU and heap allocations,
//! each per job. Section `r` does the same for a drain under a per-key rate limit never hit,
//! beside the same drain without one, pair by pair. Section `k` times one job at a time, from
//! its push to its handler's start, beside the push's and a `PING`'s round trips (p50, p99).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dual_mode::jobs::{
    Clients, Job, JobError, JobInfo, JobState, Keep, PushOptions, Queue, QueueConfig, RateLimit, RateScope,
    RedisTarget, Worker, WorkerConfig, WorkerHandle, handler_fn,
};
use dual_mode::{BoxError, Context, DualMode};
use dual_mode_test_support::{CountingHttp, RedisCluster, RedisServer};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// A counting allocator: allocations made by the current thread.

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

/// Allocations by every thread, counted only while [`COUNT_ALL`] is set (section p).
static ALL_ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNT_ALL: AtomicBool = AtomicBool::new(false);

fn bump() {
    ALLOCS.with(|c| c.set(c.get() + 1));
    if COUNT_ALL.load(Ordering::Relaxed) {
        ALL_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[allow(unsafe_code, reason = "a global allocator that counts allocations, forwarding to System")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// The service under test.

/// One job: GET a URL, SET its body in Redis.
#[derive(DualMode)]
struct Fetch {
    url: String,
    redis_url: String,
    #[dual_mode(not_secret)] // a Redis key, not a credential
    key: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
    #[dual_mode(shared, config = redis_url)]
    redis: MultiplexedConnection,
}

impl Fetch {
    async fn work(&self) -> Result<(), BoxError> {
        let body = self.http.get(&self.url).send().await?.error_for_status()?.bytes().await?;
        let mut con = self.redis.clone();
        redis::cmd("SET").arg(&self.key).arg(body.as_ref()).query_async::<()>(&mut con).await?;
        Ok(())
    }
}

impl Job for Fetch {
    type Output = ();

    async fn run(&self, _job: &JobInfo) -> Result<(), JobError> {
        self.work().await.map_err(JobError::failed)
    }
}

/// The hand-written equivalent of `FetchParts` + `enter` + `exit` with every client given.
struct HandParts {
    url: String,
    redis_url: String,
    key: String,
    http: Option<reqwest::Client>,
    redis: Option<MultiplexedConnection>,
}

impl HandParts {
    /// Boxes each open, as the guard does, so that its own future stays small (a few hundred
    /// bytes): awaiting a future moves it into the caller's state, and the move of a large one
    /// is a `memcpy` whose speed depends on the CPU and the C library (glibc takes `rep movsb`
    /// above 2,112 bytes on CPUs with FSRM, slow on AMD Zen 3/4). With both futures small, the
    /// ratio measures the guard, not the C library.
    async fn enter(self) -> Result<Fetch, BoxError> {
        let http = match self.http {
            Some(h) => h,
            None => Box::pin(async { reqwest::Client::builder().build() }).await?,
        };
        let redis = match self.redis {
            Some(r) => r,
            None => {
                let url = self.redis_url.clone();
                Box::pin(async move { redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await })
                    .await?
            }
        };
        Ok(Fetch { url: self.url, redis_url: self.redis_url, key: self.key, http, redis })
    }

    /// The same with the opens inline: its future holds the Redis connect's (2.7 KB), the size
    /// that made the old baseline measure `memcpy`.
    async fn open(self) -> Result<Fetch, BoxError> {
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder().build()?,
        };
        let redis = match self.redis {
            Some(r) => r,
            None => redis::Client::open(self.redis_url.as_str())?.get_multiplexed_async_connection().await?,
        };
        Ok(Fetch { url: self.url, redis_url: self.redis_url, key: self.key, http, redis })
    }
}

// ---------------------------------------------------------------------------------------------
// Loopback servers.

async fn redis_connections(admin: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query_async(admin).await.expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received")
}

// ---------------------------------------------------------------------------------------------
// Statistics and the table.

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => f64::midpoint(s[n / 2 - 1], s[n / 2]),
    }
}

#[allow(clippy::cast_precision_loss, reason = "benchmark figures")]
fn as_f64(n: u64) -> f64 {
    n as f64
}

#[allow(clippy::cast_precision_loss, reason = "benchmark figures")]
fn usize_f64(n: usize) -> f64 {
    n as f64
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, String, String, String)>,
}

impl Table {
    fn section(&mut self, title: &str) {
        self.rows.push((format!("**{title}**"), String::new(), String::new(), String::new()));
    }

    fn row(&mut self, what: &str, value: String, ratio: String, goal: &str) {
        self.rows.push((what.to_owned(), value, ratio, goal.to_owned()));
    }

    fn print(&self) {
        let mut out = String::new();
        let _ = writeln!(out, "| measurement | median | ratio | goal |");
        let _ = writeln!(out, "|---|---:|---:|---|");
        for (a, b, c, d) in &self.rows {
            let _ = writeln!(out, "| {a} | {b} | {c} | {d} |");
        }
        println!("\n{out}");
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

// ---------------------------------------------------------------------------------------------
// 1. Per job: 1 GET + 1 SET.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Shared,
    Temporary,
    Context,
    Naive,
}

const MODES: [Mode; 4] = [Mode::Shared, Mode::Temporary, Mode::Context, Mode::Naive];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared clients (API mode, injected)",
            Self::Temporary => "temporary clients (job mode, `enter()`)",
            Self::Context => "worker `Context` (`from_context`)",
            Self::Naive => "naive per-job `Client::builder().build()`",
        }
    }
}

struct Env {
    spec: FetchSpec,
    http: reqwest::Client,
    redis: MultiplexedConnection,
    ctx: Context,
}

async fn one_job(mode: Mode, env: &Env) -> Result<(), BoxError> {
    match mode {
        Mode::Shared => {
            let parts = FetchParts {
                http: Some(env.http.clone()),
                redis: Some(env.redis.clone()),
                ..FetchParts::from(env.spec.clone())
            };
            let guard = parts.enter().await?;
            guard.work().await?;
            guard.exit().await?;
        }
        Mode::Temporary => {
            let guard = FetchParts::from(env.spec.clone()).enter().await?;
            guard.work().await?;
            guard.exit().await?;
        }
        Mode::Context => {
            let guard = FetchParts::from_context(env.spec.clone(), &env.ctx).enter().await?;
            guard.work().await?;
            guard.exit().await?;
        }
        Mode::Naive => {
            let spec = env.spec.clone();
            let parts = HandParts { url: spec.url, redis_url: spec.redis_url, key: spec.key, http: None, redis: None };
            let svc = parts.enter().await?;
            svc.work().await?;
            drop(svc);
        }
    }
    Ok(())
}

/// Runs `n` jobs with `conc` in flight; returns the elapsed time.
async fn run_jobs(mode: Mode, env: &Arc<Env>, n: usize, conc: usize) -> Duration {
    let start = Instant::now();
    if conc <= 1 {
        for _ in 0..n {
            one_job(mode, env).await.expect("job");
        }
    } else {
        let mut tasks = Vec::with_capacity(conc);
        for i in 0..conc {
            let env = env.clone();
            let share = n / conc + usize::from(i < n % conc);
            tasks.push(tokio::spawn(async move {
                for _ in 0..share {
                    one_job(mode, &env).await.expect("job");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    }
    start.elapsed()
}

struct ModeResult {
    /// Jobs per second, per round.
    rates: Vec<f64>,
    jobs: u64,
    http_conns: u64,
    redis_conns: u64,
}

async fn per_job(
    env: &Arc<Env>,
    http: &CountingHttp,
    admin: &mut MultiplexedConnection,
    conc: usize,
    rounds: usize,
    n: usize,
) -> Vec<(Mode, ModeResult)> {
    // Warm-up: pools filled, code paths hot; not counted.
    for mode in MODES {
        run_jobs(mode, env, if mode == Mode::Naive { conc.max(8) } else { conc.max(50) }, conc).await;
    }
    let mut results: Vec<(Mode, ModeResult)> =
        MODES.iter().map(|&m| (m, ModeResult { rates: Vec::new(), jobs: 0, http_conns: 0, redis_conns: 0 })).collect();
    for round in 0..rounds {
        // Each round starts with the next mode, so that no mode always follows the naive one
        // (whose closed connections and released ports are still being cleaned up).
        let len = results.len();
        for i in 0..len {
            let (mode, res) = &mut results[(round + i) % len];
            // The naive mode re-reads the CA store per job: fewer jobs keep the run short.
            let jobs = if *mode == Mode::Naive { (n / 8).max(conc) } else { n };
            let (h0, r0) = (http.accepted(), redis_connections(admin).await);
            let took = run_jobs(*mode, env, jobs, conc).await;
            let (h1, r1) = (http.accepted(), redis_connections(admin).await);
            res.rates.push(usize_f64(jobs) / took.as_secs_f64());
            res.jobs += jobs as u64;
            res.http_conns += h1 - h0;
            res.redis_conns += r1 - r0;
            // Let the closed connections of the temporary and naive modes be torn down (their
            // tasks, the server's side) before the next mode runs.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    results
}

fn report_per_job(table: &mut Table, label: &str, results: &[(Mode, ModeResult)], goals: (f64, f64)) -> [f64; 4] {
    table.section(&format!("1. per job, 1 GET + 1 SET, {label}"));
    let shared = median(&results[0].1.rates);
    let mut out = [0.0; 4];
    for (i, (mode, r)) in results.iter().enumerate() {
        let rate = median(&r.rates);
        out[i] = rate;
        let slow = shared / rate;
        let conns = format!(
            "{:.0} HTTP + {:.0} Redis new conns / 1k jobs",
            as_f64(r.http_conns) * 1000.0 / as_f64(r.jobs),
            as_f64(r.redis_conns) * 1000.0 / as_f64(r.jobs)
        );
        let goal = match mode {
            Mode::Shared => "baseline".to_owned(),
            Mode::Temporary => format!("<= {:.1}x slower: {}", goals.0, verdict(slow <= goals.0)),
            Mode::Context => format!(">= 0.95x shared: {}", verdict(rate / shared >= 0.95)),
            Mode::Naive => format!("anchor (issue: {:.0}x)", goals.1),
        };
        table.row(
            &format!("{} — {conns}", mode.name()),
            format!("{rate:.0} jobs/s ({:.0} µs/job)", 1e6 / rate),
            format!("{slow:.2}x shared's time"),
            &goal,
        );
    }
    out
}

/// The CPU model and the C library: `memcpy` speed, and so some figures, depend on both.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let fsrm = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| info.split_whitespace().any(|w| w == "fsrm"));
    let libc = Command::new("ldd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown C library".to_owned());
    format!(
        "{cpu}{}, {libc}, {} cores",
        if fsrm { " (FSRM)" } else { "" },
        std::thread::available_parallelism().map_or(0, usize::from)
    )
}

// ---------------------------------------------------------------------------------------------
// 2. The guard's own cost.

/// The sizes that decide what a move of each future costs.
fn print_sizes(p: FetchParts, h: HandParts, h2: HandParts) {
    let (pf, hf, of) = (p.enter(), h.enter(), h2.open());
    eprintln!(
        "sizes: FetchParts {} HandParts {} Fetch {} Guard {} Result<Guard> {} enter() future {} hand enter() future {} \
         hand open() future {} EnterError {}",
        size_of::<FetchParts>(),
        size_of::<HandParts>(),
        size_of::<Fetch>(),
        size_of::<dual_mode::Guard<Fetch>>(),
        size_of::<Result<dual_mode::Guard<Fetch>, dual_mode::EnterError>>(),
        size_of_val(&pf),
        size_of_val(&hf),
        size_of_val(&of),
        size_of::<dual_mode::EnterError>(),
    );
}

fn guard_cost(table: &mut Table, env: &Env, rounds: usize, batch: usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let spec = env.spec.clone();
    let make_guard = || -> Vec<FetchParts> {
        (0..batch)
            .map(|_| FetchParts {
                http: Some(env.http.clone()),
                redis: Some(env.redis.clone()),
                ..FetchParts::from(spec.clone())
            })
            .collect()
    };
    let make_hand = || -> Vec<HandParts> {
        (0..batch)
            .map(|_| HandParts {
                url: spec.url.clone(),
                redis_url: spec.redis_url.clone(),
                key: spec.key.clone(),
                http: Some(env.http.clone()),
                redis: Some(env.redis.clone()),
            })
            .collect()
    };
    print_sizes(make_guard().pop().expect("one"), make_hand().pop().expect("one"), make_hand().pop().expect("one"));
    let (mut guard_ns, mut hand_ns, mut copied_ns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut guard_allocs, mut hand_allocs) = (0u64, 0u64);
    rt.block_on(async {
        for round in 0..=rounds {
            let parts = make_guard();
            let a0 = allocs();
            let t = Instant::now();
            for p in parts {
                let guard = std::hint::black_box(p).enter().await.expect("enter");
                std::hint::black_box(&*guard);
                guard.exit().await.expect("exit");
            }
            let g = t.elapsed();
            let ga = allocs() - a0;
            let parts = make_hand();
            let a0 = allocs();
            let t = Instant::now();
            for p in parts {
                let svc = std::hint::black_box(p).enter().await.expect("enter");
                std::hint::black_box(&svc);
                drop(svc);
            }
            let h = t.elapsed();
            let ha = allocs() - a0;
            let parts = make_hand();
            let t = Instant::now();
            for p in parts {
                let svc = std::hint::black_box(p).open().await.expect("open");
                std::hint::black_box(&svc);
                drop(svc);
            }
            let c = t.elapsed();
            if round > 0 {
                copied_ns.push(c.as_secs_f64() * 1e9 / usize_f64(batch));
                guard_ns.push(g.as_secs_f64() * 1e9 / usize_f64(batch));
                hand_ns.push(h.as_secs_f64() * 1e9 / usize_f64(batch));
                guard_allocs += ga;
                hand_allocs += ha;
            }
        }
    });
    let (g, h) = (median(&guard_ns), median(&hand_ns));
    let runs = as_f64((rounds * batch) as u64);
    let per = as_f64(guard_allocs) / runs;
    table.section("2. the guard's own cost (everything injected; includes dropping the service)");
    table.row(
        "hand-written struct: build + drop",
        format!("{h:.1} ns"),
        "1.00x".to_owned(),
        &format!("{:.2} allocations each", as_f64(hand_allocs) / runs),
    );
    let c = median(&copied_ns);
    table.row(
        "hand-written, opens inline (a 2.7 KB future moved into the caller)",
        format!("{c:.1} ns"),
        format!("{:.2}x", c / h),
        "what the move costs on this CPU and C library",
    );
    table.row(
        "`enter()` + `exit()`",
        format!("{g:.1} ns"),
        format!("{:.2}x", g / h),
        &format!("<= 1.05x: {}; {per:.2} allocations each (goal 0: {})", verdict(g / h <= 1.05), verdict(per == 0.0)),
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The job layer.

struct Done {
    count: AtomicU64,
}

async fn wait_count(done: &Done, target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while done.count.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < deadline, "jobs did not finish: {} of {target}", done.count.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Two workers on their own connections.
async fn start_workers<F>(redis_url: &str, queue: &str, make: F) -> Vec<WorkerHandle>
where
    F: Fn(Worker) -> Worker,
{
    start_workers_with(redis_url, QueueConfig::new(queue), make).await
}

/// [`start_workers`] on a queue with this configuration.
async fn start_workers_with<F>(redis_url: &str, config: QueueConfig, make: F) -> Vec<WorkerHandle>
where
    F: Fn(Worker) -> Worker,
{
    start_workers_on(&server(redis_url), config, make).await
}

/// [`start_workers`] on a queue with this configuration, on any Redis deployment.
async fn start_workers_on<F>(target: &RedisTarget, config: QueueConfig, make: F) -> Vec<WorkerHandle>
where
    F: Fn(Worker) -> Worker,
{
    let mut out = Vec::new();
    for _ in 0..2 {
        let q = Queue::connect(target.clone(), config.clone()).await.expect("queue");
        out.push(make(Worker::new(q, WorkerConfig::new().consumer_prefix("bench"))).spawn());
    }
    out
}

/// The one server at `redis_url`.
fn server(redis_url: &str) -> RedisTarget {
    redis::Client::open(redis_url).expect("url").into()
}

async fn stop_workers(workers: Vec<WorkerHandle>) {
    for worker in workers {
        worker.stop().await.expect("worker");
    }
}

fn noop_worker(done: &Arc<Done>) -> impl Fn(Worker) -> Worker {
    let done = done.clone();
    move |w: Worker| {
        let done = done.clone();
        w.handle(
            "noop",
            handler_fn(move |_job: JobInfo| {
                let done = done.clone();
                async move {
                    done.count.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics switched on and off in one process: the recorder is process-wide and cannot be
// removed, so it hands out the Prometheus exporter's handles while switched on and no-op
// handles while off. Handles are registered per queue on first use, so each drain's queue
// records, or not, by the switch as it was at its push.

static RECORDING: AtomicBool = AtomicBool::new(false);

struct Switched(PrometheusRecorder);

impl Recorder for Switched {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if RECORDING.load(Ordering::Relaxed) { self.0.register_counter(key, metadata) } else { Counter::noop() }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if RECORDING.load(Ordering::Relaxed) { self.0.register_gauge(key, metadata) } else { Gauge::noop() }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if RECORDING.load(Ordering::Relaxed) { self.0.register_histogram(key, metadata) } else { Histogram::noop() }
    }
}

/// Installs the switched recorder (the Prometheus exporter's, with buckets for the run and
/// wait times) and returns its handle.
fn install_switched_recorder() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &[0.001, 0.01, 0.1, 1.0, 10.0])
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(Switched(recorder)).expect("the bench's only recorder");
    handle
}

/// The CPU time this process's threads have run, in ns (the sum of each thread's
/// `/proc/self/task/<tid>/schedstat`, exact to the nanosecond): it counts the workers' own
/// work, not Redis's nor other processes' on the machine.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// [`drain_noop`] with metrics recorded or not: jobs/s, and this process's CPU µs per job
/// (workers and bench together). Checks that a recorded drain's counts are all there.
async fn drain_noop_metrics(
    redis_url: &str,
    queue: &str,
    n: usize,
    prometheus: &PrometheusHandle,
    on: bool,
) -> (f64, f64) {
    RECORDING.store(on, Ordering::Relaxed);
    let (rate, cpu) = drain_noop_cpu(redis_url, QueueConfig::new(queue), n, PushOptions::new()).await;
    RECORDING.store(false, Ordering::Relaxed);
    let cpu_per_job = cpu.as_secs_f64() * 1e6 / usize_f64(n);
    eprintln!("        {queue}: {rate:.0} jobs/s, {cpu_per_job:.2} µs CPU/job");
    let text = prometheus.render();
    let succeeded = dual_mode_test_support::prometheus_value(
        &text,
        "dual_mode_jobs_ended_total",
        &[("queue", queue), ("type", "noop"), ("outcome", "succeeded")],
    );
    assert_eq!(succeeded, on.then_some(usize_f64(n)), "a drain records its jobs exactly when switched on");
    (rate, cpu_per_job)
}

/// No-op jobs: drain a backlog of `n` with 2 workers; jobs/s.
async fn drain_noop(redis_url: &str, queue: &str, n: usize) -> f64 {
    drain_noop_with(redis_url, QueueConfig::new(queue), n, PushOptions::new()).await
}

/// [`drain_noop`] on a queue with this configuration, each job pushed with `options`.
async fn drain_noop_with(redis_url: &str, config: QueueConfig, n: usize, options: PushOptions) -> f64 {
    drain_noop_cpu(redis_url, config, n, options).await.0
}

/// [`drain_noop_with`], also giving the CPU time this process spent draining.
async fn drain_noop_cpu(redis_url: &str, config: QueueConfig, n: usize, options: PushOptions) -> (f64, Duration) {
    drain_on(&server(redis_url), &[config], n, options).await
}

/// Drains a backlog of `n` no-op jobs on each of these queues at once, 2 workers per queue, on
/// any Redis deployment; jobs/s over all of them, and the CPU time this process spent draining.
async fn drain_on(target: &RedisTarget, configs: &[QueueConfig], n: usize, options: PushOptions) -> (f64, Duration) {
    for config in configs {
        let q = Queue::connect(target.clone(), config.clone()).await.expect("q");
        q.ensure_group().await.expect("group");
        q.push_bulk("noop", 1, std::iter::repeat_n(&(), n), options.clone()).await.expect("bulk push");
    }
    let done = Arc::new(Done { count: AtomicU64::new(0) });
    let (t, cpu) = (Instant::now(), cpu_ns());
    let mut workers = Vec::new();
    for config in configs {
        workers.extend(start_workers_on(target, config.clone(), noop_worker(&done)).await);
    }
    let total = n * configs.len();
    wait_count(&done, total as u64, Duration::from_secs(120)).await;
    let (took, cpu) = (t.elapsed(), Duration::from_nanos(cpu_ns().saturating_sub(cpu)));
    stop_workers(workers).await;
    (usize_f64(total) / took.as_secs_f64(), cpu)
}

/// No-op jobs end to end: 8 producers push `n` one by one while 2 workers run; jobs/s from the
/// first push to the last job done.
async fn e2e_noop(redis_url: &str, queue: &str, n: usize) -> f64 {
    e2e_on(&server(redis_url), QueueConfig::new(queue), n).await
}

/// [`e2e_noop`] on any Redis deployment and queue configuration.
async fn e2e_on(target: &RedisTarget, config: QueueConfig, n: usize) -> f64 {
    let q = Queue::connect(target.clone(), config.clone()).await.expect("q");
    q.ensure_group().await.expect("group");
    let done = Arc::new(Done { count: AtomicU64::new(0) });
    let workers = start_workers_on(target, config, noop_worker(&done)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    push_from_eight(&q, n).await;
    wait_count(&done, n as u64, Duration::from_secs(120)).await;
    let took = t.elapsed();
    stop_workers(workers).await;
    usize_f64(n) / took.as_secs_f64()
}

/// Drains a backlog of `n` no-op jobs pushed to `q` with one worker on each of `handles`;
/// jobs/s from the workers' start to the last job done.
async fn drain_handles(q: &Queue, handles: [Queue; 2], n: usize) -> f64 {
    q.push_bulk("noop", 1, std::iter::repeat_n(&(), n), PushOptions::new()).await.expect("bulk push");
    let done = Arc::new(Done { count: AtomicU64::new(0) });
    let t = Instant::now();
    let workers: Vec<WorkerHandle> = handles
        .into_iter()
        .map(|h| noop_worker(&done)(Worker::new(h, WorkerConfig::new().consumer_prefix("bench"))).spawn())
        .collect();
    wait_count(&done, n as u64, Duration::from_secs(120)).await;
    let took = t.elapsed();
    stop_workers(workers).await;
    usize_f64(n) / took.as_secs_f64()
}

/// `n` no-op jobs pushed one by one by 8 producers to `q` while one worker on each of
/// `handles` runs; jobs/s from the first push to the last job done.
async fn e2e_handles(q: &Queue, handles: [Queue; 2], n: usize) -> f64 {
    let done = Arc::new(Done { count: AtomicU64::new(0) });
    let workers: Vec<WorkerHandle> = handles
        .into_iter()
        .map(|h| noop_worker(&done)(Worker::new(h, WorkerConfig::new().consumer_prefix("bench"))).spawn())
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    push_from_eight(q, n).await;
    wait_count(&done, n as u64, Duration::from_secs(120)).await;
    let took = t.elapsed();
    stop_workers(workers).await;
    usize_f64(n) / took.as_secs_f64()
}

/// Section g: the drain on Postgres as ended jobs' records pile up: a queue whose tables
/// already hold `ended` records of done jobs (kept for a day, as by default), written straight
/// into its tables, drains a `backlog`; sizes in turn within each round, each round on fresh
/// queues.
async fn ended_growth(table: &mut Table, pg_url: &str, rounds: usize, backlog: usize, sizes: &[usize]) {
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(pg_url).await.expect("pg");
    let mut rates = vec![Vec::new(); sizes.len()];
    let mut fill_secs = vec![Vec::new(); sizes.len()];
    for round in 0..rounds {
        for (i, &ended) in sizes.iter().enumerate() {
            let config = QueueConfig::new(format!("ended-{ended}-{round}"));
            let pool = async || {
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(pg_url).await.expect("pg");
                dual_mode_postgres::PostgresTarget::new(pool)
            };
            let q = Queue::connect(pool().await, config.clone()).await.expect("q");
            let t = Instant::now();
            fill_ended(&admin, q.name(), ended).await;
            fill_secs[i].push(t.elapsed().as_secs_f64());
            let handles = [
                Queue::connect(pool().await, config.clone()).await.expect("q"),
                Queue::connect(pool().await, config).await.expect("q"),
            ];
            rates[i].push(drain_handles(&q, handles, backlog).await);
        }
    }
    let first = median(&rates[0]);
    for (i, &ended) in sizes.iter().enumerate() {
        let rate = median(&rates[i]);
        table.row(
            &format!(
                "Postgres: drain a {backlog} backlog beside {ended} ended jobs' records (filled in {:.1} s)",
                median(&fill_secs[i])
            ),
            format!("{rate:.0} jobs/s"),
            format!("{:.2}x of {} ended", rate / first, sizes[0]),
            "",
        );
    }
}

/// Writes `n` records of done jobs into queue `q`'s tables (schema `dual_mode`), as the
/// worker writes them: the record, kept for a day, and its place in the set of done jobs.
async fn fill_ended(pool: &sqlx::PgPool, q: &str, n: usize) {
    let now = i64::try_from(dual_mode::jobs::backend::unix_ms(std::time::SystemTime::now())).expect("ms");
    let n = i64::try_from(n).expect("n");
    sqlx::query(
        "INSERT INTO dual_mode.jobs (q, id, hash, expires_ms) SELECT $1, 'old-' || g, \
         jsonb_build_object('state', 'done', 'type', 'noop', 'key', 'old-' || g, 'attempt', '1', \
         'enq', ($2 - g)::text, 'updated', ($2 - g)::text, 'finished', ($2 - g)::text, 'result', 'null', \
         'started', ($2 - g)::text, 'worker', 'bench-0', 'entry', ($2 - g)::text || '-0'), $2 + 86400000 \
         FROM generate_series(1, $3) g",
    )
    .bind(q)
    .bind(now)
    .bind(n)
    .execute(pool)
    .await
    .expect("fill records");
    sqlx::query(
        "INSERT INTO dual_mode.job_sets (q, state, job_id, at_ms) SELECT $1, 'done', 'old-' || g, $2 - g \
         FROM generate_series(1, $3) g",
    )
    .bind(q)
    .bind(now)
    .bind(n)
    .execute(pool)
    .await
    .expect("fill the done set");
    sqlx::query("ANALYZE dual_mode.jobs, dual_mode.job_sets").execute(pool).await.expect("analyze");
}

/// Section s: the drain and end to end on Redis (each worker on a connection of its own), in
/// process (the workers on clones of one queue) and on Postgres (each worker on a pool of its
/// own), round by round, in turn.
async fn stores(table: &mut Table, redis_url: &str, pg_url: &str, rounds: usize, backlog: usize, e2e: usize) {
    let pg_queue = async |name: String, keep: Keep| {
        let config = QueueConfig::new(name).keep_done(keep);
        let pool = async || {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(pg_url).await.expect("pg");
            dual_mode_postgres::PostgresTarget::new(pool)
        };
        let q = Queue::connect(pool().await, config.clone()).await.expect("q");
        let handles = [
            Queue::connect(pool().await, config.clone()).await.expect("q"),
            Queue::connect(pool().await, config).await.expect("q"),
        ];
        (q, handles)
    };
    let redis_queue = async |name: String| {
        let config = QueueConfig::new(name);
        let q = Queue::connect(server(redis_url), config.clone()).await.expect("q");
        q.ensure_group().await.expect("group");
        let handles = [
            Queue::connect(server(redis_url), config.clone()).await.expect("q"),
            Queue::connect(server(redis_url), config).await.expect("q"),
        ];
        (q, handles)
    };
    let in_process = |name: String| {
        let q = Queue::in_process(QueueConfig::new(name)).expect("q");
        let handles = [q.clone(), q.clone()];
        (q, handles)
    };
    let day = Keep::for_time(Duration::from_secs(24 * 3600));
    let mut rates: [Vec<f64>; 8] = Default::default();
    for round in 0..rounds {
        let (q, h) = redis_queue(format!("stores-drain-{round}")).await;
        rates[0].push(drain_handles(&q, h, backlog).await);
        let (q, h) = in_process(format!("stores-drain-{round}"));
        rates[1].push(drain_handles(&q, h, backlog).await);
        let (q, h) = pg_queue(format!("stores-drain-{round}"), day).await;
        rates[4].push(drain_handles(&q, h, backlog).await);
        let (q, h) = pg_queue(format!("stores-drain-nk-{round}"), Keep::none()).await;
        rates[6].push(drain_handles(&q, h, backlog).await);
        let (q, h) = redis_queue(format!("stores-e2e-{round}")).await;
        rates[2].push(e2e_handles(&q, h, e2e).await);
        let (q, h) = in_process(format!("stores-e2e-{round}"));
        rates[3].push(e2e_handles(&q, h, e2e).await);
        let (q, h) = pg_queue(format!("stores-e2e-{round}"), day).await;
        rates[5].push(e2e_handles(&q, h, e2e).await);
        let (q, h) = pg_queue(format!("stores-e2e-nk-{round}"), Keep::none()).await;
        rates[7].push(e2e_handles(&q, h, e2e).await);
    }
    let [rd, md, re, me, pd, pe, nd, ne] = rates.map(|r| median(&r));
    let drain = format!("drain a {backlog} backlog");
    let one_by_one = format!("end to end, {e2e} pushed one by one by 8 producers");
    let rows = [
        (format!("{drain} on Postgres: done jobs not kept vs kept a day"), nd, pd),
        (format!("{one_by_one}, on Postgres: done jobs not kept vs kept a day"), ne, pe),
        (format!("{drain}: Postgres (fsync off) vs Redis"), pd, rd),
        (format!("{one_by_one}: Postgres vs Redis"), pe, re),
        (format!("{drain}: in process vs Redis"), md, rd),
        (format!("{one_by_one}: in process vs Redis"), me, re),
    ];
    for (what, a, b) in rows {
        table.row(&what, format!("{a:.0} vs {b:.0} jobs/s"), format!("{:.2}x", a / b), "reference");
    }
}

/// Pushes `n` no-op jobs one by one from 8 producers at once.
async fn push_from_eight(q: &Queue, n: usize) {
    let producers: Vec<_> = (0..8)
        .map(|i| {
            let q = q.clone();
            let share = n / 8 + usize::from(i < n % 8);
            tokio::spawn(async move {
                for _ in 0..share {
                    q.push("noop", 1, &(), PushOptions::new()).await.expect("push");
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
}

/// Pickup latency: push one job after `idles[i]` of idle each; ms from the push's start to the
/// handler's start.
async fn pickup(redis_url: &str, queue: &str, idles: &[Duration]) -> Vec<f64> {
    let q = Queue::connect(redis::Client::open(redis_url).expect("url"), QueueConfig::new(queue)).await.expect("q");
    q.ensure_group().await.expect("group");
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let workers = start_workers(redis_url, queue, move |w: Worker| {
        let tx = tx.clone();
        w.handle(
            "ping",
            handler_fn(move |_job: JobInfo| {
                let _ = tx.send(Instant::now());
                async { Ok(()) }
            }),
        )
    })
    .await;
    let mut out = Vec::new();
    for idle in idles {
        tokio::time::sleep(*idle).await;
        let t = Instant::now();
        q.push("ping", 1, &(), PushOptions::new()).await.expect("push");
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("picked up").expect("sender");
        out.push(got.duration_since(t).as_secs_f64() * 1e3);
    }
    stop_workers(workers).await;
    out
}

/// One job at a time: `n` jobs pushed one by one to an idle worker (waiting for a push), each
/// after the last one ran and `idle` passed. Per job, in ms: from the push's call to the
/// handler's start, the push's own round trip, and a `PING` round trip on another connection
/// just before.
async fn one_at_a_time(redis_url: &str, queue: &str, n: usize, idle: Duration) -> [Vec<f64>; 3] {
    let q = Queue::connect(redis::Client::open(redis_url).expect("url"), QueueConfig::new(queue)).await.expect("q");
    q.ensure_group().await.expect("group");
    let mut admin = redis::Client::open(redis_url).expect("url").get_multiplexed_async_connection().await.expect("c");
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let worker = Worker::new(q.clone(), WorkerConfig::new().consumer_prefix("bench"))
        .handle(
            "ping",
            handler_fn(move |_job: JobInfo| {
                let _ = tx.send(Instant::now());
                async { Ok(()) }
            }),
        )
        .spawn();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let [mut pickup, mut push, mut ping] = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..n {
        tokio::time::sleep(idle).await;
        let t = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut admin).await.expect("PING");
        ping.push(ms(t.elapsed()));
        let t = Instant::now();
        q.push("ping", 1, &(), PushOptions::new()).await.expect("push");
        push.push(ms(t.elapsed()));
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("picked up").expect("sender");
        pickup.push(ms(got.duration_since(t)));
    }
    stop_workers(vec![worker]).await;
    [pickup, push, ping]
}

/// The `p`th percentile (1-100) of `xs`, by the nearest rank.
fn percentile(xs: &[f64], p: usize) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[(p * v.len()).div_ceil(100).clamp(1, v.len()) - 1]
}

/// GET + SET jobs through the queue (2 workers, a shared context) vs the same jobs run
/// directly with 32 in flight; (queued jobs/s, direct jobs/s).
async fn getset_through_queue(redis_url: &str, queue: &str, env: &Arc<Env>, n: usize) -> (f64, f64) {
    let q = Queue::connect(redis::Client::open(redis_url).expect("url"), QueueConfig::new(queue)).await.expect("q");
    q.ensure_group().await.expect("group");
    let specs = vec![env.spec.clone(); n];
    q.push_specs(&specs, PushOptions::new()).await.expect("bulk push");
    let ctx = Arc::new(Context::new().with(env.http.clone()).with(env.redis.clone()));
    let t = Instant::now();
    let workers = start_workers(redis_url, queue, |w: Worker| w.service::<Fetch>(Clients::Context(ctx.clone()))).await;
    let mut admin = redis::Client::open(redis_url).expect("url").get_multiplexed_async_connection().await.expect("c");
    loop {
        let len: u64 = redis::cmd("XLEN").arg(&q.keys().stream).query_async(&mut admin).await.expect("XLEN");
        if len == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let queued = t.elapsed();
    stop_workers(workers).await;
    let direct = run_jobs(Mode::Context, env, n, 32).await;
    (usize_f64(n) / queued.as_secs_f64(), usize_f64(n) / direct.as_secs_f64())
}

/// GET + SET jobs one at a time through the queue (2 workers, context clients): ms from the
/// push's start to the handler's end, vs the same job run directly; (queued µs, direct µs).
async fn getset_latency(redis_url: &str, queue: &str, env: &Arc<Env>, n: usize) -> (f64, f64) {
    let q = Queue::connect(redis::Client::open(redis_url).expect("url"), QueueConfig::new(queue)).await.expect("q");
    q.ensure_group().await.expect("group");
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let handler_env = env.clone();
    let workers = start_workers(redis_url, queue, move |w: Worker| {
        let (tx, env) = (tx.clone(), handler_env.clone());
        w.handle(
            <FetchSpec as dual_mode::Spec>::NAME,
            handler_fn(move |job: JobInfo| {
                let (tx, env) = (tx.clone(), env.clone());
                async move {
                    let spec: FetchSpec = job.decode()?;
                    let guard = FetchParts::from_context(spec, &env.ctx).enter().await.map_err(JobError::failed)?;
                    guard.work().await.map_err(JobError::failed)?;
                    guard.exit().await.map_err(JobError::failed)?;
                    let _ = tx.send(Instant::now());
                    Ok(())
                }
            }),
        )
    })
    .await;
    let (mut queued, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        q.push_spec(&env.spec, PushOptions::new()).await.expect("push");
        let done = rx.recv().await.expect("done");
        queued.push(done.duration_since(t).as_secs_f64() * 1e6);
        let t = Instant::now();
        one_job(Mode::Context, env).await.expect("job");
        direct.push(t.elapsed().as_secs_f64() * 1e6);
    }
    stop_workers(workers).await;
    (median(&queued), median(&direct))
}

/// `redis-benchmark` running an `XADD` shaped like a job entry (7 fields): requests per second.
/// (`-t xadd` is not one of redis-benchmark 7.0's built-in tests, so the command is given.)
fn redis_benchmark_xadd(port: u16, n: usize, extra: &[&str]) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-n", &n.to_string(), "-q"])
        .args(extra)
        .args(["XADD", "bench:xadd", "*", "id", "0123456789abcdef", "key", "0123456789abcdef", "type", "noop"])
        .args(["v", "1", "attempt", "1", "enq", "1700000000000", "payload", "null"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "XADD bench:xadd * ...: 89285.71 requests per second, p50=0.287 msec" (progress lines end
    // in '\r').
    let line = text.split(['\r', '\n']).find(|l| l.contains(" requests per second"))?;
    let head = &line[..line.find(" requests per second")?];
    head.rsplit(' ').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------

struct Sizes {
    rounds: usize,
    seq_jobs: usize,
    conc_jobs: usize,
    guard_rounds: usize,
    guard_batch: usize,
    backlog: usize,
    e2e: usize,
    long_idle: Duration,
    getset_jobs: usize,
}

/// Where a temporary-client job's time goes: building the HTTP client, connecting to Redis,
/// the first GET on a new client, the first SET on a new connection (means over 1,000).
async fn connect_breakdown(env: &Env) {
    let mut spent = [Duration::ZERO; 4];
    for _ in 0..1000 {
        let start = Instant::now();
        let http = dual_mode::HttpConfig::default().builder().build().expect("http");
        let built = Instant::now();
        let mut con = redis::Client::open(env.spec.redis_url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let connected = Instant::now();
        http.get(&env.spec.url).send().await.expect("get").bytes().await.expect("body");
        let got = Instant::now();
        redis::cmd("SET").arg("bench:k").arg("v").query_async::<()>(&mut con).await.expect("set");
        let set = Instant::now();
        for (slot, d) in spent.iter_mut().zip([built - start, connected - built, got - connected, set - got]) {
            *slot += d;
        }
    }
    let [build, connect, get, set] = spent.map(|d| d / 1000);
    eprintln!("build HTTP client {build:?}, Redis connect {connect:?}, first GET {get:?}, first SET {set:?}");
}

// ---------------------------------------------------------------------------------------------
// 6. Redis deployments.

/// Names of `count` queues whose slots three different primaries of `cluster` serve.
fn queues_on_distinct_primaries(cluster: &RedisCluster, prefix: &str, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("{prefix}{i}");
        let primary = cluster.primary_of(&format!("dm:{{{name}}}:stream")).expect("a primary");
        if !seen.contains(&primary) {
            seen.push(primary);
            names.push(name);
        }
        if names.len() == count {
            break;
        }
    }
    names
}

/// Draining on one server vs a 3-primary cluster, rounds alternating; then Redis memory per job.
async fn deployments(table: &mut Table, single_url: &str, rounds: usize, backlog: usize) {
    table.section("6. Redis deployments (2 workers per queue, no-op jobs; every process on these 2 cores)");
    let cluster = RedisCluster::start();
    let (single, clustered) = (server(single_url), RedisTarget::cluster(cluster.urls()).expect("urls"));
    let mut rates: [Vec<f64>; 7] = Default::default();
    let mut e2e: [Vec<f64>; 4] = Default::default();
    let (mut cpu_per_job, mut cpu_per_job_p6) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let one = |p: &str| vec![QueueConfig::new(format!("{p}{round}"))];
        let parted = |p: &str, n: u16| vec![QueueConfig::new(format!("{p}{round}")).partitions(n)];
        let three = |p: &str| -> Vec<QueueConfig> {
            queues_on_distinct_primaries(&cluster, &format!("{p}{round}-"), 3)
                .into_iter()
                .map(QueueConfig::new)
                .collect()
        };
        let cpu = redis_cpu_secs(single_url).await;
        rates[0].push(drain_on(&single, &one("single"), backlog, PushOptions::new()).await.0);
        cpu_per_job.push((redis_cpu_secs(single_url).await - cpu) / usize_f64(backlog) * 1e6);
        rates[1].push(drain_on(&clustered, &one("cluster"), backlog, PushOptions::new()).await.0);
        rates[2].push(drain_on(&single, &three("single3"), backlog, PushOptions::new()).await.0);
        rates[3].push(drain_on(&clustered, &three("cluster3"), backlog, PushOptions::new()).await.0);
        rates[4].push(drain_on(&clustered, &parted("cluster-p3-", 3), backlog, PushOptions::new()).await.0);
        rates[5].push(drain_on(&clustered, &parted("cluster-p6-", 6), backlog, PushOptions::new()).await.0);
        let e2e_n = backlog / 4;
        e2e[0].push(e2e_on(&single, QueueConfig::new(format!("e2e-single{round}")), e2e_n).await);
        e2e[1].push(e2e_on(&clustered, QueueConfig::new(format!("e2e-cluster{round}")), e2e_n).await);
        e2e[2].push(e2e_on(&clustered, QueueConfig::new(format!("e2e-cluster-p6-{round}")).partitions(6), e2e_n).await);
        e2e[3].push(e2e_on(&single, QueueConfig::new(format!("e2e-single-p6-{round}")).partitions(6), e2e_n).await);
        let cpu = redis_cpu_secs(single_url).await;
        rates[6].push(drain_on(&single, &parted("single-p6-", 6), backlog, PushOptions::new()).await.0);
        cpu_per_job_p6.push((redis_cpu_secs(single_url).await - cpu) / usize_f64(backlog) * 1e6);
    }
    let [single1, cluster1, single3, cluster3, cluster_p3, cluster_p6, single_p6] = rates.map(|r| median(&r));
    table.row(
        &format!("drain one {backlog} backlog: 3-primary cluster vs one server"),
        format!("{cluster1:.0} vs {single1:.0} jobs/s"),
        format!("{:.2}x", cluster1 / single1),
        "one queue is one slot: one primary",
    );
    table.row(
        &format!("drain three {backlog} backlogs at once, one queue per primary: cluster vs one server"),
        format!("{cluster3:.0} vs {single3:.0} jobs/s"),
        format!("{:.2}x", cluster3 / single3),
        "on 2 shared cores; see the scaling model",
    );
    for (what, rate, base, note) in [
        ("one queue of 3 partitions on the cluster vs 1 partition", cluster_p3, cluster1, "partitions on 3 primaries"),
        ("one queue of 6 partitions on the cluster vs 1 partition", cluster_p6, cluster1, "two per primary"),
        (
            "one queue of 6 partitions on one server vs 1 partition",
            single_p6,
            single1,
            "what partitions cost without a cluster",
        ),
    ] {
        table.row(
            &format!("drain one {backlog} backlog: {what}"),
            format!("{rate:.0} vs {base:.0} jobs/s"),
            format!("{:.2}x", rate / base),
            note,
        );
    }
    let [e2e_single, e2e_cluster, e2e_p6, e2e_single_p6] = e2e.map(|r| median(&r));
    for (what, rate, base) in [
        ("3-primary cluster vs one server, 1 partition", e2e_cluster, e2e_single),
        ("3-primary cluster, 6 partitions vs 1", e2e_p6, e2e_cluster),
        ("one server, 6 partitions vs 1", e2e_single_p6, e2e_single),
    ] {
        table.row(
            &format!("end to end, 8 producers, {} no-op jobs: {what}", backlog / 4),
            format!("{rate:.0} vs {base:.0} jobs/s"),
            format!("{:.2}x", rate / base),
            "push one by one while 2 workers run",
        );
    }
    let cpu = median(&cpu_per_job);
    table.row(
        "Redis CPU per job on one server (`INFO cpu` over a drain, push included)",
        format!("{cpu:.1} µs"),
        String::new(),
        &format!("one primary's ceiling: {:.0} jobs/s per core", 1e6 / cpu),
    );
    let cpu_p6 = median(&cpu_per_job_p6);
    table.row(
        "Redis CPU per job, one queue of 6 partitions on one server",
        format!("{cpu_p6:.1} µs"),
        format!("{:.2}x", cpu_p6 / cpu),
        "smaller batches per partition: the cost of spreading",
    );
    memory_rows(table, single_url, backlog).await;
}

/// The rows of Redis memory per queued job and per ended job.
async fn memory_rows(table: &mut Table, single_url: &str, backlog: usize) {
    let (queued, ended) = memory_per_job(single_url, backlog).await;
    table.row(
        &format!("Redis memory per queued job ({backlog} queued, `{{\"n\":12345}}` payloads)"),
        format!("{queued:.0} B"),
        String::new(),
        "stream entry + record (`MEMORY USAGE`)",
    );
    table.row(
        "Redis memory per ended job (done, record kept)",
        format!("{ended:.0} B"),
        String::new(),
        "record + state set entry",
    );
}

/// The CPU time (user + system) the Redis at `redis_url` has used, in seconds.
async fn redis_cpu_secs(redis_url: &str) -> f64 {
    let mut con = redis::Client::open(redis_url).expect("url").get_multiplexed_async_connection().await.expect("con");
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut con).await.expect("INFO cpu");
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(*k, "used_cpu_user" | "used_cpu_sys"))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// Redis memory per queued job and per ended job, from `MEMORY USAGE` of the queue's keys
/// (every entry sampled) after pushing `n` jobs, then after running them.
async fn memory_per_job(redis_url: &str, n: usize) -> (f64, f64) {
    let config = QueueConfig::new("memory");
    let q = Queue::connect(server(redis_url), config.clone()).await.expect("q");
    q.ensure_group().await.expect("group");
    let payloads: Vec<serde_json::Value> = (0..n).map(|i| serde_json::json!({ "n": 10_000 + i })).collect();
    let pushed = q.push_bulk("noop", 1, &payloads, PushOptions::new()).await.expect("push");
    let mut con = redis::Client::open(redis_url).expect("url").get_multiplexed_async_connection().await.expect("con");
    let usage = async |con: &mut MultiplexedConnection, key: &str| -> f64 {
        let bytes: Option<u64> =
            redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query_async(con).await.expect("MEMORY");
        as_f64(bytes.unwrap_or(0))
    };
    let records = async |con: &mut MultiplexedConnection| -> f64 {
        let mut total = 0.0;
        for p in &pushed {
            total += usage(con, &format!("{}{}", q.keys().record_prefix, p.job_id)).await;
        }
        total
    };
    let queued = usage(&mut con, &q.keys().stream).await + records(&mut con).await;
    let done = Arc::new(Done { count: AtomicU64::new(0) });
    let workers = start_workers_with(redis_url, config, noop_worker(&done)).await;
    wait_count(&done, n as u64, Duration::from_secs(120)).await;
    stop_workers(workers).await;
    let (_, total_done) = q.jobs(JobState::Done, 0, 0).await.expect("done jobs");
    assert_eq!(total_done, n as u64);
    let done_set = usage(&mut con, &format!("{}done", q.keys().state_prefix)).await;
    let ended = records(&mut con).await + done_set;
    (queued / usize_f64(n), ended / usize_f64(n))
}

/// What one phase of no-op jobs cost per job: Redis's CPU (`INFO cpu`), its time and calls
/// per command (`INFO commandstats`, commands run by scripts included), this process's CPU
/// and its heap allocations (workers and bench together).
struct Cost {
    rate: f64,
    redis_cpu_us: f64,
    process_cpu_us: f64,
    allocs: f64,
    /// Per command: (name, calls per job, µs per job), the most expensive first.
    commands: Vec<(String, f64, f64)>,
}

impl Cost {
    /// Command `name`'s calls and µs per job (none: 0).
    fn command(&self, name: &str) -> (f64, f64) {
        self.commands.iter().find(|(n, _, _)| n == name).map_or((0.0, 0.0), |&(_, calls, us)| (calls, us))
    }

    /// The names of its 12 most expensive commands.
    fn top_commands(&self) -> Vec<String> {
        self.commands.iter().take(12).map(|(name, _, _)| name.clone()).collect()
    }
}

/// `INFO commandstats` as (command, calls, µs).
async fn command_stats(con: &mut MultiplexedConnection) -> Vec<(String, u64, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(con).await.expect("INFO commandstats");
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
        .map(|(name, rest)| {
            let num = |key: &str| {
                rest.split(',').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok()).unwrap_or(0)
            };
            (name.to_owned(), num("calls"), num("usec"))
        })
        .collect()
}

/// Measures one phase of `n` no-op jobs on the queue `config` describes: a drain of a backlog
/// pushed before the counters start (`e2e` false), or 8 producers pushing one by one while the
/// workers run.
async fn cost_of(redis_url: &str, config: QueueConfig, n: usize, e2e: bool) -> Cost {
    cost_with(redis_url, config, n, e2e, PushOptions::new()).await
}

/// [`cost_of`] with the drain's backlog pushed with `options`.
async fn cost_with(redis_url: &str, config: QueueConfig, n: usize, e2e: bool, options: PushOptions) -> Cost {
    let q = Queue::connect(server(redis_url), config.clone()).await.expect("q");
    q.ensure_group().await.expect("group");
    if !e2e {
        q.push_bulk("noop", 1, std::iter::repeat_n(&(), n), options).await.expect("bulk push");
    }
    let mut admin = redis::Client::open(redis_url).expect("url").get_multiplexed_async_connection().await.expect("c");
    let done = Arc::new(Done { count: AtomicU64::new(0) });
    let mut workers = Vec::new();
    if e2e {
        workers = start_workers_with(redis_url, config.clone(), noop_worker(&done)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut admin).await.expect("RESETSTAT");
    let redis_cpu = redis_cpu_secs(redis_url).await;
    let (t, cpu) = (Instant::now(), cpu_ns());
    ALL_ALLOCS.store(0, Ordering::Relaxed);
    COUNT_ALL.store(true, Ordering::Relaxed);
    if e2e {
        push_from_eight(&q, n).await;
    } else {
        workers = start_workers_with(redis_url, config, noop_worker(&done)).await;
    }
    wait_count(&done, n as u64, Duration::from_secs(120)).await;
    COUNT_ALL.store(false, Ordering::Relaxed);
    let (took, cpu) = (t.elapsed(), cpu_ns().saturating_sub(cpu));
    let allocs = ALL_ALLOCS.load(Ordering::Relaxed);
    let redis_cpu = redis_cpu_secs(redis_url).await - redis_cpu;
    let mut commands: Vec<(String, f64, f64)> = command_stats(&mut admin)
        .await
        .into_iter()
        .filter(|(name, _, _)| !matches!(name.as_str(), "info" | "config|resetstat"))
        .map(|(name, calls, usec)| (name, as_f64(calls) / usize_f64(n), as_f64(usec) / usize_f64(n)))
        .collect();
    commands.sort_by(|a, b| b.2.total_cmp(&a.2));
    stop_workers(workers).await;
    let per = |x: f64| x / usize_f64(n);
    Cost {
        rate: usize_f64(n) / took.as_secs_f64(),
        redis_cpu_us: per(redis_cpu * 1e6),
        process_cpu_us: per(as_f64(cpu) / 1e3),
        allocs: per(as_f64(allocs)),
        commands,
    }
}

/// Section p's rows for one phase: medians over `runs` of [`cost_of`].
async fn cost_rows(table: &mut Table, redis_url: &str, label: &str, n: usize, e2e: bool, runs: usize, keep: Keep) {
    let mut costs = Vec::new();
    for i in 0..runs {
        let config = QueueConfig::new(format!("cost-{label}{i}-{}", keep.is_kept())).keep_done(keep);
        costs.push(cost_of(redis_url, config, n, e2e).await);
    }
    let label = &if keep.is_kept() { label.to_owned() } else { format!("{label}, done jobs not kept") };
    let med = |f: &dyn Fn(&Cost) -> f64| median(&costs.iter().map(f).collect::<Vec<_>>());
    let rate = med(&|c| c.rate);
    let redis_cpu = med(&|c| c.redis_cpu_us);
    let process_cpu = med(&|c| c.process_cpu_us);
    table.row(
        &format!("{label}: rate; Redis CPU per job; this process's CPU per job (workers and bench)"),
        format!("{rate:.0} jobs/s; {redis_cpu:.2} µs; {process_cpu:.2} µs"),
        format!("{:.2} µs of 1/rate", 1e6 / rate),
        "",
    );
    table.row(
        &format!("{label}: heap allocations per job in this process"),
        format!("{:.1}", med(&|c| c.allocs)),
        String::new(),
        "",
    );
    for name in costs[0].top_commands() {
        let calls = med(&|c| c.command(&name).0);
        let usec = med(&|c| c.command(&name).1);
        table.row(
            &format!("{label}: `{name}` per job (calls; Redis µs, commands run by scripts included)"),
            format!("{calls:.3} calls; {usec:.2} µs"),
            String::new(),
            "",
        );
    }
}

#[allow(clippy::too_many_lines, reason = "the run, section by section, top to bottom")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only 1,2`: run only these sections (1: per job, 2: guard, 3: job layer, m: metrics,
    // p: cost per job, r: a rate limit never hit, k: one job at a time, 6: Redis deployments,
    // 7: the drain as the backlog grows, s: the stores side by side, g: the Postgres drain as
    // ended jobs pile up).
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let want = |n: &str| only.as_ref().is_none_or(|o| o.split(',').any(|s| s == n));
    let sizes = if quick {
        Sizes {
            rounds: 3,
            seq_jobs: 300,
            conc_jobs: 1_000,
            guard_rounds: 9,
            guard_batch: 50_000,
            backlog: 20_000,
            e2e: 5_000,
            long_idle: Duration::from_secs(3),
            getset_jobs: 2_000,
        }
    } else {
        Sizes {
            rounds: 7,
            seq_jobs: 1_000,
            conc_jobs: 3_000,
            guard_rounds: 21,
            guard_batch: 100_000,
            backlog: 20_000,
            e2e: 20_000,
            long_idle: Duration::from_secs(30),
            getset_jobs: 5_000,
        }
    };
    let started = Instant::now();
    let redis = RedisServer::temporary().unwrap_or_else(|e| panic!("{e}"));
    let redis_port = redis.port().expect("a temporary redis-server has a port");
    let http = CountingHttp::start_on_thread();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut table = Table::default();
    println!(
        "dual-mode bench ({}), redis-server on port {}, HTTP on {}",
        if quick { "quick" } else { "full" },
        redis_port,
        http.addr
    );
    println!("machine: {}", machine());

    let env = rt.block_on(async {
        let spec =
            FetchSpec { url: format!("http://{}/", http.addr), redis_url: redis.url.clone(), key: "bench:k".into() };
        let http_client = dual_mode::HttpConfig::default().builder().build().expect("client");
        let con = redis::Client::open(redis.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let ctx = Context::new().with(http_client.clone()).with(con.clone());
        Arc::new(Env { spec, http: http_client, redis: con, ctx })
    });

    // `--profile <mode> <jobs>`: only run that many sequential jobs in that mode (for callgrind).
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        let mode = match args.get(i + 1).map(String::as_str) {
            Some("shared") => Mode::Shared,
            Some("temporary") => Mode::Temporary,
            Some("context") => Mode::Context,
            _ => Mode::Naive,
        };
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1_000);
        if std::env::var_os("BENCH_SPLIT").is_some() {
            rt.block_on(connect_breakdown(&env));
        }
        let took = rt.block_on(run_jobs(mode, &env, n, 1));
        println!("{}: {n} jobs in {took:?}", mode.name());
        return;
    }

    // 1.
    let rates = want("1").then(|| {
        let (seq, conc) = rt.block_on(async {
            let mut admin = redis::Client::open(redis.url.as_str())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("c");
            eprintln!("[{:>5.1}s] 1. per job, sequential", started.elapsed().as_secs_f64());
            let seq = per_job(&env, &http, &mut admin, 1, sizes.rounds, sizes.seq_jobs).await;
            eprintln!("[{:>5.1}s] 1. per job, 16 concurrent", started.elapsed().as_secs_f64());
            let conc = per_job(&env, &http, &mut admin, 16, sizes.rounds, sizes.conc_jobs).await;
            (seq, conc)
        });
        let seq_rates = report_per_job(&mut table, "sequential", &seq, (2.5, 16.0));
        let conc_rates = report_per_job(&mut table, "16 concurrent", &conc, (5.0, 71.0));
        (seq_rates, conc_rates)
    });

    // 2.
    if want("2") {
        eprintln!("[{:>5.1}s] 2. guard cost", started.elapsed().as_secs_f64());
        guard_cost(&mut table, &env, sizes.guard_rounds, sizes.guard_batch);
    }

    // 3.
    if want("3") {
        table.section("3. the job layer (2 workers, concurrency 16 each, no-op jobs unless said)");
        rt.block_on(async {
            eprintln!("[{:>5.1}s] 3. drain", started.elapsed().as_secs_f64());
            let mut drains = Vec::new();
            for i in 0..if quick { 1 } else { 3 } {
                drains.push(drain_noop(&redis.url, &format!("drain{i}"), sizes.backlog).await);
            }
            let drain = median(&drains);
            eprintln!("[{:>5.1}s] 3. drain with a rate limit", started.elapsed().as_secs_f64());
            // Side by side, alternating: no limit, then a per-key limit no job ever hits.
            let (mut free, mut limited) = (Vec::new(), Vec::new());
            for i in 0..if quick { 1 } else { 3 } {
                free.push(drain_noop(&redis.url, &format!("free{i}"), sizes.backlog).await);
                let config = QueueConfig::new(format!("limited{i}"))
                    .rate_limit(RateScope::Key("bench:".into()), RateLimit::per_second(u32::MAX));
                let options = PushOptions::new().rate_key("bench:1");
                limited.push(drain_noop_with(&redis.url, config, sizes.backlog, options).await);
            }
            let (free, limited) = (median(&free), median(&limited));
            table.row(
                &format!("drain a {} backlog with a per-key rate limit never hit vs without", sizes.backlog),
                format!("{limited:.0} vs {free:.0} jobs/s"),
                format!("{:.2}x", limited / free),
                &format!(">= 0.95x: {}", verdict(limited / free >= 0.95)),
            );
            eprintln!("[{:>5.1}s] 3. end to end", started.elapsed().as_secs_f64());
            let e2e = e2e_noop(&redis.url, "e2e", sizes.e2e).await;
            eprintln!("[{:>5.1}s] 3. XADD (redis-benchmark)", started.elapsed().as_secs_f64());
            let xadd = redis_benchmark_xadd(redis_port, 200_000, &[]);
            let xadd_p = redis_benchmark_xadd(redis_port, 1_000_000, &["-P", "16"]);
            table.row(
                &format!("drain a {} backlog (`push_bulk`, then start the workers)", sizes.backlog),
                format!("{drain:.0} jobs/s"),
                xadd.map_or_else(String::new, |x| format!("{:.2}x of XADD rate", drain / x)),
                &format!(">= 20k/s: {} (apalis-redis 8.4k/s, omniqueue 12.7k-20.4k/s)", verdict(drain >= 20_000.0)),
            );
            table.row(
                &format!("end to end, {} pushed one by one by 8 producers while 2 workers run", sizes.e2e),
                format!("{e2e:.0} jobs/s"),
                xadd.map_or_else(String::new, |x| format!("{:.2}x of XADD rate", e2e / x)),
                "anchor: apalis-redis 7.9k/s",
            );
            match (xadd, xadd_p) {
                (Some(x), Some(xp)) => {
                    table.row(
                        "`redis-benchmark` XADD of a 7-field entry (50 clients), same server",
                        format!("{x:.0} XADD/s"),
                        String::new(),
                        "reference",
                    );
                    table.row(
                        "`redis-benchmark` XADD, `-P 16` (pipelined)",
                        format!("{xp:.0} XADD/s"),
                        String::new(),
                        "reference",
                    );
                }
                _ => table.row("`redis-benchmark`", "not found".to_owned(), String::new(), "reference"),
            }
            eprintln!("[{:>5.1}s] 3. pickup after {:?} idle", started.elapsed().as_secs_f64(), sizes.long_idle);
            let idles = [
                sizes.long_idle,
                Duration::from_millis(300),
                Duration::from_millis(1_100),
                Duration::from_millis(700),
                Duration::from_millis(1_500),
                Duration::from_millis(450),
            ];
            let lat = pickup(&redis.url, "pickup", &idles).await;
            table.row(
                &format!("pickup latency after {} s idle", sizes.long_idle.as_secs()),
                format!("{:.2} ms", lat[0]),
                String::new(),
                &format!("< 10 ms: {} (apalis-redis 18 s, omniqueue 0-1 ms)", verdict(lat[0] < 10.0)),
            );
            table.row(
                "pickup latency after 0.3-1.5 s idle (median of 5)",
                format!("{:.2} ms", median(&lat[1..])),
                String::new(),
                &format!("max {:.2} ms", lat[1..].iter().copied().fold(0.0, f64::max)),
            );
            eprintln!("[{:>5.1}s] 3. GET + SET jobs through the queue", started.elapsed().as_secs_f64());
            let (queued, direct) = getset_through_queue(&redis.url, "getset", &env, sizes.getset_jobs).await;
            let overhead = direct / queued - 1.0;
            table.row(
                &format!(
                    "{} GET + SET jobs: queued (2 workers, `Clients::Context`) vs direct (32 in flight)",
                    sizes.getset_jobs
                ),
                format!("{queued:.0} vs {direct:.0} jobs/s"),
                format!("{:+.0}% time per job", overhead * 100.0),
                &format!("overhead < 10%: {}", verdict(overhead < 0.10)),
            );
            let (lq, ld) = getset_latency(&redis.url, "latency", &env, if quick { 100 } else { 300 }).await;
            table.row(
                "one GET + SET job at a time: push to handler done (queued) vs run directly, both context clients",
                format!("{lq:.0} µs vs {ld:.0} µs"),
                format!("{:+.0}% time per job", (lq / ld - 1.0) * 100.0),
                &format!("overhead < 10%: {}", verdict(lq / ld - 1.0 < 0.10)),
            );
            if let Some((seq_rates, _)) = &rates {
                let noop_cost = 1e6 / drain;
                let seq_job = 1e6 / seq_rates[2];
                table.row(
                    "no-op job cost (1 / drain rate) vs one sequential GET + SET job (context)",
                    format!("{noop_cost:.1} µs vs {seq_job:.1} µs"),
                    format!("{:.0}%", noop_cost / seq_job * 100.0),
                    &format!("< 10%: {}", verdict(noop_cost / seq_job < 0.10)),
                );
            }
        });
    }

    // m.
    if want("m") {
        table.section("m. metrics on the no-op drain (2 workers, concurrency 16 each)");
        eprintln!("[{:>5.1}s] m. drain with metrics recorded and not", started.elapsed().as_secs_f64());
        rt.block_on(async {
            // Side by side, alternating: no-op handles, then the Prometheus exporter's.
            let prometheus = install_switched_recorder();
            let (mut off, mut on, mut off_cpu, mut on_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for i in 0..if quick { 7 } else { 11 } {
                let (unmetered, metered) = (format!("unmetered{i}"), format!("metered{i}"));
                let (rate, cpu) = drain_noop_metrics(&redis.url, &unmetered, sizes.backlog, &prometheus, false).await;
                off.push(rate);
                off_cpu.push(cpu);
                let (rate, cpu) = drain_noop_metrics(&redis.url, &metered, sizes.backlog, &prometheus, true).await;
                on.push(rate);
                on_cpu.push(cpu);
            }
            let spread = |v: Vec<f64>| {
                let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
                format!("{lo:.2}x-{hi:.2}x")
            };
            let rate_ratios: Vec<f64> = on.iter().zip(&off).map(|(on, off)| on / off).collect();
            let cpu_ratios: Vec<f64> = on_cpu.iter().zip(&off_cpu).map(|(on, off)| on / off).collect();
            let (off, on, off_cpu, on_cpu) = (median(&off), median(&on), median(&off_cpu), median(&on_cpu));
            table.row(
                &format!("drain a {} backlog, metrics recorded (Prometheus exporter) vs not: rate", sizes.backlog),
                format!("{on:.0} vs {off:.0} jobs/s"),
                format!("{:.2}x (pairs {})", on / off, spread(rate_ratios)),
                &format!("cost <= 5%: {}", verdict(on / off >= 0.95)),
            );
            table.row(
                "the same: this process's CPU per job (workers and bench; Redis not included)",
                format!("{on_cpu:.2} vs {off_cpu:.2} µs"),
                format!("{:.3}x (pairs {})", on_cpu / off_cpu, spread(cpu_ratios)),
                &format!(
                    "{:+.2} µs/job: {:.1}% of the no-op job's 1/rate",
                    on_cpu - off_cpu,
                    (on_cpu - off_cpu) * off / 1e4
                ),
            );
        });
    }

    // p.
    if want("p") {
        table.section("p. where a no-op job's time goes (2 workers x 16, one server; medians)");
        eprintln!("[{:>5.1}s] p. cost per job", started.elapsed().as_secs_f64());
        let runs = if quick { 3 } else { 5 };
        rt.block_on(async {
            let day = Keep::for_time(Duration::from_secs(24 * 3600));
            for keep in [day, Keep::none()] {
                cost_rows(&mut table, &redis.url, "drain", sizes.backlog, false, runs, keep).await;
                cost_rows(&mut table, &redis.url, "end to end", sizes.e2e, true, runs, keep).await;
            }
            // The reference the goals are set against, by the same measure: Redis CPU per XADD.
            let before = redis_cpu_secs(&redis.url).await;
            let xadds = 200_000;
            if let Some(rate) = redis_benchmark_xadd(redis_port, xadds, &[]) {
                let cpu = (redis_cpu_secs(&redis.url).await - before) * 1e6 / usize_f64(xadds);
                table.row(
                    "`redis-benchmark` XADD of a 7-field entry (50 clients): rate; Redis CPU per XADD",
                    format!("{rate:.0} XADD/s; {cpu:.2} µs"),
                    format!("{:.2} µs of 1/rate", 1e6 / rate),
                    "reference",
                );
            }
        });
    }

    if want("r") {
        table.section("r. a per-key rate limit never hit: the drain beside the same drain without (2 workers x 16)");
        eprintln!("[{:>5.1}s] r. a rate limit never hit", started.elapsed().as_secs_f64());
        let runs = if quick { 5 } else { 9 };
        rt.block_on(async {
            let (mut free, mut limited) = (Vec::new(), Vec::new());
            for i in 0..runs {
                let config = QueueConfig::new(format!("r-free{i}"));
                free.push(cost_of(&redis.url, config, sizes.backlog, false).await);
                let config = QueueConfig::new(format!("r-limited{i}"))
                    .rate_limit(RateScope::Key("bench:".into()), RateLimit::per_second(u32::MAX));
                let options = PushOptions::new().rate_key("bench:1");
                limited.push(cost_with(&redis.url, config, sizes.backlog, false, options).await);
            }
            let med = |costs: &[Cost], f: fn(&Cost) -> f64| median(&costs.iter().map(f).collect::<Vec<_>>());
            let ratios: Vec<f64> = free.iter().zip(&limited).map(|(f, l)| l.rate / f.rate).collect();
            let (lo, hi) = ratios.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            let ratio = median(&ratios);
            table.row(
                &format!("drain a {} backlog, limited vs not: rate (medians of {runs} pairs)", sizes.backlog),
                format!("{:.0} vs {:.0} jobs/s", med(&limited, |c| c.rate), med(&free, |c| c.rate)),
                format!("{ratio:.2}x (pairs {lo:.2}x-{hi:.2}x)"),
                &format!(">= 0.95x: {}", verdict(ratio >= 0.95)),
            );
            for (what, f) in [
                ("Redis CPU per job", (|c: &Cost| c.redis_cpu_us) as fn(&Cost) -> f64),
                ("this process's CPU per job", |c: &Cost| c.process_cpu_us),
            ] {
                let (l, f) = (med(&limited, f), med(&free, f));
                table.row(
                    &format!("{what}, limited vs not"),
                    format!("{l:.2} vs {f:.2} µs"),
                    format!("{:.2}x", l / f),
                    "",
                );
            }
            for name in limited[0].top_commands() {
                let per = |costs: &[Cost], pick: fn((f64, f64)) -> f64| {
                    median(&costs.iter().map(|c| pick(c.command(&name))).collect::<Vec<_>>())
                };
                table.row(
                    &format!("`{name}` per job, limited vs not (calls; Redis µs, commands run by scripts included)"),
                    format!(
                        "{:.3} vs {:.3} calls; {:.2} vs {:.2} µs",
                        per(&limited, |x| x.0),
                        per(&free, |x| x.0),
                        per(&limited, |x| x.1),
                        per(&free, |x| x.1)
                    ),
                    String::new(),
                    "",
                );
            }
        });
    }

    if want("k") {
        table.section("k. one job at a time: a push to an idle worker until its handler starts (one worker)");
        eprintln!("[{:>5.1}s] k. one job at a time", started.elapsed().as_secs_f64());
        let n = if quick { 200 } else { 1_000 };
        let [pickup, push, ping] = rt.block_on(one_at_a_time(&redis.url, "one-at-a-time", n, Duration::from_millis(5)));
        let over: Vec<f64> = pickup.iter().zip(&push).map(|(a, b)| a - b).collect();
        for (what, xs) in [
            ("from the push's call to the handler's start", &pickup),
            ("the push's own round trip (the job is stored when it returns)", &push),
            ("pickup over the push: what the worker adds to running it at once", &over),
            ("a `PING` round trip on another connection", &ping),
        ] {
            table.row(
                &format!("{what}: p50; p99 ({n} jobs, 5 ms idle before each)"),
                format!("{:.3} ms; {:.3} ms", percentile(xs, 50), percentile(xs, 99)),
                String::new(),
                "",
            );
        }
        let trips = |q| percentile(&pickup, q) / percentile(&ping, q);
        table.row(
            "from the push's call to the handler's start, in `PING` round trips: p50; p99",
            format!("{:.1}; {:.1}", trips(50), trips(99)),
            String::new(),
            &format!("<= 1 round trip (delivered on the wake): {}", verdict(trips(50) <= 1.0)),
        );
    }

    // 4.
    if let Some((seq_rates, conc_rates)) = rates {
        table.section("4. the Python original (httpx + redis-py, temporary clients via `async with`; quoted)");
        let temp_seq = seq_rates[1];
        let temp_conc = conc_rates[1];
        table.row(
            "temporary clients, sequential: dual-mode vs Python 36-43 jobs/s",
            format!("{temp_seq:.0} jobs/s"),
            format!("{:.0}x-{:.0}x", temp_seq / 43.0, temp_seq / 36.0),
            &format!(">= 30x: {}", verdict(temp_seq / 43.0 >= 30.0)),
        );
        table.row(
            "temporary clients, 16 concurrent: dual-mode vs Python 44-47 jobs/s",
            format!("{temp_conc:.0} jobs/s"),
            format!("{:.0}x-{:.0}x", temp_conc / 47.0, temp_conc / 44.0),
            "",
        );
        table.row(
            "shared clients, sequential: dual-mode vs Python 803-1148 jobs/s",
            format!("{:.0} jobs/s", seq_rates[0]),
            format!("{:.1}x-{:.1}x", seq_rates[0] / 1148.0, seq_rates[0] / 803.0),
            "",
        );
    }

    // 6.
    if want("6") {
        eprintln!("[{:>5.1}s] 6. Redis deployments", started.elapsed().as_secs_f64());
        rt.block_on(deployments(&mut table, &redis.url, if quick { 1 } else { 3 }, sizes.backlog));
    }

    // 7.
    if want("7") {
        table.section("7. the no-op drain as the backlog grows (2 workers x 16, one server)");
        eprintln!("[{:>5.1}s] 7. drain as the backlog grows", started.elapsed().as_secs_f64());
        let backlogs: &[usize] = if quick { &[10_000, 100_000] } else { &[10_000, 100_000, 1_000_000] };
        rt.block_on(async {
            let mut first = None;
            for (i, &n) in backlogs.iter().enumerate() {
                let (rate, cpu) =
                    drain_noop_cpu(&redis.url, QueueConfig::new(format!("grow{i}")), n, PushOptions::new()).await;
                let base = *first.get_or_insert(rate);
                table.row(
                    &format!("drain a backlog of {n}"),
                    format!("{rate:.0} jobs/s, {:.2} µs CPU/job here", cpu.as_secs_f64() * 1e6 / usize_f64(n)),
                    format!("{:.2}x of the smallest", rate / base),
                    &format!("cost per job flat (linear total): {}", verdict(rate / base >= 0.8)),
                );
            }
        });
    }

    // s.
    if want("s") {
        table.section("s. the stores side by side: Redis, in process and Postgres (2 workers x 16, no-op jobs)");
        eprintln!("[{:>5.1}s] s. stores", started.elapsed().as_secs_f64());
        let pg = dual_mode_test_support::PostgresServer::start();
        let rounds = if quick { 3 } else { 5 };
        rt.block_on(stores(&mut table, &redis.url, &pg.url, rounds, sizes.backlog, sizes.e2e));
    }

    if want("g") {
        table.section("g. the Postgres drain as ended jobs' records pile up (2 workers x 16, no-op jobs)");
        eprintln!("[{:>5.1}s] g. ended jobs", started.elapsed().as_secs_f64());
        let pg = dual_mode_test_support::PostgresServer::start();
        let rounds = if quick { 2 } else { 3 };
        let ended: &[usize] = &[10_000, 100_000, 1_000_000];
        rt.block_on(ended_growth(&mut table, &pg.url, rounds, sizes.backlog, ended));
    }

    table.print();
    println!("total {:.0} s; load average before/after: see `uptime`", started.elapsed().as_secs_f64());
    drop(rt);
    drop(redis);
}
