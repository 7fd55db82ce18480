//! `esi-contracts jobs ...`: the dashboard's reads and actions on a terminal, through the same
//! [`Queue`] API.
//!
//! ```text
//! esi-contracts jobs stats                      counts, workers, jobs ended in the last 10 min
//! esi-contracts jobs list STATE [--after C] [--count N]
//!                                               queued, running, delayed, done, cancelled
//!                                               (by cursor), or parked (newest first)
//! esi-contracts jobs show ID                    a job's record and payload, or a parked entry
//! esi-contracts jobs redrive PARKED-ID | --all  re-drive parked entries
//! esi-contracts jobs cancel JOB-ID              cancel a job
//! esi-contracts jobs pause | resume             pause or resume the queue
//! ```

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dual_mode::jobs::{CancelOutcome, JobRecord, JobState, ParkedEntry, Queue, QueueError};

/// The usage of `jobs`.
pub const USAGE: &str = "\
usage: esi-contracts jobs COMMAND   (REDIS_URL; the queue esi-aggregate)

  stats                          counts, workers, jobs ended in the last 10 minutes
  list STATE [--after CURSOR] [--count N]
                                 jobs in a state (queued, running, delayed, done, cancelled),
                                 or parked entries (parked), a page at a time
  show ID                        a job's record and payload, or a parked entry by its id
  redrive PARKED-ID | --all      put parked entries back on the queue
  cancel JOB-ID                  cancel a job (a running one is told to stop)
  pause | resume                 stop or restart the queue's workers taking jobs
";

/// What went wrong: bad arguments (the usage is printed) or the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments are not a command.
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    /// Nothing has this id.
    #[error("{0}")]
    NotFound(String),
    /// Redis failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The output could not be written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs `jobs <args>` against `queue`, writing to `out`.
///
/// # Errors
/// Bad arguments, an unknown id, or Redis failed.
pub async fn run(queue: &Queue, args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let usage = |m: &str| CliError::Usage(m.to_owned());
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("stats"), None) => stats(queue, out).await,
        (Some("list"), Some(what)) => {
            let (after, count) = paging(&args[2..])?;
            if what == "parked" {
                list_parked(queue, after.as_deref(), count, out).await
            } else {
                let state: JobState = what.parse().map_err(|_| usage(&format!("unknown state {what:?}")))?;
                list(queue, state, after.as_deref(), count, out).await
            }
        }
        (Some("show"), Some(id)) if args.len() == 2 => show(queue, id, out).await,
        (Some("redrive"), Some("--all")) if args.len() == 2 => {
            let parked = queue.stats().await?.parked;
            let n = queue.redrive_all(usize::try_from(parked).unwrap_or(usize::MAX)).await?;
            writeln!(out, "re-drove {n} parked entries")?;
            Ok(())
        }
        (Some("redrive"), Some(id)) if args.len() == 2 => match queue.redrive(id).await? {
            Some(entry) => Ok(writeln!(out, "re-driven as entry {entry}")?),
            None => Err(CliError::NotFound(format!("no parked entry {id}"))),
        },
        (Some("cancel"), Some(id)) if args.len() == 2 => {
            let said = match queue.cancel(id).await? {
                CancelOutcome::Removed => "cancelled: it will never run".to_owned(),
                CancelOutcome::Requested => {
                    "cancellation requested: the running job is told within a second".to_owned()
                }
                CancelOutcome::AlreadyEnded(state) => format!("it had ended already ({state})"),
                CancelOutcome::Unknown => return Err(CliError::NotFound(format!("no job {id}"))),
                other => format!("{other:?}"),
            };
            writeln!(out, "{id}: {said}")?;
            Ok(())
        }
        (Some("pause"), None) => {
            let paused = queue.pause().await?;
            Ok(writeln!(out, "{}", if paused { "queue paused" } else { "the queue was paused already" })?)
        }
        (Some("resume"), None) => {
            let resumed = queue.resume().await?;
            Ok(writeln!(out, "{}", if resumed { "queue resumed" } else { "the queue was not paused" })?)
        }
        (Some(other), _) => Err(usage(&format!("unknown or incomplete command {other:?}"))),
        (None, _) => Err(usage("a command is needed")),
    }
}

/// `--after CURSOR` and `--count N` (default 20).
fn paging(args: &[String]) -> Result<(Option<String>, usize), CliError> {
    let (mut after, mut count) = (None, 20);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--after" => after = Some(value.clone()),
            "--count" => {
                count = value.parse().map_err(|_| CliError::Usage(format!("--count: {value:?} is not a number")))?;
            }
            other => return Err(CliError::Usage(format!("unknown option {other:?}"))),
        }
    }
    Ok((after, count.clamp(1, 1000)))
}

