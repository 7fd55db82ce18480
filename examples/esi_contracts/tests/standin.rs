//! The ESI example's embedded stand-in, spoken to over raw HTTP/1.1: pages and their headers,
//! `304` revalidation, JSON errors, the error limit, the failure controls and the counters.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use esi_contracts::model::Contract;
use esi_contracts::standin;
use esi_contracts::standin::{RECORDED_AT, REGIONS, RateLimit, StandIn, StandInOptions, fixture_pages};
use esi_contracts::timestamp::Timestamp;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FORGE: i32 = 10_000_002;
const DOMAIN: i32 = 10_000_043;
const SINQ: i32 = 10_000_032;

/// One HTTP response, read to the end of a `Connection: close` exchange.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn need(&self, name: &str) -> &str {
        self.header(name).unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    fn remain(&self) -> u32 {
        self.need("X-ESI-Error-Limit-Remain").parse().unwrap()
    }

    fn error(&self) -> String {
        assert!(self.need("Content-Type").starts_with("application/json"), "{self:?}");
        let v: Value = serde_json::from_str(&self.body).expect("JSON error body");
        assert_eq!(v.as_object().map(serde_json::Map::len), Some(1), "{v}");
        v["error"].as_str().expect("error string").to_owned()
    }
}

async fn request(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: dual-mode esi_standin test\r\nConnection: close\r\n"
    );
    for (name, value) in extra {
        write!(head, "{name}: {value}\r\n").unwrap();
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("end of head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let reply = Reply { status, headers, body: body.to_owned() };
    if let Some(len) = reply.header("Content-Length") {
        assert_eq!(len.parse::<usize>().unwrap(), reply.body.len());
    }
    reply
}

fn page_target(region: &str, query: &str) -> String {
    format!("/latest/contracts/public/{region}/{query}")
}

async fn get_page(s: &StandIn, region: i32, page: u32, extra: &[(&str, &str)]) -> Reply {
    let target = page_target(&region.to_string(), &format!("?datasource=tranquility&page={page}"));
    request(s.addr(), "GET", &target, extra).await
}

async fn start() -> StandIn {
    standin::start(StandInOptions::default()).await.unwrap()
}

#[tokio::test]
async fn serves_every_fixture_page_with_esi_headers() {
    let s = start().await;
    assert_eq!(s.base_url(), format!("http://{}", s.addr()));
    let mut etags = Vec::new();
    let mut generation = None;
    for region in REGIONS {
        let pages = fixture_pages(region).unwrap();
        for (i, fixture) in pages.iter().enumerate() {
            let page = u32::try_from(i + 1).unwrap();
            let before = Timestamp::now();
            let r = get_page(&s, region, page, &[]).await;
            assert_eq!(r.status, 200, "{region}/{page}: {}", r.body);
            assert_eq!(r.body, *fixture);
            let contracts: Vec<Contract> = serde_json::from_str(&r.body).unwrap();
            assert!(!contracts.is_empty());
            assert_eq!(r.need("X-Pages"), pages.len().to_string());
            assert!(r.need("Content-Type").starts_with("application/json"));
            let etag = r.need("ETag");
            assert!(
                etag.len() == 18
                    && etag.starts_with('"')
                    && etag.ends_with('"')
                    && etag[1..17].bytes().all(|b| b.is_ascii_hexdigit()),
                "{etag}"
            );
            etags.push(etag.to_owned());
            let expires = Timestamp::parse_http_date(r.need("Expires")).unwrap();
            let after = Timestamp::now();
            assert!(expires <= before.plus_seconds(1800) && expires <= after.plus_seconds(1800), "{expires}");
            let modified = Timestamp::parse_http_date(r.need("Last-Modified")).unwrap();
            assert!(modified <= after);
            // One generation: every page has the same `Last-Modified` and the same fixed `Expires`.
            assert_eq!(*generation.get_or_insert((modified, expires)), (modified, expires));
            assert_eq!(r.need("Cache-Control"), "public");
            assert_eq!(r.need("X-Compatibility-Date"), esi_contracts::esi::COMPATIBILITY_DATE);
            assert_eq!(r.remain(), 100);
            let reset: u64 = r.need("X-ESI-Error-Limit-Reset").parse().unwrap();
            assert!(reset <= 60, "{reset}");
        }
    }
    let mut distinct = etags.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "one ETag per page: {etags:?}");

    // The same page again: the same ETag (stable), and counted.
    let again = get_page(&s, FORGE, 2, &[]).await;
    assert_eq!(again.need("ETag"), etags[1]);
    assert_eq!(s.ok_count(), 6);
    assert_eq!(s.page_ok_count(FORGE, 2), 2);
    assert_eq!(s.page_ok_count(FORGE, 1), 1);
    assert_eq!(s.page_ok_count(SINQ, 1), 1);
    assert_eq!(s.page_ok_count(SINQ, 2), 0);

    // No `page` means page 1; no datasource and no trailing slash are accepted too, and so is
    // the canonical path, with `X-Tenant` (a tenant that does not exist is a 400).
    for target in [
        page_target(&FORGE.to_string(), "?datasource=tranquility"),
        page_target(&FORGE.to_string(), ""),
        format!("/latest/contracts/public/{FORGE}?page=1"),
        format!("/contracts/public/{FORGE}?page=1"),
        format!("/contracts/public/{FORGE}"),
    ] {
        let r = request(s.addr(), "GET", &target, &[("X-Tenant", "tranquility")]).await;
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.need("ETag"), etags[0], "{target}");
    }
    let r = request(s.addr(), "GET", &format!("/contracts/public/{FORGE}"), &[("X-Tenant", "serenity")]).await;
    assert_eq!((r.status, r.error().as_str()), (400, "Invalid tenant"));
    let stats = s.stats();
    assert_eq!((stats.requests, stats.ok, stats.errors), (12, 11, 1));
    assert_eq!(stats.no_compatibility_date, 12, "these requests sent none");
    s.shutdown().await;
}

