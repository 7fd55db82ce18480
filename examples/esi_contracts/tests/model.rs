//! The ESI example's contract model: timestamps, the contract shape and `summarize`, checked
//! against the fixture files and against figures computed independently of this code (by the
//! `fixtures/expected.py`, which wrote `fixtures/expected.json`, and by a second,
//! `serde_json::Value` based computation here).

use esi_contracts::model;
use esi_contracts::model::{Contract, ContractType, RegionSummary, parse_page, summarize};
use esi_contracts::standin::FIXTURES;
use esi_contracts::timestamp::Timestamp;
use serde_json::Value;

const EXPECTED: &str = include_str!("../fixtures/expected.json");

fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}

fn contracts_of(pages: &[&str]) -> Vec<Contract> {
    pages.iter().flat_map(|page| serde_json::from_str::<Vec<Contract>>(page).expect("fixture page parses")).collect()
}

#[test]
fn timestamps_parse_and_format() {
    assert_eq!(ts("1970-01-01T00:00:00Z"), Timestamp(0));
    assert_eq!(ts("2026-11-20T12:00:00Z"), Timestamp(1_795_176_000));
    assert_eq!(ts("2000-02-29T23:59:59Z"), Timestamp(951_868_799));
    assert_eq!(ts("1969-12-31T23:59:59Z"), Timestamp(-1));
    // Fractional seconds are tolerated (and dropped), as are offsets and lowercase separators.
    assert_eq!(ts("2026-11-20T12:00:00.987Z"), ts("2026-11-20T12:00:00Z"));
    assert_eq!(ts("2026-11-20T14:30:00+02:30"), ts("2026-11-20T12:00:00Z"));
    assert_eq!(ts("2026-11-20t12:00:00z"), ts("2026-11-20T12:00:00Z"));
    assert_eq!(Timestamp(1_795_176_000).to_string(), "2026-11-20T12:00:00Z");
    assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59Z");
    for bad in [
        "",
        "2026-11-20",
        "2026-11-20T12:00:00",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-20T24:00:00Z",
        "2026-11-20T12:60:00Z",
        "2026-11-20T12:00:00.Z",
        "2026-11-20T12:00:00Zjunk",
        "2026-11-20 12:00:00Z",
        "+026-11-20T12:00:00Z",
    ] {
        assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad:?} accepted");
    }
    // Every second of a long span round-trips (a stride through 1900..2200).
    let mut t = ts("1900-01-01T00:00:00Z").0;
    let end = ts("2200-01-01T00:00:00Z").0;
    while t < end {
        let s = Timestamp(t).to_string();
        assert_eq!(ts(&s), Timestamp(t), "{s}");
        t += 86_400 * 7 + 3_599;
    }
}

#[test]
fn http_dates_parse_and_format() {
    let t = ts("2026-11-20T12:00:00Z");
    assert_eq!(t.to_http_date(), "Fri, 20 Nov 2026 12:00:00 GMT");
    assert_eq!(Timestamp(0).to_http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(ts("2024-02-29T08:05:09Z").to_http_date(), "Thu, 29 Feb 2024 08:05:09 GMT");
    assert_eq!(Timestamp::parse_http_date("Fri, 20 Nov 2026 12:00:00 GMT"), Ok(t));
    for bad in [
        "Fri, 20 Nov 2026 12:00:00 UTC",
        "Friday, 20-Nov-26 12:00:00 GMT",
        "Fri, 20 Foo 2026 12:00:00 GMT",
        "Fri, 31 Nov 2026 12:00:00 GMT",
        "",
    ] {
        assert!(Timestamp::parse_http_date(bad).is_err(), "{bad:?} accepted");
    }
    let mut s = ts("1999-12-25T00:00:00Z").0;
    while s < ts("2031-01-01T00:00:00Z").0 {
        let t = Timestamp(s);
        assert_eq!(Timestamp::parse_http_date(&t.to_http_date()), Ok(t));
        s += 86_400 * 3 + 7_261;
    }
}

#[test]
fn timestamps_serialize_as_strings() {
    let t = ts("2026-11-20T11:32:05Z");
    assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-20T11:32:05Z\"");
    assert_eq!(serde_json::from_str::<Timestamp>("\"2026-11-20T11:32:05Z\"").unwrap(), t);
    let err = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
    assert!(err.to_string().contains("yesterday"), "{err}");
    assert!(serde_json::from_str::<Timestamp>("1795176000").is_err());
}

