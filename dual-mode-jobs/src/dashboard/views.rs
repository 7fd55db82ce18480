//! The pages.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::actions::queue_url;
use super::html::{Esc, Span, Url, When, button, lossy, page, when};
use super::{Base, Fail, State, fail, plot, unavailable};
use crate::envelope::{field, field_of};
use crate::{JobRecord, JobState, ParkedEntry, QueueOverview, RawFields};

/// A consumer not seen for this long is not shown as live: a worker that runs jobs renews
/// their leases much more often, so one that holds jobs and is not seen is silent (see
/// [`WorkerInfo::last_seen`](crate::WorkerInfo::last_seen)).
const SILENT_AFTER: Duration = Duration::from_secs(60);

/// Minutes of throughput drawn.
const MINUTES: usize = 60;

type Query_ = Query<HashMap<String, String>>;
type Answer = Result<Response, Fail>;

/// The text of an action's outcome, from its redirect's query.
fn notice(query: &HashMap<String, String>) -> Option<String> {
    let n = query.get("n").map_or("", String::as_str);
    let text = match query.get("done")?.as_str() {
        "paused" => "Queue paused: its workers start no new job.".to_owned(),
        "resumed" => "Queue resumed.".to_owned(),
        "already-paused" => "The queue was paused already.".to_owned(),
        "not-paused" => "The queue was not paused.".to_owned(),
        "schedule-paused" => "Schedule paused.".to_owned(),
        "schedule-resumed" => "Schedule resumed.".to_owned(),
        "schedule-already-paused" => "The schedule was paused already.".to_owned(),
        "schedule-not-paused" => "The schedule was not paused.".to_owned(),
        "redriven" => "Re-driven: the job is back in the queue.".to_owned(),
        "redriven-all" => format!("Re-drove {} parked entries.", n.parse::<u64>().unwrap_or(0)),
        "gone" => "That parked entry is gone (re-driven already?).".to_owned(),
        "cancel-removed" => "Cancelled: the job will never run.".to_owned(),
        "cancel-requested" => "Cancellation requested: the running job is told within a second.".to_owned(),
        "cancel-ended" => "The job had ended already.".to_owned(),
        _ => return None,
    };
    Some(text)
}

fn html(body: String) -> Response {
    Html(body).into_response()
}

/// `GET /`: every queue with its counts and throughput.
pub(super) async fn overview(st: State, base: Base) -> Answer {
    let b = &base.0;
    let mut body = String::from(
        "<label class=\"live\"><input type=\"checkbox\" id=\"live\"> live</label><h1>Queues</h1>\
         <table><tr><th>queue</th><th class=\"n\">ready</th><th class=\"n\">running</th><th class=\"n\">delayed</th>\
         <th class=\"n\">parked</th><th class=\"n\">done</th><th class=\"n\">cancelled</th><th>state</th></tr>",
    );
    let mut plots = String::new();
    // Every queue's counts and throughput at once.
    let read = st.queues.iter().map(|q| async move { tokio::try_join!(q.overview(), q.throughput(MINUTES)) });
    let read = futures_util::future::try_join_all(read).await.map_err(unavailable(&base))?;
    for (q, (o, t)) in st.queues.iter().zip(read) {
        let qb = queue_url(&base, q.name());
        let _ = write!(
            body,
            "<tr><td><a href=\"{qb}\">{name}</a></td>\
             <td class=\"n\" data-count=\"ready\"><a href=\"{qb}/jobs?state=queued\">{}</a></td>\
             <td class=\"n\" data-count=\"running\"><a href=\"{qb}/jobs?state=running\">{}</a></td>\
             <td class=\"n\" data-count=\"delayed\"><a href=\"{qb}/jobs?state=delayed\">{}</a></td>\
             <td class=\"n\" data-count=\"parked\"><a href=\"{qb}/parked\">{}</a></td>\
             <td class=\"n\" data-count=\"done\"><a href=\"{qb}/jobs?state=done\">{}</a></td>\
             <td class=\"n\" data-count=\"cancelled\"><a href=\"{qb}/jobs?state=cancelled\">{}</a></td><td>{}</td></tr>",
            o.ready,
            o.running,
            o.stats.delayed,
            o.stats.parked,
            o.done,
            o.cancelled,
            paused_badge(&o),
            qb = Esc(&qb),
            name = Esc(q.name()),
        );
        let _ = write!(plots, "<h2>{}: jobs ended per minute</h2>{}", Esc(q.name()), throughput(&t));
    }
    body.push_str("</table>");
    body.push_str(&plots);
    Ok(html(page(b, "Queues", None, &body)))
}

