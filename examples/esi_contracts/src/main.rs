//! The ESI contracts example: `EsiClient` and `ContractAggregationService`, one struct each,
//! run behind an axum API with shared clients and as queued jobs on workers.
//!
//! ```text
//! cargo run -p esi-contracts                  # the main job, end to end, then exit 0
//! cargo run -p esi-contracts -- api           # the API       (REDIS_URL, DATABASE_URL)
//! cargo run -p esi-contracts -- worker        # a worker      (REDIS_URL, DATABASE_URL)
//! cargo run -p esi-contracts -- schedule      # the schedule  (REDIS_URL)
//! cargo run -p esi-contracts -- standin       # the ESI stand-in alone
//! cargo run -p esi-contracts -- jobs stats    # the job queue on a terminal (REDIS_URL)
//! ```
//!
//! See the README's "The ESI example" for how the parts fit.

use std::process::ExitCode;
use std::time::Duration;

use dual_mode::Secret;
use dual_mode::jobs::{JobState, Queue};
use esi_contracts::jobs::{BoxError, Secrets};
use esi_contracts::settings::{DatabaseUrl, EsiToken, RedisUrl, Settings};
use esi_contracts::standin::{self, RECORDED_AT, StandIn, StandInOptions};
use esi_contracts::{admin, api, app, cli, error_chain, jobs};

const USAGE: &str = "\
usage: esi-contracts [COMMAND] [OPTIONS]

commands:
  (none)     the main job, in one process with nothing installed: the ESI stand-in (unless
             --esi-url), the queue (on REDIS_URL, else in the process), the database
             (DATABASE_URL, else SQLite in a temporary directory), the API and two workers;
             aggregates every region through the API,
             prints a table per region, names the regions that failed, stops everything
             and exits (non-zero when a region failed); prints the job dashboard's URL
             first, and with --serve keeps everything running after the tables
  api        serve the API on --listen (default 127.0.0.1:8080)
  worker     run aggregation jobs, --concurrency N at once (default 8)
  schedule   enqueue an aggregation of every region at each tick of --cron
             (default \"*/30 * * * *\", ESI's cache time)
  standin    serve the ESI stand-in on --listen (default 127.0.0.1:8081)
  jobs ...   the job queue on a terminal: stats, list, show, redrive, cancel, pause,
             resume (`esi-contracts jobs help`)

options:
  --esi-url URL      ESI base URL, https://esi.evetech.net (or .../latest) for the real one
                     (default: an embedded stand-in serving recorded pages; `api` and
                     `schedule` start their own on 127.0.0.1, which workers elsewhere cannot
                     reach)
  --user-agent UA    the User-Agent sent to ESI: the application and a contact, e.g.
                     \"my-app/1.0 (me@my.domain)\"; required for the real ESI
                     (default: ESI_USER_AGENT)
  --regions A,B,C    region ids (default 10000002,10000043,10000032)
  --listen ADDR      address for `api` and `standin`
  --concurrency N    jobs at once for `worker`
  --cron EXPR        cron expression for `schedule` (5 fields, or 6 with seconds)
  --tz ZONE          the IANA time zone --cron is read in, e.g. Europe/Berlin (default UTC)
  --timeout SECS     how long the main job waits for its jobs (default 120)
  --serve            the main job keeps the API (and its dashboard) and the workers running
                     after the tables, until Ctrl-C

environment:
  REDIS_URL   Redis for the job queue, which separate processes share (api, worker,
              schedule and jobs need it or a postgres:// DATABASE_URL; the main job keeps
              its queue in its own process without either). A secret: it never reaches the
              queue.
  DATABASE_URL  the database of ESI's page cache, the shared pauses and the summaries'
              history: postgres://... or sqlite://path?mode=rwc (required by api and
              worker; the main job uses SQLite in a temporary directory without it); a
              postgres:// one also holds the queue when REDIS_URL is unset. A secret: it
              never reaches the queue.
  ESI_TOKEN   optional ESI token; public contracts need none. Read once at start.
  ESI_USER_AGENT  the User-Agent, when --user-agent is not given.
  DASHBOARD_TOKEN the job dashboard's password (user admin; or a bearer token), served by
              `api` and the main job under /admin/jobs. `api` serves no dashboard without
              it; the main job draws one and prints it in the dashboard's URL.
";

