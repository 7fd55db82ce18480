//! The job dashboard as a person uses it: headless Chromium, driven over `WebDriver`, against
//! the example's API (dashboard under `/admin/jobs` behind its token) with its queue in
//! process, the ESI stand-in and a worker. And its mount's security over plain HTTP:
//! nothing under the mount answers without the token, a form without its CSRF token is
//! refused.
//!
//! Chromium and chromedriver must be installed (`apt-get install -y chromium chromium-driver`;
//! `.ci/run` does): without them these tests fail, saying so.

use std::time::{Duration, Instant};

use dual_mode::jobs::{JobState, PushOptions, Queue};
use dual_mode_test_support::Browser;
use esi_contracts::admin;
use esi_contracts::aggregate::aggregation_spec;
use esi_contracts::jobs;
use esi_contracts::settings::Settings;
use reqwest::StatusCode;

mod support;

use support::{Backing, Running, http, stale_standin, start_api_with};

/// The text of the page's `#notice` once it starts with `prefix`: a click that submits a form
/// returns before the next page is there, and the page before may have a notice of its own.
async fn notice(browser: &Browser, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = match browser.find("#notice").await {
            Ok(el) => browser.text(&el).await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.starts_with(prefix) {
            return text;
        }
        assert!(Instant::now() < deadline, "no notice starting with {prefix:?}; the last was {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const DOMAIN: i32 = 10_000_043;
const FORGE: i32 = 10_000_002;
const TOKEN: &str = "a-token-for-tests";

async fn wait_state(q: &Queue, id: &str, want: JobState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = q.job(id).await.expect("record").map(|r| r.state);
        if state == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "job {id} is {state:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Writes a screenshot as a test artifact under the target directory.
fn save_screenshot(name: &str, png: &[u8]) {
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&artifact, png).expect("write the screenshot");
    eprintln!("screenshot: {}", artifact.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_sees_counts_redrives_a_parked_job_and_cancels_one_in_a_browser() {
    let browser = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    let backing = Backing::in_process().await;
    let esi = stale_standin().await;
    let settings = Settings::for_esi(esi.base_url());
    let api = start_api_with(&backing, settings.clone(), Some(TOKEN)).await;
    let q = api.state.queue.clone();
    let worker = Running::start(&api, &backing, jobs::worker_config(2)).await;

    // A job that ESI refuses once (a 400 is permanent): parked as `rejected`.
    esi.fail_next(DOMAIN, 1, StatusCode::BAD_REQUEST);
    let refused = jobs::enqueue(&q, &settings, DOMAIN, None).await.expect("enqueue");
    wait_state(&q, &refused.job_id, JobState::Parked).await;
    // A job for later, whose settings carry markup.
    let mut odd = settings.clone();
    odd.http.user_agent = Some("<script>window.pwned = 1</script>".to_owned());
    let later = PushOptions::new().delay(Duration::from_secs(3600));
    let later = q.push_spec(&aggregation_spec(FORGE, &odd), later).await.expect("push");

    let dashboard = admin::url_with_token(&api.base, &dual_mode::Secret::new(TOKEN.to_owned()));
    browser.goto(&dashboard).await.expect("open the dashboard");
    let count = async |state: &str| {
        let cell = browser.find(&format!("td[data-count=\"{state}\"]")).await.expect("a count cell");
        browser.text(&cell).await.expect("text")
    };
    assert_eq!(count("parked").await, "1");
    assert_eq!(count("delayed").await, "1");
    assert_eq!(count("ready").await, "0");
    assert_eq!(count("done").await, "0");
    save_screenshot("dashboard-overview.png", &browser.screenshot().await.expect("screenshot"));

    // The parked job: its reason and payload.
    browser.click(&browser.find("td[data-count=\"parked\"] a").await.unwrap()).await.unwrap();
    browser.click(&browser.find("#parked td a").await.expect("a parked entry")).await.unwrap();
    assert_eq!(browser.text(&browser.find("#reason").await.unwrap()).await.unwrap(), "rejected");
    let detail = browser.text(&browser.find("#detail").await.unwrap()).await.unwrap();
    assert!(detail.contains("400"), "{detail}");
    let payload = browser.text(&browser.find("#payload").await.unwrap()).await.unwrap();
    assert!(payload.contains(&format!("\"region_id\":{DOMAIN}")), "{payload}");

    // Re-drive: back on the queue, and the worker runs it (ESI answers this time).
    browser.click(&browser.find("form.action button").await.expect("a re-drive button")).await.unwrap();
    notice(&browser, "Re-driven").await;
    assert_eq!(browser.text(&browser.find("#parked-count").await.unwrap()).await.unwrap(), "0");
    wait_state(&q, &refused.job_id, JobState::Done).await;
    browser.goto(&format!("{dashboard}/queues/{}/jobs/{}", jobs::QUEUE, refused.job_id)).await.unwrap();
    assert_eq!(browser.text(&browser.find("h1 .state").await.unwrap()).await.unwrap(), "done");

    // The job for later: its markup shows as text and never runs; then it is cancelled.
    browser.goto(&format!("{dashboard}/queues/{}/jobs/{}", jobs::QUEUE, later.job_id)).await.unwrap();
    let payload = browser.text(&browser.find("#payload").await.unwrap()).await.unwrap();
    assert!(payload.contains("<script>window.pwned = 1</script>"), "{payload}");
    assert_eq!(browser.execute("return window.pwned === undefined").await.unwrap(), true);
    browser.click(&browser.find("form.action button").await.expect("a cancel button")).await.unwrap();
    notice(&browser, "Cancelled").await;
    assert_eq!(q.job(&later.job_id).await.unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(browser.text(&browser.find("h1 .state").await.unwrap()).await.unwrap(), "cancelled");

    // Pausing the queue asks first (the page's script), then says so; resuming does not ask.
    browser.goto(&format!("{dashboard}/queues/{}", jobs::QUEUE)).await.unwrap();
    browser.click(&browser.find("form.action button").await.expect("a pause button")).await.unwrap();
    browser.accept_alert().await.expect("a question before pausing");
    notice(&browser, "Queue paused").await;
    assert!(q.is_paused().await.unwrap());
    browser.click(&browser.find("form.action button").await.expect("a resume button")).await.unwrap();
    notice(&browser, "Queue resumed").await;
    assert!(!q.is_paused().await.unwrap());

    // The queue's page after all that (the README's picture: `docs/dashboard.png`).
    let workers = browser.find_all("td.mono").await.unwrap();
    assert_eq!(workers.len(), 1, "one worker");
    save_screenshot("dashboard-queue.png", &browser.screenshot().await.expect("screenshot"));

    browser.quit().await;
    worker.stop().await;
    let _ = api.stop.send(true);
    esi.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_token_nothing_under_the_mount_answers_and_forms_need_their_csrf_token() {
    let backing = Backing::in_process().await;
    let esi = stale_standin().await;
    let api = start_api_with(&backing, Settings::for_esi(esi.base_url()), Some(TOKEN)).await;
    let http = http();
    let base = format!("{}{}", api.base, admin::MOUNT);
    let queue = format!("{base}/queues/{}", jobs::QUEUE);
    let basic = |user: &str, password: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    for auth in [None, Some(format!("Bearer {TOKEN}x")), Some(basic("admin", "nope")), Some(basic("root", TOKEN))] {
        for (method, url) in [
            (reqwest::Method::GET, base.clone()),
            (reqwest::Method::GET, format!("{base}/assets/style.css")),
            (reqwest::Method::GET, queue.clone()),
            (reqwest::Method::POST, format!("{queue}/pause")),
        ] {
            let mut req = http.request(method.clone(), &url);
            if let Some(auth) = &auth {
                req = req.header("authorization", auth);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {url} with {auth:?}");
            assert!(resp.headers().contains_key("www-authenticate"));
        }
    }
    for auth in [format!("Bearer {TOKEN}"), basic("admin", TOKEN)] {
        let resp = http.get(&queue).header("authorization", &auth).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{auth}");
    }
    // Past the token, an action still needs the form's CSRF token.
    let resp = http
        .post(format!("{queue}/pause"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=guessed")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!api.state.queue.is_paused().await.unwrap());
    // Without a token the API serves no dashboard at all.
    let without = start_api_with(&backing, Settings::for_esi(esi.base_url()), None).await;
    let resp = http
        .get(format!("{}{}", without.base, admin::MOUNT))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let _ = api.stop.send(true);
    let _ = without.stop.send(true);
    esi.shutdown().await;
}
