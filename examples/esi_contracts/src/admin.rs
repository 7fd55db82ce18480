//! The job dashboard under `/admin/jobs`, behind a token: the library's dashboard mounted as a
//! user of the library would, with an auth layer of the app's own.
//!
//! The token is the password of HTTP Basic auth (user `admin`), so a browser asks for it, or
//! a bearer token (`Authorization: Bearer <token>`) for scripts. Without it every route under
//! the mount, its assets and actions included, answers `401`.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use dual_mode::Secret;
use dual_mode::jobs::Queue;
use dual_mode::jobs::dashboard::Dashboard;

/// Where the dashboard is mounted.
pub const MOUNT: &str = "/admin/jobs";

/// The user name of the dashboard's Basic auth.
pub const USER: &str = "admin";

/// The dashboard of `queue` behind `token` (from `DASHBOARD_TOKEN`, or [drawn](random_token)
/// at start), to nest at [`MOUNT`].
pub fn router<S: Clone + Send + Sync + 'static>(queue: Queue, token: &Secret<String>) -> Router<S> {
    let expected = Expected {
        basic: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{}", token.expose()))
        ),
        bearer: format!("Bearer {}", token.expose()),
    };
    Dashboard::new([queue]).router().layer(middleware::from_fn_with_state(std::sync::Arc::new(expected), require_token))
}

/// The `Authorization` values that pass.
struct Expected {
    basic: String,
    bearer: String,
}

async fn require_token(State(expected): State<std::sync::Arc<Expected>>, request: Request, next: Next) -> Response {
    let given = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default();
    if same(given, expected.basic.as_bytes()) || same(given, expected.bearer.as_bytes()) {
        return next.run(request).await;
    }
    let challenge = HeaderValue::from_static("Basic realm=\"jobs dashboard\", charset=\"UTF-8\"");
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], "the jobs dashboard needs its token\n")
        .into_response()
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh token: 128 bits from the OS-seeded hasher keys of the standard library, as hex.
#[must_use]
pub fn random_token() -> Secret<String> {
    use std::hash::{BuildHasher as _, Hasher as _};
    let draw = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        h.finish()
    };
    Secret::new(format!("{:016x}{:016x}", draw(1), draw(2)))
}

/// The dashboard's URL on the API at `api_url` with the credentials in it, for a person to
/// open (`http://admin:<token>@127.0.0.1:8080/admin/jobs`).
#[must_use]
pub fn url_with_token(api_url: &str, token: &Secret<String>) -> String {
    let (scheme, rest) = api_url.split_once("://").unwrap_or(("http", api_url));
    format!("{scheme}://{USER}:{}@{rest}{MOUNT}", token.expose())
}