/// The parsed command line.
#[derive(Debug, Default)]
struct Args {
    command: Option<String>,
    esi_url: Option<String>,
    user_agent: Option<String>,
    regions: Vec<i32>,
    listen: Option<String>,
    concurrency: Option<usize>,
    cron: Option<String>,
    tz: Option<String>,
    timeout_secs: Option<u64>,
    serve: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" | "help" => out.command = Some("help".into()),
            "--esi-url" => out.esi_url = Some(value("--esi-url")?),
            "--user-agent" => out.user_agent = Some(value("--user-agent")?),
            "--regions" => {
                out.regions = value("--regions")?
                    .split(',')
                    .map(|r| r.trim().parse::<i32>().map_err(|_| format!("--regions: {r:?} is not a region id")))
                    .collect::<Result<_, _>>()?;
            }
            "--listen" => out.listen = Some(value("--listen")?),
            "--concurrency" => {
                let v = value("--concurrency")?;
                out.concurrency = Some(v.parse().map_err(|_| format!("--concurrency: {v:?} is not a number"))?);
            }
            "--cron" => out.cron = Some(value("--cron")?),
            "--tz" => out.tz = Some(value("--tz")?),
            "--serve" => out.serve = true,
            "--timeout" => {
                let v = value("--timeout")?;
                out.timeout_secs = Some(v.parse().map_err(|_| format!("--timeout: {v:?} is not a number"))?);
            }
            "api" | "worker" | "schedule" | "standin" if out.command.is_none() => out.command = Some(arg),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

/// The ESI token from `ESI_TOKEN`, empty when unset.
fn token_from_env() -> Secret<EsiToken> {
    Secret::new(EsiToken::new(std::env::var("ESI_TOKEN").unwrap_or_default()))
}

/// The queue's Redis URL from `REDIS_URL`.
fn redis_url_from_env() -> Option<Secret<RedisUrl>> {
    std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()).map(|u| Secret::new(RedisUrl::new(u)))
}

/// The database URL from `DATABASE_URL`.
fn database_url_from_env() -> Option<Secret<DatabaseUrl>> {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()).map(|u| Secret::new(DatabaseUrl::new(u)))
}

/// The dashboard's token from `DASHBOARD_TOKEN`.
fn dashboard_token_from_env() -> Option<Secret<String>> {
    std::env::var("DASHBOARD_TOKEN").ok().filter(|t| !t.is_empty()).map(Secret::new)
}

/// The queue on `REDIS_URL`, else on a Postgres `DATABASE_URL`: separate processes share
/// their jobs through it.
async fn shared_queue() -> Result<Queue, BoxError> {
    let redis = redis_url_from_env();
    let database = database_url_from_env().filter(|url| jobs::is_postgres(url.expose()));
    if redis.is_none() && database.is_none() {
        return Err("REDIS_URL or a postgres:// DATABASE_URL must be set for this command: separate processes \
                    share their queue through it"
            .into());
    }
    jobs::connect_queue(redis.as_ref().map(Secret::expose), database.as_ref().map(Secret::expose)).await
}

/// The services' secrets, with the database on `DATABASE_URL`.
fn secrets() -> Result<Secrets, BoxError> {
    let database_url = database_url_from_env().ok_or(
        "DATABASE_URL must be set for this command (postgres://... or sqlite://path?mode=rwc): \
         separate processes share ESI's page cache, its pauses and the summaries through it",
    )?;
    Ok(Secrets { token: token_from_env(), database_url })
}

/// `--user-agent`, else `ESI_USER_AGENT`.
fn user_agent(args: &Args) -> Option<String> {
    args.user_agent.clone().or_else(|| std::env::var("ESI_USER_AGENT").ok().filter(|u| !u.trim().is_empty()))
}

/// The settings, and the embedded stand-in when no `--esi-url` was given.
async fn settings_for(args: &Args) -> Result<(Settings, Option<StandIn>), BoxError> {
    let (settings, standin) =
        app::settings_for(args.esi_url.as_deref(), &args.regions, user_agent(args).as_deref()).await?;
    if let Some(standin) = &standin {
        eprintln!("ESI stand-in on {} (use --esi-url for another ESI)", standin.base_url());
    }
    Ok((settings, standin))
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("stopping");
}

