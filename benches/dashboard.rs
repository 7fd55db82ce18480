//! What the dashboard's pages cost against a parked stream of 100,000 entries: each page
//! requested over HTTP on 127.0.0.1 from a real redis-server, the median of 50 requests.
//!
//! `cargo bench --bench dashboard`

use std::time::{Duration, Instant};

use dual_mode::jobs::dashboard::Dashboard;
use dual_mode::jobs::{Queue, QueueConfig};
use dual_mode_test_support::RedisServer;

const PARKED: usize = 100_000;
const RUNS: usize = 50;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = RedisServer::from_env_or_temporary()?;
    let client = redis::Client::open(redis.url.as_str())?;
    let q = Queue::connect(client.clone(), QueueConfig::new("dash-bench")).await?;
    let mut con = client.get_multiplexed_async_connection().await?;

    // Parked entries as the worker writes them: reason, detail, origin, the raw fields.
    let start = Instant::now();
    for chunk in 0..PARKED / 1000 {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            let n = chunk * 1000 + i;
            pipe.cmd("XADD")
                .arg(&q.keys().parked)
                .arg("*")
                .arg(&[
                    ("reason", "not_json".to_owned()),
                    ("detail", format!("expected value at line 1 column {n}")),
                    ("source_id", format!("1-{n}")),
                    ("parked_at", "1700000000000".to_owned()),
                    ("consumer", "bench".to_owned()),
                    ("raw:id", format!("job-{n}")),
                    ("raw:type", "Bench".to_owned()),
                    ("raw:payload", format!("{{\"n\": {n}, \"note\": \"<b>not json\"")),
                ])
                .ignore();
        }
        pipe.query_async::<()>(&mut con).await?;
    }
    eprintln!("{PARKED} parked entries written in {:.1} s", start.elapsed().as_secs_f64());
    let deep = q.parked(PARKED / 2).await?.pop().map(|p| p.parked_id).unwrap_or_default();

    let app: axum::Router = axum::Router::new().nest("/admin/jobs", Dashboard::new([q.clone()]).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/admin/jobs", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    println!("page (parked stream of {PARKED}, 50 per page)   median     max   bytes");
    for (label, path) in [
        ("overview", String::new()),
        ("queue", "/queues/dash-bench".to_owned()),
        ("parked, newest page", "/queues/dash-bench/parked".to_owned()),
        ("parked, page at the middle", format!("/queues/dash-bench/parked?before={deep}")),
        ("one parked entry", format!("/queues/dash-bench/parked/{deep}")),
    ] {
        let mut times = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let resp = http.get(format!("{base}{path}")).send().await?;
            assert!(resp.status().is_success(), "{label}: {}", resp.status());
            bytes = resp.bytes().await?.len();
            times.push(t.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("{label:<44} {:>6.2} ms {:>6.2} ms {bytes:>7}", ms(times[RUNS / 2]), ms(times[RUNS - 1]));
    }
    Ok(())
}