fn paused_badge(o: &QueueOverview) -> String {
    match o.paused_since {
        Some(at) => format!("<span class=\"state paused\">paused</span> since {}", When(at)),
        None => "<span class=\"state\">active</span>".to_owned(),
    }
}

fn throughput(t: &crate::Throughput) -> String {
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    format!(
        "{}<p class=\"legend muted\"><span class=\"done\">&#9632; done {}</span>\
         <span class=\"parked\">&#9632; parked {}</span><span>&#9632; cancelled {}</span> in the last {} minutes</p>",
        plot::throughput(t),
        sum(&t.done),
        sum(&t.parked),
        sum(&t.cancelled),
        t.done.len()
    )
}

/// A queue's counts as cards linking to their lists.
fn cards(qb: &str, o: &QueueOverview) -> String {
    let card = |href: String, n: u64, label: &str| {
        format!("<div class=\"card\"><a href=\"{}\"><b>{n}</b><span>{label}</span></a></div>", Esc(&href))
    };
    let mut out = String::from("<div class=\"cards\">");
    out.push_str(&card(format!("{qb}/jobs?state=queued"), o.ready, "ready"));
    out.push_str(&card(format!("{qb}/jobs?state=running"), o.running, "running"));
    out.push_str(&card(format!("{qb}/jobs?state=delayed"), o.stats.delayed, "delayed"));
    out.push_str(&card(format!("{qb}/parked"), o.stats.parked, "parked"));
    out.push_str(&card(format!("{qb}/jobs?state=done"), o.done, "done"));
    out.push_str(&card(format!("{qb}/jobs?state=cancelled"), o.cancelled, "cancelled"));
    out.push_str("</div>");
    out
}

/// `GET /queues/{queue}`: counts, throughput, workers, schedules.
pub(super) async fn queue(st: State, base: Base, Path(name): Path<String>, Query(query): Query_) -> Answer {
    let q = st.queue(&base, &name)?;
    let (b, csrf, ro) = (&base.0, st.csrf.as_str(), st.read_only);
    let (o, t, workers, schedules) = tokio::try_join!(q.overview(), q.throughput(MINUTES), q.workers(), q.schedules())
        .map_err(unavailable(&base))?;
    let qb = queue_url(&base, q.name());
    let partitions = match q.partitions() {
        1 => String::new(),
        count => format!("<p class=\"muted\" id=\"partitions\">{count} partitions</p>"),
    };
    let mut body = format!(
        "<label class=\"live\"><input type=\"checkbox\" id=\"live\"> live</label>\
         <h1>Queue {} {}</h1>{partitions}",
        Esc(q.name()),
        paused_badge(&o)
    );
    if !ro {
        body.push_str(&match o.paused_since {
            Some(_) => button(&format!("{qb}/resume"), "resume queue", csrf, None),
            None => {
                button(&format!("{qb}/pause"), "pause queue", csrf, Some("Pause the queue? Workers start no new job."))
            }
        });
    }
    body.push_str(&cards(&qb, &o));
    if o.stats.parked_dropped > 0 {
        let _ =
            write!(body, "<p class=\"muted\">{} parked entries were dropped by the cap.</p>", o.stats.parked_dropped);
    }
    let _ = write!(body, "<h2>Jobs ended per minute</h2>{}", throughput(&t));

    body.push_str(
        "<h2>Workers</h2><p class=\"muted\">Consumers of the group and how long ago each last read, \
         claimed or renewed a lease (on Redis before 7.2, a read that got nothing does not count: \
         a worker of an empty queue looks idle).</p>",
    );
    if workers.is_empty() {
        body.push_str("<p class=\"muted\">No worker has joined this queue's group.</p>");
    } else {
        body.push_str("<table><tr><th>worker</th><th class=\"n\">holding</th><th>last seen</th><th>state</th></tr>");
        for w in &workers {
            let state = if w.last_seen < SILENT_AFTER {
                "<span class=\"state done\">live</span>"
            } else if w.pending > 0 {
                "<span class=\"state parked\">silent, holding jobs</span>"
            } else {
                "<span class=\"state\">idle</span>"
            };
            let _ = write!(
                body,
                "<tr><td class=\"mono\">{}</td><td class=\"n\">{}</td><td>{} ago</td><td>{state}</td></tr>",
                Esc(&w.name),
                w.pending,
                Span(w.last_seen)
            );
        }
        body.push_str("</table>");
    }

    body.push_str("<h2>Schedules</h2>");
    if schedules.is_empty() {
        body.push_str("<p class=\"muted\">No scheduler has registered a schedule on this queue.</p>");
    } else {
        body.push_str(
            "<table><tr><th>schedule</th><th>cron</th><th>next tick</th><th>last tick</th><th>state</th><th></th></tr>",
        );
        for s in &schedules {
            let sb = format!("{qb}/schedules/{}", Url(&s.name));
            let (state, action) = match s.paused_since {
                Some(at) => (
                    format!("<span class=\"state paused\">paused</span> since {}", When(at)),
                    button(&format!("{sb}/resume"), "resume", csrf, None),
                ),
                None => (
                    "<span class=\"state\">active</span>".to_owned(),
                    button(&format!("{sb}/pause"), "pause", csrf, None),
                ),
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"mono\">{} <span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{state}</td><td>{}</td></tr>",
                Esc(&s.name),
                Esc(s.cron.as_str()),
                Esc(s.cron.zone()),
                when(s.next_tick),
                when(s.last_tick),
                if ro { String::new() } else { action },
            );
        }
        body.push_str("</table>");
    }
    Ok(html(page(b, q.name(), notice(&query).as_deref(), &body)))
}

