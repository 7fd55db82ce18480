//! A web dashboard of the job layer: an axum [`Router`] to mount behind your own auth.
//!
//! Server-rendered HTML with its stylesheet and one small script embedded in the binary (no
//! build step, no CDN; every page works without JavaScript). It shows, per queue: the counts
//! (ready, running, delayed, parked, done, cancelled) and the jobs ended per minute over the
//! last hour as an inline SVG, the workers with their last heartbeat, the schedules with their
//! next ticks; lists of jobs by state (the running ones with their workers) and of parked
//! entries with their reasons, a page per job (its record and entry: state, attempts, times,
//! error, result, payload) and per parked entry (reason, detail, raw fields). Every list is
//! read a page at a time from a cursor, so a parked stream of 100,000 entries renders as fast
//! as one of ten.
//!
//! Actions (re-drive a parked entry or all of them, cancel a job, pause or resume a queue or a
//! schedule) are `POST` forms, refused in [read-only](Dashboard::read_only) mode.
//!
//! # Mounting
//!
//! The dashboard has no authentication of its own: mount it behind yours. Anything that can
//! reach it can re-drive and cancel jobs, and it shows job payloads (specs: no secrets).
//!
//! ```no_run
//! use axum::Router;
//! use axum::extract::Request;
//! use axum::http::{StatusCode, header};
//! use axum::middleware::{self, Next};
//! use axum::response::Response;
//! use dual_mode::jobs::{Queue, dashboard::Dashboard};
//!
//! async fn admins_only(request: Request, next: Next) -> Result<Response, StatusCode> {
//!     let token = std::env::var("ADMIN_TOKEN").map_err(|_| StatusCode::UNAUTHORIZED)?;
//!     let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
//!     if header.and_then(|h| h.strip_prefix("Bearer ")) != Some(token.as_str()) {
//!         return Err(StatusCode::UNAUTHORIZED);
//!     }
//!     Ok(next.run(request).await)
//! }
//!
//! # fn app(queue: Queue) -> Router {
//! Router::new()
//!     // ... your routes ...
//!     .nest("/admin/jobs", Dashboard::new([queue]).router().layer(middleware::from_fn(admins_only)))
//! # }
//! ```
//!
//! The layer goes on the dashboard's router (or on a router that holds it), so that every
//! route under the mount, assets and actions included, passes through it. The overview is at
//! the mount itself (`/admin/jobs`; axum's `nest` leaves `/admin/jobs/` to the outer router),
//! and links are made from the path the router is nested at.
//!
//! # CSRF
//!
//! Every action form carries a token in a hidden field, and a `POST` without it, or with
//! another, is refused with `403`, as is one whose browser says it comes from another site
//! (`Sec-Fetch-Site: cross-site`). The token is random per process by default (a page
//! rendered before a restart cannot post after it; reload it), the same for every user:
//! it proves that the form was rendered by this dashboard, behind your auth, and a cross-site
//! page cannot read it. With several instances behind one address, give them one token with
//! [`Dashboard::csrf_token`]. Pages are sent with a `Content-Security-Policy` that allows
//! only the dashboard's own stylesheet and script and refuses framing.

mod actions;
mod html;
mod plot;
mod views;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, NestedPath};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use super::{Queue, QueueError};

/// The dashboard of some queues, turned into a [`Router`] by [`Dashboard::router`].
#[derive(Debug, Clone)]
pub struct Dashboard {
    queues: Vec<Queue>,
    read_only: bool,
    csrf_token: Option<String>,
    page_size: usize,
}

impl Dashboard {
    /// A dashboard of these queues, with actions, 50 items per page.
    #[must_use]
    pub fn new(queues: impl IntoIterator<Item = Queue>) -> Self {
        Self { queues: queues.into_iter().collect(), read_only: false, csrf_token: None, page_size: 50 }
    }

    /// Read-only: no action is shown, and every `POST` is refused with `403`.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The CSRF token, for several instances behind one address (each would draw its own);
    /// keep it as secret as a session key. An empty token draws one.
    #[must_use]
    pub fn csrf_token(mut self, token: impl Into<String>) -> Self {
        self.csrf_token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// Items per page of every list (1 to 1,000).
    #[must_use]
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size.clamp(1, 1000);
        self
    }