async fn run(args: Args) -> Result<(), BoxError> {
    match args.command.as_deref() {
        None => {
            let opts = app::Options {
                user_agent: user_agent(&args),
                esi_url: args.esi_url,
                regions: args.regions,
                redis_url: redis_url_from_env(),
                database_url: database_url_from_env(),
                token: token_from_env(),
                timeout: Duration::from_secs(args.timeout_secs.unwrap_or(120)),
                dashboard_token: dashboard_token_from_env(),
                serve: args.serve,
            };
            let mut stdout = std::io::stdout();
            let report = app::run(opts, &mut stdout).await?;
            let jobs_run: Vec<String> = report.workers.iter().map(|w| w.counts.succeeded.to_string()).collect();
            println!(
                "done: {} of {} regions, {} jobs done (per worker: {}); ESI pages: {} downloaded, {} revalidated",
                report.summaries.len(),
                report.jobs.len(),
                report.jobs.iter().filter(|j| j.state == JobState::Done).count(),
                jobs_run.join(" + "),
                report.pages_downloaded.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                report.pages_revalidated.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            );
            if !report.failed.is_empty() {
                let regions: Vec<String> = report.failed.iter().map(|(region, _)| region.to_string()).collect();
                return Err(format!("failed regions: {}", regions.join(", ")).into());
            }
        }
        Some("api") => {
            let secrets = secrets()?;
            let (settings, _standin) = settings_for(&args).await?;
            let queue = shared_queue().await?;
            let mut state = api::AppState::connect(settings, secrets, queue).await?;
            state.admin_token = dashboard_token_from_env();
            let listener = tokio::net::TcpListener::bind(args.listen.as_deref().unwrap_or("127.0.0.1:8080")).await?;
            eprintln!("API on http://{}", listener.local_addr()?);
            match state.admin_token {
                Some(_) => eprintln!("job dashboard on http://{}{} (user admin)", listener.local_addr()?, admin::MOUNT),
                None => eprintln!("no job dashboard: set DASHBOARD_TOKEN to serve one under {}", admin::MOUNT),
            }
            api::run(listener, state, ctrl_c()).await?;
        }
        Some("worker") => {
            let secrets = secrets()?;
            // Each job carries its own settings (ESI URL included); these only build the
            // worker's warm HTTP client.
            let settings = Settings::default();
            let queue = shared_queue().await?;
            let config = jobs::worker_config(args.concurrency.unwrap_or(8));
            let worker = jobs::worker(queue, &settings, secrets, config).await?;
            eprintln!("worker {} started", worker.consumer());
            let report = worker.run(ctrl_c()).await?;
            eprintln!("worker stopped: {:?}", report.counts);
        }
        Some("schedule") => {
            let (settings, _standin) = settings_for(&args).await?;
            let cron = args.cron.as_deref().unwrap_or("*/30 * * * *");
            let queue = shared_queue().await?;
            let zone = args.tz.as_deref();
            let scheduler = jobs::scheduler(queue, &settings, cron, zone)?;
            eprintln!("scheduling {} regions at {cron:?} ({})", settings.regions.len(), zone.unwrap_or("UTC"));
            let ticks = scheduler.run(ctrl_c()).await?;
            eprintln!("schedule stopped after enqueueing {ticks} ticks");
        }
        Some("standin") => {
            let addr = args.listen.as_deref().unwrap_or("127.0.0.1:8081");
            let opts = StandInOptions { last_modified: Some(RECORDED_AT), ..Default::default() };
            let standin = standin::start_on(addr, opts).await?;
            eprintln!("ESI stand-in on {}", standin.base_url());
            ctrl_c().await;
            standin.shutdown().await;
        }
        Some(_) => println!("{USAGE}"),
    }
    Ok(())
}

/// `esi-contracts jobs ...`.
async fn jobs_command(args: &[String]) -> Result<(), BoxError> {
    if matches!(args.first().map(String::as_str), None | Some("help" | "-h" | "--help")) {
        print!("{}", cli::USAGE);
        return Ok(());
    }
    let queue = shared_queue().await?;
    cli::run(&queue, args, &mut std::io::stdout()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().is_some_and(|a| a == "jobs") {
        return match jobs_command(&all[1..]).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("esi-contracts jobs: {}", error_chain(&*e));
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args(all.into_iter()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("esi-contracts: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Before any queue, worker or guard registers its metrics; `GET /metrics` serves them.
    esi_contracts::metrics::install();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esi-contracts: {}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}