#[test]
fn contract_shape_as_real_pages_carry_it() {
    // A courier as a real page has it: every field, zeros where they do not apply, no
    // `for_corporation` (it is sent only when true), an issuer id past 2^31.
    let courier = r#"{"collateral":1200000000.0,"contract_id":235612003,"date_expired":"2026-11-21T01:38:19Z","date_issued":"2026-11-18T01:38:19Z","days_to_complete":14,"end_location_id":60012667,"issuer_corporation_id":98318381,"issuer_id":2150032795,"price":0.0,"reward":13620000.0,"start_location_id":60003760,"title":"","type":"courier","volume":45146.73}"#;
    let c: Contract = serde_json::from_str(courier).unwrap();
    assert_eq!(c.kind, ContractType::Courier);
    assert_eq!(c.issuer_id, 2_150_032_795);
    assert_eq!((c.reward, c.price, c.end_location_id, c.for_corporation), (13_620_000.0, 0.0, 60_012_667, false));
    assert_eq!(c.isk_value().to_bits(), 13_620_000.0_f64.to_bits());
    let back: Value = serde_json::to_value(&c).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(courier).unwrap(), "round trip, still no for_corporation");

    // Absent fields read as zeros; fields this model does not know are ignored.
    let sparse = r#"{"contract_id":1,"type":"unknown","issuer_id":2,"issuer_corporation_id":3,"date_issued":"2026-11-18T01:38:19Z","date_expired":"2026-11-21T01:38:19Z","for_corporation":true,"brand_new_field":{"x":[1,2]}}"#;
    let c: Contract = serde_json::from_str(sparse).unwrap();
    assert_eq!(
        (c.kind, c.price, c.volume, c.start_location_id, c.title.as_str()),
        (ContractType::Unknown, 0.0, 0.0, 0, "")
    );
    assert!(c.for_corporation);

    // A type ESI may add later is `unknown`, not a failed page.
    let future = sparse.replace("\"unknown\"", "\"barter\"");
    assert_eq!(serde_json::from_str::<Contract>(&future).unwrap().kind, ContractType::Unknown);

    // An item exchange's reward is ISK handed over with the items: not part of its value.
    let with_reward = r#"{"contract_id":5,"type":"item_exchange","issuer_id":2,"issuer_corporation_id":3,"date_issued":"2026-11-18T01:38:19Z","date_expired":"2026-11-21T01:38:19Z","price":1000000.0,"reward":250000.0}"#;
    assert_eq!(serde_json::from_str::<Contract>(with_reward).unwrap().isk_value().to_bits(), 1_000_000.0_f64.to_bits());
}

#[test]
fn one_odd_contract_never_fails_its_page() {
    let good = r#"{"contract_id":10,"type":"auction","issuer_id":2,"issuer_corporation_id":3,"date_issued":"2026-11-18T01:38:19Z","date_expired":"2026-11-21T01:38:19Z","price":5.0}"#;
    let page = format!(
        "[{good},{},{},{},{}]",
        r#"{"contract_id":11,"type":"loan"}"#,
        good.replace("\"price\":5.0", "\"price\":\"five\""),
        good.replace("2026-11-21T01:38:19Z", "soon"),
        good.replace("\"contract_id\":10", "\"contract_id\":12"),
    );
    let (contracts, skipped) = parse_page(&page).unwrap();
    assert_eq!(contracts.iter().map(|c| c.contract_id).collect::<Vec<_>>(), [10, 12]);
    assert_eq!(skipped, 3, "missing fields, a price that is text, a date that is not");
    assert_eq!(parse_page("[]").unwrap().1, 0);
    assert!(parse_page(r#"{"error":"not a page"}"#).is_err(), "a body that is not an array fails");
    assert!(parse_page(&page[..page.len() / 2]).is_err(), "a truncated body fails");
}

#[test]
fn every_fixture_contract_round_trips_exactly() {
    for (region, pages) in FIXTURES {
        for (i, page) in pages.iter().enumerate() {
            let raw: Value = serde_json::from_str(page).unwrap();
            let parsed: Vec<Contract> = serde_json::from_str(page).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), raw, "region {region} page {}", i + 1);
        }
    }
}