async fn stats(queue: &Queue, out: &mut dyn Write) -> Result<(), CliError> {
    let o = queue.overview().await?;
    let t = queue.throughput(10).await?;
    writeln!(
        out,
        "queue {}{}",
        queue.name(),
        o.paused_since.map_or(String::new(), |at| format!(" (paused {})", ago(at)))
    )?;
    writeln!(out, "  {:<10} {:>8}", "ready", o.ready)?;
    writeln!(out, "  {:<10} {:>8}", "running", o.running)?;
    writeln!(out, "  {:<10} {:>8}", "delayed", o.stats.delayed)?;
    writeln!(out, "  {:<10} {:>8}", "parked", o.stats.parked)?;
    writeln!(out, "  {:<10} {:>8}", "done", o.done)?;
    writeln!(out, "  {:<10} {:>8}", "cancelled", o.cancelled)?;
    writeln!(out, "kept of ended jobs: {}", queue.config().kept_of_ended_jobs())?;
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    writeln!(out, "last 10 min: {} done, {} parked, {} cancelled", sum(&t.done), sum(&t.parked), sum(&t.cancelled))?;
    let workers = queue.workers().await?;
    writeln!(out, "workers: {}", workers.len())?;
    for w in workers {
        writeln!(out, "  {}  holding {}  seen {} ago", w.name, w.pending, secs(w.last_seen))?;
    }
    Ok(())
}

async fn list(
    queue: &Queue,
    state: JobState,
    after: Option<&str>,
    count: usize,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let page = queue.jobs_page(state, after, count).await?;
    for r in &page.items {
        writeln!(
            out,
            "{}  {:<9} {:<28} attempt {:<2} {}{}",
            r.id,
            r.state.as_str(),
            r.type_name,
            r.attempt,
            r.worker.as_deref().unwrap_or("-"),
            r.error.as_deref().map(|e| format!("  error: {}", first_line(e))).unwrap_or_default()
        )?;
    }
    next(page.items.len(), page.next.as_deref(), out)
}

async fn list_parked(queue: &Queue, before: Option<&str>, count: usize, out: &mut dyn Write) -> Result<(), CliError> {
    let page = queue.parked_page(before, count).await?;
    for p in &page.items {
        writeln!(out, "{}  {:<18} job {}  {}", p.parked_id, p.reason_code, field(p, "id"), first_line(&p.detail))?;
    }
    next(page.items.len(), page.next.as_deref(), out)
}

fn next(shown: usize, next: Option<&str>, out: &mut dyn Write) -> Result<(), CliError> {
    match next {
        Some(cursor) => writeln!(out, "({shown} shown; next page: --after {cursor})")?,
        None => writeln!(out, "({shown} shown; the end)")?,
    }
    Ok(())
}

async fn show(queue: &Queue, id: &str, out: &mut dyn Write) -> Result<(), CliError> {
    // A parked id is a stream id, `<ms>-<seq>`; a job id is a UUID.
    let is_stream_id = id
        .split_once('-')
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()));
    if is_stream_id {
        let p = queue.parked_entry(id).await?.ok_or_else(|| CliError::NotFound(format!("no parked entry {id}")))?;
        return show_parked(&p, out);
    }
    let r = queue.job(id).await?.ok_or_else(|| CliError::NotFound(queue.why_no_record(id)))?;
    show_record(&r, out)?;
    if let Some(fields) = queue.job_fields(&r).await? {
        for (k, v) in fields {
            writeln!(out, "  {:<10} {}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v))?;
        }
    }
    Ok(())
}

fn show_record(r: &JobRecord, out: &mut dyn Write) -> Result<(), CliError> {
    let time = |t: Option<SystemTime>| t.map_or_else(|| "-".to_owned(), ago);
    writeln!(out, "job {}", r.id)?;
    writeln!(out, "  state      {}", r.state)?;
    writeln!(out, "  type       {}", r.type_name)?;
    let max = r.max_attempts.map(|m| format!(" of {m}")).unwrap_or_default();
    writeln!(out, "  attempt    {}{max}", r.attempt)?;
    writeln!(out, "  enqueued   {}", ago(r.enqueued_at))?;
    writeln!(out, "  started    {}", time(r.started_at))?;
    writeln!(out, "  finished   {}", time(r.finished_at))?;
    if r.due_at.is_some() {
        writeln!(out, "  due        {}", time(r.due_at))?;
    }
    writeln!(out, "  worker     {}", r.worker.as_deref().unwrap_or("-"))?;
    if let Some(reason) = r.park_reason {
        writeln!(out, "  parked as  {}", reason.code())?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "  error      {e}")?;
    }
    if let Some(result) = &r.result {
        writeln!(out, "  result     {}", String::from_utf8_lossy(result))?;
    }
    writeln!(out, "entry:")?;
    Ok(())
}

fn show_parked(p: &ParkedEntry, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(out, "parked entry {}", p.parked_id)?;
    writeln!(out, "  reason     {}", p.reason_code)?;
    writeln!(out, "  parked     {}", ago(UNIX_EPOCH + Duration::from_millis(p.parked_at_ms)))?;
    writeln!(out, "  by         {}", p.consumer)?;
    writeln!(out, "  detail     {}", p.detail)?;
    writeln!(out, "fields:")?;
    for (k, v) in &p.fields {
        writeln!(out, "  {:<10} {}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))?;
    }
    Ok(())
}

fn field(p: &ParkedEntry, name: &str) -> String {
    p.field(name).map_or_else(|| "-".to_owned(), |v| String::from_utf8_lossy(v).into_owned())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// How long ago (or ahead) `t` is.
fn ago(t: SystemTime) -> String {
    match SystemTime::now().duration_since(t) {
        Ok(d) => format!("{} ago", secs(d)),
        Err(e) => format!("in {}", secs(e.duration())),
    }
}