/// The tabs of a queue's lists.
fn tabs(qb: &str, current: &str) -> String {
    let mut out = String::from("<nav class=\"tabs\">");
    for (label, href) in [
        ("overview", qb.to_owned()),
        ("queued", format!("{qb}/jobs?state=queued")),
        ("running", format!("{qb}/jobs?state=running")),
        ("delayed", format!("{qb}/jobs?state=delayed")),
        ("parked", format!("{qb}/parked")),
        ("done", format!("{qb}/jobs?state=done")),
        ("cancelled", format!("{qb}/jobs?state=cancelled")),
    ] {
        if label == current {
            let _ = write!(out, "<b>{label}</b>");
        } else {
            let _ = write!(out, "<a href=\"{}\">{label}</a>", Esc(&href));
        }
    }
    out.push_str("</nav>");
    out
}

/// The first line of an error, at most 120 characters.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// What a listing of ended jobs says of what is kept: `kept for 1d`, `the newest 100 kept`,
/// `not kept: only jobs someone waited for have records, and they are not listed`.
fn keep_words(keep: crate::Keep) -> String {
    if keep.is_kept() {
        format!("kept {keep}")
    } else {
        "not kept (a job someone waited for, or pushed with keep_for, has a record for a while, not listed here)"
            .to_owned()
    }
}