    /// The router, for any app state: nest it where you like, behind your auth layer.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let shared = Arc::new(Shared {
            csrf: self.csrf_token.unwrap_or_else(random_token),
            queues: self.queues,
            read_only: self.read_only,
            page_size: self.page_size,
        });
        Router::new()
            .route("/", get(views::overview))
            .route("/assets/style.css", get(async || asset("text/css", include_str!("style.css"))))
            .route("/assets/app.js", get(async || asset("text/javascript", include_str!("app.js"))))
            .route("/find", get(views::find))
            .route("/queues/{queue}", get(views::queue))
            .route("/queues/{queue}/pause", post(actions::pause_queue))
            .route("/queues/{queue}/resume", post(actions::resume_queue))
            .route("/queues/{queue}/jobs", get(views::jobs))
            .route("/queues/{queue}/jobs/{id}", get(views::job))
            .route("/queues/{queue}/jobs/{id}/cancel", post(actions::cancel))
            .route("/queues/{queue}/parked", get(views::parked))
            .route("/queues/{queue}/parked/redrive-all", post(actions::redrive_all))
            .route("/queues/{queue}/parked/{id}", get(views::parked_entry))
            .route("/queues/{queue}/parked/{id}/redrive", post(actions::redrive))
            .route("/queues/{queue}/schedules/{name}/pause", post(actions::pause_schedule))
            .route("/queues/{queue}/schedules/{name}/resume", post(actions::resume_schedule))
            .fallback(async |base: Base| fail(&base, StatusCode::NOT_FOUND, "no such page"))
            .layer(axum::middleware::map_response(secure))
            .with_state(shared)
    }
}

/// The dashboard of `queue` with its defaults: [`Dashboard::new`]`([queue]).router()`.
pub fn router<S: Clone + Send + Sync + 'static>(queue: Queue) -> Router<S> {
    Dashboard::new([queue]).router()
}

/// What every handler shares.
struct Shared {
    queues: Vec<Queue>,
    read_only: bool,
    csrf: String,
    page_size: usize,
}

type State = axum::extract::State<Arc<Shared>>;

impl Shared {
    fn queue(&self, base: &Base, name: &str) -> Result<&Queue, Fail> {
        self.queues
            .iter()
            .find(|q| q.name() == name)
            .ok_or_else(|| fail(base, StatusCode::NOT_FOUND, &format!("no queue {name:?} on this dashboard")))
    }
}

/// The path the dashboard is mounted at (no trailing slash; empty at the root), for links.
struct Base(String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let nested = parts.extensions.get::<NestedPath>().map(NestedPath::as_str).unwrap_or_default();
        Ok(Self(nested.trim_end_matches('/').to_owned()))
    }
}

/// A request that cannot be answered with its page: answered with an error page.
struct Fail {
    status: StatusCode,
    message: String,
    base: String,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let body = format!("<h1>{}</h1><p class=\"bad\">{}</p>", self.status, html::Esc(&self.message));
        let title = self.status.canonical_reason().unwrap_or("error");
        (self.status, Html(html::page(&self.base, title, None, &body))).into_response()
    }
}

fn fail(base: &Base, status: StatusCode, message: &str) -> Fail {
    Fail { status, message: message.to_owned(), base: base.0.clone() }
}

/// The page for a failed Redis call.
fn unavailable(base: &Base) -> impl FnOnce(QueueError) -> Fail + '_ {
    move |e| {
        // A cursor or an argument the queue refuses is the request's fault.
        let status = match e {
            QueueError::BadCursor { .. } | QueueError::BadArgument { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        fail(base, status, &super::error::chain(&e))
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// Headers on every answer: no framing, no sniffing, only the dashboard's own assets.
async fn secure(mut response: Response) -> Response {
    const HEADERS: [(HeaderName, &str); 4] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// 128 random bits as hex, from the standard library's OS-seeded hasher keys (a token only
/// needs to be unguessable from outside the process).
fn random_token() -> String {
    let a = super::envelope::random_u64();
    let b = super::envelope::random_u64();
    format!("{a:016x}{b:016x}")
}