fn contract(id: i64, kind: ContractType, price: Option<f64>, expires: &str) -> Contract {
    let price = price.unwrap_or(0.0);
    Contract {
        contract_id: id,
        kind,
        issuer_id: 90_000_001,
        issuer_corporation_id: 98_000_001,
        date_issued: ts("2026-11-19T00:00:00Z"),
        date_expired: ts(expires),
        price: if kind == ContractType::Courier { 0.0 } else { price },
        buyout: None,
        reward: if kind == ContractType::Courier { price } else { 0.0 },
        collateral: 0.0,
        volume: 0.0,
        days_to_complete: 0,
        start_location_id: 60_003_760,
        end_location_id: 60_003_760,
        for_corporation: false,
        title: String::new(),
    }
}

#[test]
fn summarize_small_case_by_hand() {
    use ContractType::{Auction, Courier, ItemExchange, Loan, Unknown};
    let now = ts("2026-11-20T12:00:00Z");
    let mut cs = vec![
        contract(7, ItemExchange, Some(500.0), "2026-11-20T12:00:00Z"), // expired at now: no
        contract(3, ItemExchange, Some(900.0), "2026-11-20T12:00:01Z"), // expiring
        contract(9, ItemExchange, Some(900.0), "2026-11-21T12:00:00Z"), // expiring (edge)
        contract(1, ItemExchange, None, "2026-11-21T12:00:01Z"),        // unpriced, not ranked
        contract(4, Auction, Some(100.0), "2026-12-01T00:00:00Z"),
        contract(5, Courier, Some(250.0), "2026-12-01T00:00:00Z"),
        contract(6, Loan, Some(1_000.0), "2026-12-01T00:00:00Z"),
        contract(8, Unknown, Some(77.0), "2026-12-01T00:00:00Z"),
    ];
    cs[4].buyout = Some(10_000.0); // never counted
    cs[5].collateral = 10_000.0; // never counted
    cs[1].reward = 10_000.0; // an item exchange's reward: never counted
    // Twelve more cheap item exchanges: only ten are kept.
    for id in 100..112 {
        cs.push(contract(id, ItemExchange, Some(f64::from(u32::try_from(id).unwrap())), "2026-12-01T00:00:00Z"));
    }
    let s = summarize(10_000_002, &cs, now);
    assert_eq!(s.region_id, 10_000_002);
    assert_eq!(s.computed_at, now);
    assert_eq!(s.contracts, 20);
    assert_eq!(s.by_type.item_exchange.count, 16);
    let ix_total: f64 = 500.0 + 900.0 + 900.0 + (100..112).map(f64::from).sum::<f64>();
    assert!((s.by_type.item_exchange.isk_total - ix_total).abs() < 1e-6);
    assert_eq!((s.by_type.auction.count, s.by_type.auction.isk_total.to_bits()), (1, 100.0_f64.to_bits()));
    assert_eq!((s.by_type.courier.count, s.by_type.courier.isk_total.to_bits()), (1, 250.0_f64.to_bits()));
    assert_eq!((s.by_type.loan.count, s.by_type.loan.isk_total.to_bits()), (1, 1_000.0_f64.to_bits()));
    assert_eq!((s.by_type.unknown.count, s.by_type.unknown.isk_total.to_bits()), (1, 0.0_f64.to_bits()));
    assert_eq!(s.by_type.get(Loan).count, 1);
    let ids: Vec<i64> = s.top_item_exchanges.iter().map(|t| t.contract_id).collect();
    assert_eq!(ids, [3, 9, 7, 111, 110, 109, 108, 107, 106, 105]);
    assert_eq!(s.expiring_within_24h, 2);
    assert_eq!(s.top_item_exchanges[0].title, "");

    let empty = summarize(10_000_043, &[], now);
    assert_eq!(empty.contracts, 0);
    assert!(empty.top_item_exchanges.is_empty());
    assert_eq!(empty.by_type, model::TypeBreakdown::default());
}

#[test]
fn summarize_matches_the_generator_figures() {
    let expected: Value = serde_json::from_str(EXPECTED).unwrap();
    let now = ts(expected["now"].as_str().unwrap());
    let summaries: Vec<RegionSummary> = serde_json::from_value(expected["summaries"].clone()).unwrap();
    assert_eq!(summaries.len(), FIXTURES.len());
    for ((region, pages), want) in FIXTURES.into_iter().zip(summaries) {
        let got = summarize(region, &contracts_of(pages), now);
        assert_eq!(got, want, "region {region}");
        // The JSON form is the generator's, too.
        let want_json: Value =
            expected["summaries"].as_array().unwrap().iter().find(|s| s["region_id"] == region).unwrap().clone();
        assert_eq!(serde_json::to_value(&got).unwrap(), want_json);
    }
}