#[tokio::test]
async fn revalidation_with_if_none_match_gets_304() {
    let s = start().await;
    let first = get_page(&s, DOMAIN, 1, &[]).await;
    let etag = first.need("ETag").to_owned();
    for inm in [etag.clone(), format!("W/{etag}"), format!("\"0000000000000000\", {etag}"), "*".to_owned()] {
        let r = get_page(&s, DOMAIN, 1, &[("If-None-Match", &inm)]).await;
        assert_eq!(r.status, 304, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.need("ETag"), etag);
        Timestamp::parse_http_date(r.need("Expires")).unwrap();
        Timestamp::parse_http_date(r.need("Last-Modified")).unwrap();
        assert_eq!(r.remain(), 100);
    }
    let stale = get_page(&s, DOMAIN, 1, &[("If-None-Match", "\"0123456789abcdef\"")]).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, first.body);
    // Another page's ETag does not match.
    let r = get_page(&s, FORGE, 1, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status, 200);

    assert_eq!(s.ok_count(), 3);
    assert_eq!(s.not_modified_count(), 4);
    assert_eq!(s.page_ok_count(DOMAIN, 1), 2);
    s.reset_stats();
    assert_eq!(s.stats(), standin::Stats::default());
    s.shutdown().await;
}

#[tokio::test]
async fn errors_are_json_and_use_up_the_error_limit() {
    let s = start().await;
    let cases: [(&str, &str, u16, &str); 8] = [
        ("GET", "/latest/contracts/public/10000030/?datasource=tranquility&page=1", 404, "Region not found"),
        ("GET", "/latest/contracts/public/99/", 404, "Region not found"),
        ("GET", "/latest/contracts/public/10000002/?page=4", 404, "Requested page does not exist!"),
        ("GET", "/latest/contracts/public/10000002/?page=0", 400, "page"),
        ("GET", "/latest/contracts/public/10000002/?page=two", 400, "page"),
        ("GET", "/latest/contracts/public/the-forge/?page=1", 400, "region_id"),
        ("GET", "/latest/contracts/public/10000002/?datasource=singularity", 400, "datasource"),
        ("POST", "/latest/contracts/public/10000002/", 405, "not allowed"),
    ];
    for (n, (method, target, status, message)) in (1_u32..).zip(cases) {
        let r = request(s.addr(), method, target, &[]).await;
        assert_eq!(r.status, status, "{target}: {}", r.body);
        let error = r.error();
        assert!(error.contains(message), "{target}: {error}");
        assert_eq!(r.remain(), 100 - n, "{target}");
        assert!(r.header("X-ESI-Error-Limit-Reset").is_some());
        assert!(r.header("ETag").is_none() && r.header("X-Pages").is_none());
    }
    let r = request(s.addr(), "GET", "/latest/markets/prices/", &[]).await;
    assert_eq!((r.status, r.error().as_str()), (404, "Not found"));
    assert_eq!(r.remain(), 91);

    // Successes do not use up the limit.
    let ok = get_page(&s, SINQ, 1, &[]).await;
    assert_eq!((ok.status, ok.remain()), (200, 91));
    let stats = s.stats();
    assert_eq!((stats.requests, stats.ok, stats.errors), (10, 1, 9));
    s.shutdown().await;
}

