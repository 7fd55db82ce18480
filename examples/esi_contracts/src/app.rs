//! The main job: everything in one process, end to end, through the API.
//!
//! Starts the ESI stand-in (unless an ESI URL is given); keeps its data in `DATABASE_URL`, or
//! in a SQLite file in a temporary directory; queues its jobs on Redis at `REDIS_URL`, or in
//! this process; starts the API and two workers (two worker tasks in this process, each a
//! separate consumer with its own warm clients, as two processes would be), enqueues an
//! aggregation per region with `POST /regions/{id}/aggregate`, waits for the jobs
//! (`Queue::wait_for`, woken as each ends) with a progress line, prints a table per region from
//! its job's result, names the regions whose jobs failed, and stops everything it started (or,
//! with `--serve`, keeps serving until Ctrl-C). The API serves the job dashboard under
//! `/admin/jobs`; its URL, with a token drawn for this run, is printed first.

use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

use dual_mode::Secret;
use dual_mode::jobs::{JobOutcome, Queue, RunReport, WorkerHandle};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::admin;
use crate::aggregate::{ContractAggregationService, StoredSummary};
use crate::api::{self, AppState};
use crate::jobs::{self, BoxError, JobView, Secrets};
use crate::model::ContractType;
use crate::settings::{DatabaseUrl, EsiToken, RedisUrl, Settings};
use crate::standin::{self, RECORDED_AT, StandIn, StandInOptions};

/// What the main job is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// The ESI base URL; `None` starts the stand-in.
    pub esi_url: Option<String>,
    /// The regions to aggregate; empty: the settings' default regions.
    pub regions: Vec<i32>,
    /// The `User-Agent` to send; `None`: the settings' placeholder, refused by the real ESI.
    pub user_agent: Option<String>,
    /// The queue's Redis URL; `None` keeps the queue in this process.
    pub redis_url: Option<Secret<RedisUrl>>,
    /// The database URL; `None` uses a SQLite file in a temporary directory, removed at the end.
    pub database_url: Option<Secret<DatabaseUrl>>,
    /// The ESI token (may be empty).
    pub token: Secret<EsiToken>,
    /// How long to wait for the jobs.
    pub timeout: Duration,
    /// The job dashboard's token; `None` draws one, printed in the dashboard's URL.
    pub dashboard_token: Option<Secret<String>>,
    /// After the tables, keep the API, the dashboard and the workers running until Ctrl-C.
    pub serve: bool,
}

/// What the main job did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The summaries of the regions whose jobs succeeded (the jobs' results), in region order.
    pub summaries: Vec<StoredSummary>,
    /// The jobs' final records as `GET /jobs/{id}` answered them, in region order.
    pub jobs: Vec<JobView>,
    /// The regions that failed, with their parked job's last error (or `cancelled`).
    pub failed: Vec<(i32, String)>,
    /// `200` pages the stand-in served (`None` against a real ESI).
    pub pages_downloaded: Option<u64>,
    /// `304`s the stand-in served.
    pub pages_revalidated: Option<u64>,
    /// What the two workers reported when they stopped.
    pub workers: Vec<RunReport>,
    /// How many summaries each region's history holds afterwards, as `GET
    /// /regions/{id}/history` answered (the jobs wrote them; the API read them), in region
    /// order.
    pub history: Vec<(i32, usize)>,
}

/// A SQLite database in a directory of its own under the system's temporary directory,
/// removed on drop.
struct TempDatabase {
    dir: std::path::PathBuf,
}