/// `GET /queues/{queue}/jobs?state=&after=`: a page of jobs in a state.
pub(super) async fn jobs(st: State, base: Base, Path(name): Path<String>, Query(query): Query_) -> Answer {
    let q = st.queue(&base, &name)?;
    let raw_state = query.get("state").map_or("queued", String::as_str);
    let state: JobState =
        raw_state.parse().map_err(|_| fail(&base, StatusCode::BAD_REQUEST, &format!("unknown state {raw_state:?}")))?;
    let after = query.get("after").map(String::as_str).filter(|a| !a.is_empty());
    let page_ = q.jobs_page(state, after, st.page_size).await.map_err(unavailable(&base))?;
    let qb = queue_url(&base, q.name());
    let shown = if state == JobState::Retrying { "delayed" } else { state.as_str() };
    let mut body = format!("<h1>Queue {}: {shown}</h1>{}", Esc(q.name()), tabs(&qb, shown));
    if let Some(keep) = q.config().keep_of(state) {
        let _ = write!(body, "<p class=\"muted\" id=\"kept\">{shown} jobs: {}</p>", Esc(&keep_words(keep)));
    }
    let third = match state {
        JobState::Queued => "enqueued",
        JobState::Running => "started",
        JobState::Delayed | JobState::Retrying => "due",
        _ => "finished",
    };
    let _ = write!(
        body,
        "<table id=\"jobs\"><tr><th>job</th><th>type</th><th>state</th><th class=\"n\">attempt</th><th>worker</th>\
         <th>{third}</th><th>error</th></tr>"
    );
    for r in &page_.items {
        let at = match state {
            JobState::Queued => Some(r.enqueued_at),
            JobState::Running => r.started_at,
            JobState::Delayed | JobState::Retrying => r.due_at,
            _ => r.finished_at,
        };
        let _ = write!(
            body,
            "<tr><td class=\"mono\"><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"mono\">{}</td><td>{}</td><td class=\"bad\">{}</td></tr>",
            Esc(&format!("{qb}/jobs/{}", Url(&r.id))),
            Esc(&r.id),
            Esc(&r.type_name),
            state_badge(r.state),
            attempts(r),
            Esc(r.worker.as_deref().unwrap_or("")),
            when(at),
            Esc(&short(r.error.as_deref().unwrap_or(""))),
        );
    }
    body.push_str("</table>");
    if page_.items.is_empty() {
        let _ = write!(
            body,
            "<p class=\"muted\">No {shown} jobs{}.</p>",
            if after.is_some() { " after this point" } else { "" }
        );
    }
    pager(&mut body, &format!("{qb}/jobs?state={shown}&after="), after.is_some(), page_.next.as_deref());
    Ok(html(page(&base.0, &format!("{} {shown}", q.name()), None, &body)))
}

fn pager(body: &mut String, prefix: &str, paged: bool, next: Option<&str>) {
    body.push_str("<p class=\"pager\">");
    if paged {
        let first = prefix.trim_end_matches("&after=").trim_end_matches("?before=").trim_end_matches("&before=");
        let _ = write!(body, "<a href=\"{}\">&laquo; first page</a> ", Esc(first));
    }
    if let Some(next) = next {
        let _ = write!(body, "<a id=\"next\" href=\"{}{}\">next page &raquo;</a>", Esc(prefix), Url(next));
    }
    body.push_str("</p>");
}

fn state_badge(state: JobState) -> String {
    format!("<span class=\"state {0}\">{0}</span>", state.as_str())
}

fn attempts(r: &JobRecord) -> String {
    match r.max_attempts {
        Some(max) => format!("{} / {max}", r.attempt),
        None => r.attempt.to_string(),
    }
}