#[tokio::test]
async fn error_limit_answers_420_until_the_window_resets() {
    let s = standin::start(StandInOptions { error_window: Duration::from_secs(2), ..StandInOptions::default() })
        .await
        .unwrap();
    s.set_error_limit_remain(2);
    let r = get_page(&s, FORGE, 9, &[]).await;
    assert_eq!((r.status, r.remain()), (404, 1));
    let r = get_page(&s, 10_000_030, 1, &[]).await;
    assert_eq!((r.status, r.remain()), (404, 0));
    // At zero, even valid requests get 420 with ESI's message.
    let r = get_page(&s, FORGE, 1, &[]).await;
    assert_eq!(r.status, 420);
    assert!(r.error().contains("exceeded the error limit"));
    assert_eq!(r.remain(), 0);
    let reset: u64 = r.need("X-ESI-Error-Limit-Reset").parse().unwrap();
    assert!((1..=2).contains(&reset), "{reset}");
    let r = request(s.addr(), "GET", "/nowhere", &[]).await;
    assert_eq!(r.status, 420);
    assert_eq!(s.stats().error_limited, 2);

    tokio::time::sleep(Duration::from_secs(reset) + Duration::from_millis(100)).await;
    let r = get_page(&s, FORGE, 1, &[]).await;
    assert_eq!((r.status, r.remain()), (200, 100));
    s.shutdown().await;
}