impl TempDatabase {
    fn create() -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("esi-contracts-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.dir.join("esi.db").display())
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the main job started, stopped by [`Started::stop`] (and, for the processes, on drop).
struct Started {
    standin: Option<StandIn>,
    database: Option<TempDatabase>,
    stop: watch::Sender<bool>,
    api: JoinHandle<std::io::Result<()>>,
    workers: Vec<WorkerHandle>,
    api_url: String,
}

fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

impl Started {
    async fn stop(self) -> Vec<RunReport> {
        let _ = self.stop.send(true);
        let mut reports = Vec::new();
        for worker in self.workers {
            if let Ok(report) = worker.stop().await {
                reports.push(report);
            }
        }
        let _ = self.api.await;
        if let Some(standin) = self.standin {
            standin.shutdown().await;
        }
        drop(self.database);
        reports
    }
}

/// The settings for `esi_url` (and `regions`, unless empty; `user_agent`, when given), with
/// the embedded stand-in, serving its recorded pages, started when no ESI URL is given.
///
/// # Errors
/// The settings would call the real ESI with a placeholder contact, or the stand-in cannot
/// bind its port.
pub async fn settings_for(
    esi_url: Option<&str>,
    regions: &[i32],
    user_agent: Option<&str>,
) -> Result<(Settings, Option<StandIn>), BoxError> {
    let standin = match esi_url {
        Some(_) => None,
        None => Some(standin::start(StandInOptions { last_modified: Some(RECORDED_AT), ..Default::default() }).await?),
    };
    let url = esi_url.or_else(|| standin.as_ref().map(StandIn::base_url)).unwrap_or_default();
    let mut settings = Settings::for_esi(url);
    if !regions.is_empty() {
        settings.regions = regions.to_vec();
    }
    if let Some(agent) = user_agent {
        settings.http.user_agent = Some(agent.to_owned());
    }
    settings.check_contact()?;
    Ok((settings, standin))
}

/// Runs the main job, writing its progress and tables to `out`. Regions whose jobs were parked
/// are named at the end and listed in [`Report::failed`].
///
/// # Errors
/// Something could not be started, or the jobs did not finish in time.
pub async fn run(opts: Options, out: &mut (dyn Write + Send)) -> Result<Report, BoxError> {
    let (settings, standin) = settings_for(opts.esi_url.as_deref(), &opts.regions, opts.user_agent.as_deref()).await?;
    let esi_url = settings.esi_url.clone();
    let (database, database_url) = match &opts.database_url {
        Some(url) => (None, url.clone()),
        None => {
            let temp = TempDatabase::create()?;
            let url = Secret::new(DatabaseUrl::new(temp.url()));
            (Some(temp), url)
        }
    };
    writeln!(
        out,
        "ESI: {}; queue: {}; database: {}",
        standin.as_ref().map_or(esi_url.as_str(), |_| "embedded stand-in (recorded pages)"),
        match (&opts.redis_url, &opts.database_url) {
            (Some(_), _) => "Redis (REDIS_URL)",
            (None, Some(url)) if jobs::is_postgres(url.expose()) => "Postgres (DATABASE_URL)",
            _ => "in this process (REDIS_URL=redis://... for Redis)",
        },
        database.as_ref().map_or_else(
            || "DATABASE_URL".to_owned(),
            |d| format!("SQLite in {} (DATABASE_URL=postgres://... for Postgres)", d.dir.display())
        ),
    )?;
    let secrets = Secrets { token: opts.token.clone(), database_url };
    let queue =
        jobs::connect_queue(opts.redis_url.as_ref().map(Secret::expose), Some(secrets.database_url.expose())).await?;
    let mut state = AppState::connect(settings.clone(), secrets.clone(), queue.clone()).await?;
    let dashboard_token = opts.dashboard_token.clone().unwrap_or_else(admin::random_token);
    state.admin_token = Some(dashboard_token.clone());
    let (stop, stop_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let api = tokio::spawn(api::run(listener, state, stopped(&stop_rx)));
    let dashboard_url = match opts.dashboard_token {
        Some(_) => format!("{api_url}{} (user {}, password DASHBOARD_TOKEN)", admin::MOUNT, admin::USER),
        None => admin::url_with_token(&api_url, &dashboard_token),
    };
    writeln!(out, "dashboard: {dashboard_url}")?;
    let mut workers = Vec::new();
    for _ in 0..2 {
        let worker = jobs::worker(queue.clone(), &settings, secrets.clone(), jobs::worker_config(4)).await?;
        workers.push(worker.spawn());
    }
    let started = Started { standin, database, stop, api, workers, api_url };
    let outcome = drive(&started, &queue, &settings, opts.timeout, out).await;
    if opts.serve {
        writeln!(out, "serving the API, the dashboard and the workers until Ctrl-C")?;
        let _ = tokio::signal::ctrl_c().await;
    }
    let counts = started.standin.as_ref().map(|s| (s.ok_count(), s.not_modified_count()));
    let reports = started.stop().await;
    let Driven { summaries, records, failed, history } = outcome?;
    writeln!(out, "stopped the API, {} workers and everything else started", reports.len())?;
    Ok(Report {
        summaries,
        jobs: records,
        failed,
        pages_downloaded: counts.map(|c| c.0),
        pages_revalidated: counts.map(|c| c.1),
        workers: reports,
        history,
    })
}

/// What [`drive`] got.
struct Driven {
    summaries: Vec<StoredSummary>,
    records: Vec<JobView>,
    failed: Vec<(i32, String)>,
    history: Vec<(i32, usize)>,
}

/// Enqueues, waits, prints the tables of the regions that worked, then names those that
/// failed.
async fn drive(
    started: &Started,
    queue: &Queue,
    settings: &Settings,
    timeout: Duration,
    out: &mut (dyn Write + Send),
) -> Result<Driven, BoxError> {
    let http = dual_mode::HttpConfig::default().builder().timeout(Duration::from_secs(60)).build()?;
    let base = &started.api_url;
    writeln!(out, "API on {base}; 2 workers; enqueueing {} regions", settings.regions.len())?;
    let mut job_ids = Vec::new();
    for region in &settings.regions {
        let resp = http.post(format!("{base}/regions/{region}/aggregate")).send().await?;
        let status = resp.status();
        let body: Value = serde_json::from_slice(&resp.bytes().await?)?;
        let id = body["job_id"].as_str().filter(|_| status.as_u16() == 202);
        let id = id.ok_or_else(|| format!("POST /regions/{region}/aggregate answered {status}: {body}"))?;
        job_ids.push(id.to_owned());
    }

    // Every job waited for at once; each wait is woken by the job layer when its job ends.
    let start = Instant::now();
    let mut waits = JoinSet::new();
    for (i, id) in job_ids.iter().enumerate() {
        let (queue, id) = (queue.clone(), id.clone());
        waits.spawn(async move { (i, queue.wait_for::<ContractAggregationService>(&id, timeout).await) });
    }
    let mut outcomes = vec![None; job_ids.len()];
    progress(out, &outcomes, start)?;
    while let Some(joined) = waits.join_next().await {
        let (i, outcome) = joined?;
        match outcome {
            Ok(outcome) => outcomes[i] = Some(outcome),
            Err(e) => {
                writeln!(out)?;
                return Err(e.into());
            }
        }
        progress(out, &outcomes, start)?;
    }
    writeln!(out)?;
    let mut records = Vec::new();
    for id in &job_ids {
        let resp = http.get(format!("{base}/jobs/{id}")).send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            return Err(format!("GET /jobs/{id} answered {status}: {}", String::from_utf8_lossy(&bytes)).into());
        }
        records.push(serde_json::from_slice::<JobView>(&bytes)?);
    }
    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    for (region, outcome) in settings.regions.iter().zip(outcomes.into_iter().flatten()) {
        match outcome {
            JobOutcome::Done(stored) => {
                out.write_all(table(&stored).as_bytes())?;
                summaries.push(stored);
            }
            JobOutcome::Parked { error, .. } => failed.push((*region, error)),
            JobOutcome::Cancelled => failed.push((*region, "cancelled".to_owned())),
        }
    }
    if !failed.is_empty() {
        writeln!(out, "\nfailed regions:")?;
        for (region, why) in &failed {
            writeln!(out, "  {} ({region}): {why}", region_name(*region))?;
        }
    }
    // What the jobs wrote to the database, as the API reads it.
    let mut history = Vec::new();
    for region in &settings.regions {
        let resp = http.get(format!("{base}/regions/{region}/history")).send().await?;
        let status = resp.status();
        let body: Value = serde_json::from_slice(&resp.bytes().await?)?;
        let kept = body["summaries"].as_array().filter(|_| status.is_success());
        let kept = kept.ok_or_else(|| format!("GET /regions/{region}/history answered {status}: {body}"))?;
        history.push((*region, kept.len()));
    }
    let counts: Vec<String> = history.iter().map(|(region, n)| format!("{} {n}", region_name(*region))).collect();
    writeln!(out, "\nsummaries kept per region (GET /regions/{{id}}/history): {}", counts.join(", "))?;
    Ok(Driven { summaries, records, failed, history })
}

/// Rewrites the progress line: how many jobs are pending and how they ended.
fn progress(
    out: &mut (dyn Write + Send),
    outcomes: &[Option<JobOutcome<StoredSummary>>],
    start: Instant,
) -> std::io::Result<()> {
    let count = |f: fn(&JobOutcome<StoredSummary>) -> bool| outcomes.iter().flatten().filter(|o| f(o)).count();
    write!(
        out,
        "\rwaiting for {} jobs: {} pending, {} done, {} parked, {} cancelled ({:.1} s)  ",
        outcomes.len(),
        outcomes.iter().filter(|o| o.is_none()).count(),
        count(|o| matches!(o, JobOutcome::Done(_))),
        count(|o| matches!(o, JobOutcome::Parked { .. })),
        count(|o| matches!(o, JobOutcome::Cancelled)),
        start.elapsed().as_secs_f64()
    )?;
    out.flush()
}

/// A region's name, for the well-known ones.
fn region_name(region_id: i32) -> &'static str {
    match region_id {
        10_000_002 => "The Forge",
        10_000_043 => "Domain",
        10_000_032 => "Sinq Laison",
        10_000_030 => "Heimatar",
        10_000_042 => "Metropolis",
        _ => "region",
    }
}

/// ISK with thousands separators, rounded to the unit.
#[must_use]
pub fn isk(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// The printed table of one region.
#[must_use]
pub fn table(stored: &StoredSummary) -> String {
    let s = &stored.summary;
    let f = &stored.fetch;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n{} ({}): {} contracts as of {}; {} pages ({} downloaded, {} revalidated, {} cached)",
        region_name(s.region_id),
        s.region_id,
        s.contracts,
        s.computed_at,
        f.pages,
        f.downloaded,
        f.revalidated,
        f.fresh
    );
    let _ = writeln!(t, "  {:<14} {:>6} {:>22}", "type", "count", "ISK total");
    for kind in ContractType::ALL {
        let totals = s.by_type.get(kind);
        let _ = writeln!(t, "  {:<14} {:>6} {:>22}", kind.as_str(), totals.count, isk(totals.isk_total));
    }
    let _ = writeln!(t, "  expiring within 24 h: {}", s.expiring_within_24h);
    if s.skipped > 0 {
        let _ = writeln!(t, "  skipped: {} contracts with values this model does not read", s.skipped);
    }
    let _ = writeln!(t, "  most expensive item exchanges:");
    for (i, c) in s.top_item_exchanges.iter().enumerate() {
        let title = if c.title.is_empty() { String::new() } else { format!("  {:?}", c.title) };
        let _ = writeln!(t, "  {:>4}. {:>10} {:>22} ISK{title}", i + 1, c.contract_id, isk(c.price));
    }
    t
}