/// A second, independent computation over the raw JSON (no `Contract`, no `summarize`).
#[test]
fn summarize_matches_a_raw_json_computation() {
    let now = ts("2026-11-20T12:00:00Z");
    for (region, pages) in FIXTURES {
        let raw: Vec<Value> = pages.iter().flat_map(|p| serde_json::from_str::<Vec<Value>>(p).unwrap()).collect();
        let got = summarize(region, &contracts_of(pages), now);
        assert_eq!(got.contracts, raw.len());
        for (kind, field) in [
            ("item_exchange", Some("price")),
            ("auction", Some("price")),
            ("courier", Some("reward")),
            ("loan", Some("price")),
            ("unknown", None),
        ] {
            let of_kind: Vec<&Value> = raw.iter().filter(|c| c["type"] == kind).collect();
            // Whole-ISK values: exact in f64 whatever the order of the sum.
            let total: f64 = field.map_or(0.0, |f| of_kind.iter().filter_map(|c| c[f].as_f64()).sum());
            let totals: Value = serde_json::to_value(got.by_type).unwrap();
            assert_eq!(totals[kind]["count"], of_kind.len(), "{region} {kind}");
            assert_eq!(totals[kind]["isk_total"].as_f64(), Some(total), "{region} {kind}");
        }
        let mut ix: Vec<(f64, i64)> = raw
            .iter()
            .filter(|c| c["type"] == "item_exchange")
            .filter_map(|c| Some((c["price"].as_f64().filter(|&p| p > 0.0)?, c["contract_id"].as_i64()?)))
            .collect();
        // Largest first; ties by id: sort ascending by (-price, id).
        ix.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        let want: Vec<(f64, i64)> = ix.into_iter().take(10).collect();
        let have: Vec<(f64, i64)> = got.top_item_exchanges.iter().map(|t| (t.price, t.contract_id)).collect();
        assert_eq!(have, want, "{region}");
        // Expiry by comparing the RFC 3339 strings (lexicographic order is time order for `Z`).
        let horizon = "2026-11-21T12:00:00Z";
        let expiring = raw
            .iter()
            .filter(|c| {
                let e = c["date_expired"].as_str().unwrap();
                e > "2026-11-20T12:00:00Z" && e <= horizon
            })
            .count();
        assert_eq!(got.expiring_within_24h, expiring, "{region}");
    }
}

#[test]
fn fixtures_look_like_esi() {
    let now = ts("2026-11-20T12:00:00Z");
    let always = [
        "contract_id",
        "type",
        "issuer_id",
        "issuer_corporation_id",
        "date_issued",
        "date_expired",
        "price",
        "reward",
        "collateral",
        "volume",
        "days_to_complete",
        "start_location_id",
        "end_location_id",
        "title",
    ];
    let mut past_i32 = 0;
    for (region, pages) in FIXTURES {
        let mut last_id = 0;
        for (i, page) in pages.iter().enumerate() {
            let raw: Vec<Value> = serde_json::from_str(page).unwrap();
            // Full pages but the last.
            if i + 1 < pages.len() {
                assert_eq!(raw.len(), 1_000, "{region} page {}", i + 1);
            } else {
                assert!(!raw.is_empty() && raw.len() <= 1_000);
            }
            for v in &raw {
                for field in always {
                    assert!(v.get(field).is_some(), "{field} missing: {v}");
                }
                assert_ne!(v.get("for_corporation"), Some(&Value::Bool(false)), "sent only when true: {v}");
                let c: Contract = serde_json::from_value(v.clone()).unwrap();
                assert!(c.contract_id > last_id, "ascending ids: {v}");
                last_id = c.contract_id;
                assert!((200_000_000..300_000_000).contains(&c.contract_id), "{v}");
                past_i32 += usize::from(c.issuer_id > i64::from(i32::MAX));
                assert!(c.date_issued < now && now < c.date_expired, "{c:?}");
                let courier = c.kind == ContractType::Courier;
                assert_eq!(c.collateral > 0.0 || c.days_to_complete > 0, courier, "{c:?}");
                if courier {
                    assert_eq!(c.price.to_bits(), 0.0_f64.to_bits(), "{c:?}");
                } else {
                    assert_eq!((c.collateral, c.days_to_complete), (0.0, 0), "{c:?}");
                    assert_eq!(c.end_location_id, c.start_location_id, "{c:?}");
                }
                assert!(c.buyout.is_none() || c.kind == ContractType::Auction);
            }
        }
    }
    assert!(past_i32 > 0, "some issuer ids past 2^31, as real ones are");
}