#[tokio::test]
async fn injected_failures_hit_one_region_in_order() {
    let s = start().await;
    s.fail_next(DOMAIN, 2, StatusCode::SERVICE_UNAVAILABLE);
    s.fail_next(DOMAIN, 1, StatusCode::GATEWAY_TIMEOUT);
    s.fail_next(SINQ, 1, StatusCode::INTERNAL_SERVER_ERROR);
    // Other regions are unaffected.
    assert_eq!(get_page(&s, FORGE, 1, &[]).await.status, 200);
    for (want, text) in [(503, "unavailable"), (503, "unavailable"), (504, "Timeout")] {
        let r = get_page(&s, DOMAIN, 1, &[]).await;
        assert_eq!(r.status, want);
        assert!(r.error().contains(text), "{}", r.body);
    }
    assert_eq!(get_page(&s, DOMAIN, 1, &[]).await.status, 200);
    let r = get_page(&s, SINQ, 1, &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.remain(), 96);
    assert_eq!(get_page(&s, SINQ, 1, &[]).await.status, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn malformed_pages_have_their_own_etag() {
    let s = start().await;
    let good = get_page(&s, FORGE, 3, &[]).await;
    s.set_malformed(FORGE, 3, true);
    let bad = get_page(&s, FORGE, 3, &[]).await;
    assert_eq!(bad.status, 200);
    assert!(!bad.body.is_empty());
    assert!(serde_json::from_str::<Vec<Contract>>(&bad.body).is_err());
    assert_ne!(bad.need("ETag"), good.need("ETag"));
    // The good ETag no longer matches; the malformed one does.
    let r = get_page(&s, FORGE, 3, &[("If-None-Match", good.need("ETag"))]).await;
    assert_eq!((r.status, r.body.as_str()), (200, bad.body.as_str()));
    let r = get_page(&s, FORGE, 3, &[("If-None-Match", bad.need("ETag"))]).await;
    assert_eq!(r.status, 304);
    // Other pages stay good.
    let other = get_page(&s, FORGE, 2, &[]).await;
    assert!(serde_json::from_str::<Vec<Contract>>(&other.body).is_ok());
    s.set_malformed(FORGE, 3, false);
    let r = get_page(&s, FORGE, 3, &[("If-None-Match", good.need("ETag"))]).await;
    assert_eq!(r.status, 304);
    assert_eq!(s.page_ok_count(FORGE, 3), 3);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_all_counted() {
    let s = start().await;
    let addr = s.addr();
    let mut tasks = Vec::new();
    for i in 0..24_u32 {
        tasks.push(tokio::spawn(async move {
            let region = REGIONS[usize::try_from(i % 3).unwrap()];
            let target = page_target(&region.to_string(), "?page=1");
            request(addr, "GET", &target, &[]).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(s.ok_count(), 24);
    for region in REGIONS {
        assert_eq!(s.page_ok_count(region, 1), 8);
    }
    s.shutdown().await;
}

#[tokio::test]
async fn stops_on_shutdown_and_on_drop() {
    let s = start().await;
    let addr = s.addr();
    assert_eq!(get_page(&s, SINQ, 1, &[]).await.status, 200);
    s.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());

    let s = start().await;
    let addr = s.addr();
    drop(s);
    let mut stopped = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "still listening after drop");
}

#[tokio::test]
async fn pages_are_gzipped_when_asked() {
    let s = start().await;
    // reqwest asks for gzip and decompresses.
    let http = dual_mode::HttpConfig::default().builder().build().unwrap();
    let resp = http.get(format!("{}/contracts/public/{FORGE}?page=2", s.base_url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), fixture_pages(FORGE).unwrap()[1]);
    assert_eq!(s.stats().gzip, 1);
    // Without Accept-Encoding: plain.
    let r = get_page(&s, FORGE, 2, &[]).await;
    assert_eq!((r.header("Content-Encoding"), r.body.as_str()), (None, fixture_pages(FORGE).unwrap()[1]));
    assert_eq!(s.stats().gzip, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_turnover_starts_a_generation_whose_contracts_shift_to_earlier_pages() {
    let s =
        standin::start(StandInOptions { last_modified: Some(RECORDED_AT), ..StandInOptions::default() }).await.unwrap();
    let before = get_page(&s, FORGE, 1, &[]).await;
    let expires = before.need("Expires").to_owned();
    assert_eq!(before.need("Last-Modified"), RECORDED_AT.to_http_date());

    s.turn_over(400);
    let after = get_page(&s, FORGE, 1, &[("If-None-Match", before.need("ETag"))]).await;
    assert_eq!(after.status, 200, "new contents, new ETag");
    assert_ne!(after.need("ETag"), before.need("ETag"));
    assert_eq!(after.need("X-Pages"), "2", "2,347 - 400 contracts fit on 2 pages");
    let modified = Timestamp::parse_http_date(after.need("Last-Modified")).unwrap();
    assert!(modified > RECORDED_AT);
    let (old, new) =
        (Timestamp::parse_http_date(&expires).unwrap(), Timestamp::parse_http_date(after.need("Expires")).unwrap());
    assert!(old <= new, "a new generation expires 30 minutes after it started: {old} {new}");
    let all: Vec<Value> =
        fixture_pages(FORGE).unwrap().iter().flat_map(|p| serde_json::from_str::<Vec<Value>>(p).unwrap()).collect();
    let page1: Vec<Value> = serde_json::from_str(&after.body).unwrap();
    assert_eq!(page1.len(), 1_000);
    assert_eq!(page1[0], all[400], "the oldest 400 are gone, the rest moved up");
    let page2: Vec<Value> = serde_json::from_str(&get_page(&s, FORGE, 2, &[]).await.body).unwrap();
    assert_eq!(page2.len(), 947);
    assert_eq!(page2[0], all[1_400]);
    assert_eq!(get_page(&s, FORGE, 3, &[]).await.status, 404, "page 3 is gone");

    // A turnover in the middle of a walk, same contents: 304s that carry the new generation.
    s.turn_over_after(1, 0);
    let etag = after.need("ETag");
    let r = get_page(&s, FORGE, 1, &[("If-None-Match", etag)]).await;
    assert_eq!((r.status, r.need("Last-Modified")), (304, modified.to_http_date().as_str()));
    let r = get_page(&s, FORGE, 1, &[("If-None-Match", etag)]).await;
    assert_eq!(r.status, 304);
    assert!(Timestamp::parse_http_date(r.need("Last-Modified")).unwrap() > modified);
    assert_eq!(s.stats().turnovers, 2);
    s.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_route_spends_tokens_and_answers_429_with_retry_after() {
    let limit = RateLimit { group: "contracts".into(), tokens: 6, window: Duration::from_secs(60), headers: true };
    let s = standin::start(StandInOptions { rate_limit: Some(limit), ..StandInOptions::default() }).await.unwrap();
    let first = get_page(&s, DOMAIN, 1, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        (first.need("X-Ratelimit-Group"), first.need("X-Ratelimit-Limit"), first.need("X-Ratelimit-Used")),
        ("contracts", "6/1m", "2")
    );
    assert_eq!(first.need("X-Ratelimit-Remaining"), "4", "a 2xx costs 2 tokens");
    let r = get_page(&s, DOMAIN, 1, &[("If-None-Match", first.need("ETag"))]).await;
    assert_eq!((r.status, r.need("X-Ratelimit-Remaining")), (304, "3"), "a 3xx costs 1");
    assert_eq!(get_page(&s, DOMAIN, 1, &[]).await.need("X-Ratelimit-Remaining"), "1");
    let r = get_page(&s, DOMAIN, 1, &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error(), "Too many requests");
    let retry_after: u64 = r.need("Retry-After").parse().unwrap();
    assert!((1..=10).contains(&retry_after), "1 token short at 0.1 token/s: {retry_after}");
    assert_eq!(r.need("X-Ratelimit-Remaining"), "1");
    assert_eq!(s.stats().rate_limited, 1);

    // Without headers, as some routes answer.
    let limit = RateLimit { group: "contracts".into(), tokens: 2, window: Duration::from_secs(60), headers: false };
    let s = standin::start(StandInOptions { rate_limit: Some(limit), ..StandInOptions::default() }).await.unwrap();
    assert_eq!(get_page(&s, DOMAIN, 1, &[]).await.header("X-Ratelimit-Remaining"), None);
    let r = get_page(&s, DOMAIN, 1, &[]).await;
    assert_eq!((r.status, r.header("X-Ratelimit-Group")), (429, None));
    r.need("Retry-After");
}