/// `GET /queues/{queue}/jobs/{id}`: a job's record and entry.
pub(super) async fn job(
    st: State,
    base: Base,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query_,
) -> Answer {
    let q = st.queue(&base, &name)?;
    let record = q
        .job(&id)
        .await
        .map_err(unavailable(&base))?
        .ok_or_else(|| fail(&base, StatusCode::NOT_FOUND, &q.why_no_record(&id)))?;
    // A parked job's fields are its parked entry's: one read for both.
    let (fields, parked) = if record.state == JobState::Parked {
        let parked = q.parked_of(&record).await.map_err(unavailable(&base))?;
        (parked.as_ref().map(|p| p.fields.clone()), parked)
    } else {
        (q.job_fields(&record).await.map_err(unavailable(&base))?, None)
    };
    let qb = queue_url(&base, q.name());
    let mut body =
        format!("<h1>Job <span class=\"mono\">{}</span> {}</h1>", Esc(&record.id), state_badge(record.state));
    if !st.read_only && !record.state.is_final() {
        let action = format!("{qb}/jobs/{}/cancel", Url(&record.id));
        body.push_str(&button(&action, "cancel job", &st.csrf, None));
    }
    if let Some(p) = &parked {
        let _ =
            write!(body, " <a href=\"{}\">its parked entry</a>", Esc(&format!("{qb}/parked/{}", Url(&p.parked_id))));
    }
    body.push_str("<dl class=\"record\" id=\"record\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row("queue", format!("<a href=\"{}\">{}</a>", Esc(&qb), Esc(q.name())));
    row("state", state_badge(record.state));
    row("type", Esc(&record.type_name).to_string());
    row("attempt", attempts(&record));
    row("enqueued", When(record.enqueued_at).to_string());
    row("started", when(record.started_at));
    row("finished", when(record.finished_at));
    if record.due_at.is_some() {
        row("due", when(record.due_at));
    }
    if let (Some(start), Some(end)) = (record.started_at, record.finished_at) {
        row("ran for", end.duration_since(start).map(|d| Span(d).to_string()).unwrap_or_default());
    }
    row("updated", When(record.updated_at).to_string());
    row("worker", format!("<span class=\"mono\">{}</span>", Esc(record.worker.as_deref().unwrap_or("–"))));
    row("idempotency key", format!("<span class=\"mono\">{}</span>", Esc(&record.idempotency_key)));
    if let Some(u) = &record.unique_key {
        row("unique key", format!("<span class=\"mono\">{}</span>", Esc(u)));
    }
    if let Some(reason) = record.park_reason {
        row("park reason", format!("<span class=\"bad\">{}</span>", Esc(reason.code())));
    }
    if record.cancel_requested {
        row("cancel", "requested".to_owned());
    }
    body.push_str("</dl>");
    if let Some(error) = &record.error {
        let _ = write!(body, "<h2>Last error</h2><pre id=\"error\">{}</pre>", Esc(error));
    }
    if let Some(result) = &record.result {
        let _ = write!(body, "<h2>Result</h2><pre id=\"result\">{}</pre>", Esc(&lossy(result)));
    }
    match fields {
        Some(fields) => body.push_str(&entry_fields(&fields)),
        None => body.push_str("<p class=\"muted\">Its entry is gone (the job ended); the record is what remains.</p>"),
    }
    Ok(html(page(&base.0, &format!("job {}", record.id), notice(&query).as_deref(), &body)))
}

/// An entry's payload and its other fields.
fn entry_fields(fields: &RawFields) -> String {
    let mut out = String::new();
    if let Some(payload) = field_of(fields, field::PAYLOAD) {
        let _ = write!(out, "<h2>Payload</h2><pre id=\"payload\">{}</pre>", Esc(&lossy(payload)));
    }
    out.push_str("<h2>Entry fields</h2><table id=\"fields\"><tr><th>field</th><th>value</th></tr>");
    for (k, v) in fields.iter().filter(|(k, _)| k != b"payload") {
        let _ = write!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            Esc(&lossy(k)),
            Esc(&lossy(v))
        );
    }
    out.push_str("</table>");
    out
}

/// `GET /queues/{queue}/parked?before=`: parked entries, newest first.
pub(super) async fn parked(st: State, base: Base, Path(name): Path<String>, Query(query): Query_) -> Answer {
    let q = st.queue(&base, &name)?;
    let before = query.get("before").map(String::as_str).filter(|a| !a.is_empty());
    let (stats, page_) =
        tokio::try_join!(q.stats(), q.parked_page(before, st.page_size)).map_err(unavailable(&base))?;
    let qb = queue_url(&base, q.name());
    let mut body = format!("<h1>Queue {}: parked</h1>{}", Esc(q.name()), tabs(&qb, "parked"));
    let _ = write!(
        body,
        "<p><b id=\"parked-count\">{}</b> parked entries, newest first{}. ",
        stats.parked,
        if stats.parked_dropped > 0 {
            format!(" ({} dropped by the cap)", stats.parked_dropped)
        } else {
            String::new()
        }
    );
    if !st.read_only && stats.parked > 0 {
        let question = format!("Re-drive all {} parked entries?", stats.parked);
        body.push_str(&button(&format!("{qb}/parked/redrive-all"), "re-drive all", &st.csrf, Some(&question)));
    }
    body.push_str("</p><table id=\"parked\"><tr><th>parked</th><th>at</th><th>reason</th><th>job</th><th>type</th><th>detail</th><th></th></tr>");
    for p in &page_.items {
        let job = text(p.field("id"));
        let job_link = if job.is_empty() {
            "&ndash;".to_owned()
        } else {
            format!("<a class=\"mono\" href=\"{}\">{}</a>", Esc(&format!("{qb}/jobs/{}", Url(&job))), Esc(&job))
        };
        let pb = format!("{qb}/parked/{}", Url(&p.parked_id));
        let _ = write!(
            body,
            "<tr><td class=\"mono\"><a href=\"{}\">{}</a></td><td>{}</td><td class=\"bad\">{}</td><td>{job_link}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&pb),
            Esc(&p.parked_id),
            parked_at(p),
            Esc(&p.reason_code),
            Esc(&text(p.field("type"))),
            Esc(&short(&p.detail)),
            if st.read_only { String::new() } else { button(&format!("{pb}/redrive"), "re-drive", &st.csrf, None) },
        );
    }
    body.push_str("</table>");
    pager(&mut body, &format!("{qb}/parked?before="), before.is_some(), page_.next.as_deref());
    Ok(html(page(&base.0, &format!("{} parked", q.name()), notice(&query).as_deref(), &body)))
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map(|b| lossy(b).into_owned()).unwrap_or_default()
}

