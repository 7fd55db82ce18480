//! The actions: `POST` forms, each checked for its CSRF token, refused in read-only mode,
//! answered with a `303` back to a page that says what happened.

use std::collections::HashMap;

use axum::Form;
use axum::extract::Path;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::html::Url;
use super::views::see_other;
use super::{Base, Fail, Shared, State, fail, unavailable};
use crate::{CancelOutcome, Queue, QueueError};

type Fields = Result<Form<HashMap<String, String>>, FormRejection>;
type Answer = Result<Response, Fail>;

/// Refuses the action unless actions are on, the form carries this dashboard's token, and the
/// browser does not say the request comes from another site.
fn check(st: &Shared, base: &Base, headers: &HeaderMap, form: Fields) -> Result<(), Fail> {
    if st.read_only {
        return Err(fail(base, StatusCode::FORBIDDEN, "this dashboard is read-only"));
    }
    if headers.get("sec-fetch-site").is_some_and(|v| v == "cross-site") {
        return Err(fail(base, StatusCode::FORBIDDEN, "a cross-site request cannot act on this dashboard"));
    }
    let sent = form.ok().and_then(|Form(mut f)| f.remove("csrf")).unwrap_or_default();
    if !same(sent.as_bytes(), st.csrf.as_bytes()) {
        return Err(fail(
            base,
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        ));
    }
    Ok(())
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The queue named `name`, once the action passed [`check`].
fn acting_on<'a>(
    st: &'a Shared,
    base: &Base,
    headers: &HeaderMap,
    form: Fields,
    name: &str,
) -> Result<&'a Queue, Fail> {
    check(st, base, headers, form)?;
    st.queue(base, name)
}

pub(super) fn queue_url(base: &Base, name: &str) -> String {
    format!("{}/queues/{}", base.0, Url(name))
}

/// A pause or resume of the queue or of one of its schedules: `act` answers whether it
/// changed anything, and the queue's page says which of `changed` and `unchanged` happened.
async fn toggle(
    (st, base, headers, name, form): (State, Base, HeaderMap, String, Fields),
    (changed, unchanged): (&str, &str),
    act: impl AsyncFnOnce(&Queue) -> Result<bool, QueueError>,
) -> Answer {
    let q = acting_on(&st, &base, &headers, form, &name)?;
    let done = if act(q).await.map_err(unavailable(&base))? { changed } else { unchanged };
    Ok(see_other(&format!("{}?done={done}", queue_url(&base, &name))))
}

/// `POST /queues/{queue}/pause`.
pub(super) async fn pause_queue(
    st: State,
    base: Base,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Fields,
) -> Answer {
    toggle((st, base, headers, name, form), ("paused", "already-paused"), async |q| q.pause().await).await
}

/// `POST /queues/{queue}/resume`.
pub(super) async fn resume_queue(
    st: State,
    base: Base,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Fields,
) -> Answer {
    toggle((st, base, headers, name, form), ("resumed", "not-paused"), async |q| q.resume().await).await
}

/// `POST /queues/{queue}/jobs/{id}/cancel`.
pub(super) async fn cancel(
    st: State,
    base: Base,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
    form: Fields,
) -> Answer {
    let q = acting_on(&st, &base, &headers, form, &name)?;
    let done = match q.cancel(&id).await.map_err(unavailable(&base))? {
        CancelOutcome::Removed => "cancel-removed",
        CancelOutcome::Requested => "cancel-requested",
        CancelOutcome::Unknown => return Err(fail(&base, StatusCode::NOT_FOUND, &format!("no job {id:?}"))),
        _ => "cancel-ended",
    };
    Ok(see_other(&format!("{}/jobs/{}?done={done}", queue_url(&base, &name), Url(&id))))
}

/// `POST /queues/{queue}/parked/{id}/redrive`.
pub(super) async fn redrive(
    st: State,
    base: Base,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
    form: Fields,
) -> Answer {
    let q = acting_on(&st, &base, &headers, form, &name)?;
    let done = match q.redrive(&id).await {
        Ok(Some(_)) => "redriven",
        Ok(None) => "gone",
        Err(e @ QueueError::Truncated { .. }) => return Err(fail(&base, StatusCode::CONFLICT, &e.to_string())),
        Err(e) => return Err(unavailable(&base)(e)),
    };
    Ok(see_other(&format!("{}/parked?done={done}", queue_url(&base, &name))))
}

/// `POST /queues/{queue}/parked/redrive-all`: every entry parked when it starts (entries
/// that cannot be re-driven stay).
pub(super) async fn redrive_all(
    st: State,
    base: Base,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Fields,
) -> Answer {
    let q = acting_on(&st, &base, &headers, form, &name)?;
    let parked = q.stats().await.map_err(unavailable(&base))?.parked;
    let n = q.redrive_all(usize::try_from(parked).unwrap_or(usize::MAX)).await.map_err(unavailable(&base))?;
    Ok(see_other(&format!("{}/parked?done=redriven-all&n={n}", queue_url(&base, &name))))
}

/// `POST /queues/{queue}/schedules/{name}/pause`.
pub(super) async fn pause_schedule(
    st: State,
    base: Base,
    headers: HeaderMap,
    Path((name, schedule)): Path<(String, String)>,
    form: Fields,
) -> Answer {
    let answers = ("schedule-paused", "schedule-already-paused");
    toggle((st, base, headers, name, form), answers, async |q| q.pause_schedule(&schedule).await).await
}

/// `POST /queues/{queue}/schedules/{name}/resume`.
pub(super) async fn resume_schedule(
    st: State,
    base: Base,
    headers: HeaderMap,
    Path((name, schedule)): Path<(String, String)>,
    form: Fields,
) -> Answer {
    let answers = ("schedule-resumed", "schedule-not-paused");
    toggle((st, base, headers, name, form), answers, async |q| q.resume_schedule(&schedule).await).await
}