fn parked_at(p: &ParkedEntry) -> String {
    When(std::time::UNIX_EPOCH + Duration::from_millis(p.parked_at_ms)).to_string()
}

/// `GET /queues/{queue}/parked/{id}`: one parked entry, its reason and raw fields.
pub(super) async fn parked_entry(st: State, base: Base, Path((name, id)): Path<(String, String)>) -> Answer {
    let q = st.queue(&base, &name)?;
    let p =
        q.parked_entry(&id).await.map_err(unavailable(&base))?.ok_or_else(|| {
            fail(&base, StatusCode::NOT_FOUND, &format!("no parked entry {id:?} (re-driven already?)"))
        })?;
    let qb = queue_url(&base, q.name());
    let mut body = format!("<h1>Parked entry <span class=\"mono\">{}</span></h1>", Esc(&p.parked_id));
    if !st.read_only {
        if p.truncated_from.is_some() {
            body.push_str("<p class=\"muted\">Parked with only part of its fields: it cannot be re-driven.</p>");
        } else {
            body.push_str(&button(&format!("{qb}/parked/{}/redrive", Url(&p.parked_id)), "re-drive", &st.csrf, None));
        }
    }
    let job = text(p.field("id"));
    body.push_str("<dl class=\"record\" id=\"record\">");
    let _ = write!(
        body,
        "<dt>queue</dt><dd><a href=\"{}\">{}</a></dd><dt>reason</dt><dd class=\"bad\" id=\"reason\">{}</dd>\
         <dt>parked</dt><dd>{}</dd><dt>by</dt><dd class=\"mono\">{}</dd><dt>entry in the stream</dt><dd class=\"mono\">{}</dd>",
        Esc(&qb),
        Esc(q.name()),
        Esc(&p.reason_code),
        parked_at(&p),
        Esc(&p.consumer),
        Esc(&p.source_entry_id),
    );
    if !job.is_empty() {
        let _ = write!(
            body,
            "<dt>job</dt><dd><a class=\"mono\" href=\"{}\">{}</a></dd>",
            Esc(&format!("{qb}/jobs/{}", Url(&job))),
            Esc(&job)
        );
    }
    if let Some(n) = p.truncated_from {
        let _ = write!(body, "<dt>fields</dt><dd>{n}, of which the first {} were kept</dd>", p.fields.len());
    }
    let _ = write!(body, "</dl><h2>Detail</h2><pre id=\"detail\">{}</pre>", Esc(&p.detail));
    body.push_str(&entry_fields(&p.fields));
    Ok(html(page(&base.0, &format!("parked {}", p.parked_id), None, &body)))
}

/// `GET /find?id=`: the page of the job with this id, in whichever queue has it.
pub(super) async fn find(st: State, base: Base, Query(query): Query_) -> Answer {
    let id = query.get("id").map_or("", |s| s.trim());
    if id.is_empty() {
        return Err(fail(&base, StatusCode::BAD_REQUEST, "give a job id"));
    }
    for q in &st.queues {
        if q.job(id).await.map_err(unavailable(&base))?.is_some() {
            return Ok(see_other(&format!("{}/jobs/{}", queue_url(&base, q.name()), Url(id))));
        }
    }
    Err(fail(&base, StatusCode::NOT_FOUND, &format!("no job {id:?} in any queue (or its record expired)")))
}

/// A `303 See Other` to `location`.
pub(super) fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_owned())]).into_response()
}
