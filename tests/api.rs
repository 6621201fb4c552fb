//! The contract of api.md against the real binary on a free port.

mod common;

use common::{auth_with, call, call_full, client, get, holdfast_import, post, seed, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn is_problem(headers: &reqwest::header::HeaderMap, v: &Value, status: u16) -> bool {
    headers
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.starts_with("application/problem+json"))
        && v["status"] == status
        && v["code"].is_string()
        && v["title"].is_string()
        && v["type"].is_string()
}

#[test]
fn catalog_inventory_and_reservation_lifecycle() {
    let s = Server::start("");
    let c = client();
    let u = |p: &str| s.url(p);

    // Catalog and locations.
    let (st, v) = call(
        &c,
        "PUT",
        &u("/v1/skus/A1"),
        None,
        Some(r#"{"name":"Trail shoe 42","weight_g":850}"#),
    );
    assert_eq!(
        (st, v["name"].as_str(), v["weight_g"].as_i64()),
        (200, Some("Trail shoe 42"), Some(850))
    );
    assert_eq!(get(&c, &s, "/v1/skus/A1").1["sku"], "A1");
    assert_eq!(get(&c, &s, "/v1/skus/NOPE").0, 404);
    let loc = r#"{"name":"Milano Duomo","kind":"store","lat":45.4642,"lon":9.19,"priority":1,"ship":true,"pickup":true,"daily_capacity":200,"active":true}"#;
    let (st, v) = call(&c, "PUT", &u("/v1/locations/S001"), None, Some(loc));
    assert_eq!(
        (st, v["kind"].as_str(), v["daily_capacity"].as_i64()),
        (200, Some("store"), Some(200))
    );
    call(
        &c,
        "PUT",
        &u("/v1/locations/DC1"),
        None,
        Some(r#"{"name":"DC","kind":"dc","lat":45.0,"lon":9.0,"priority":0}"#),
    );
    let (st, v) = get(&c, &s, "/v1/locations");
    assert_eq!(st, 200);
    assert_eq!(v["locations"].as_array().map(Vec::len), Some(2));
    assert_eq!(get(&c, &s, "/v1/locations/S001").1["name"], "Milano Duomo");
    assert_eq!(get(&c, &s, "/v1/locations/S999").0, 404);

    // Inventory.
    let (st, v) = get(&c, &s, "/v1/inventory/S001/A1");
    assert_eq!(
        (st, v["on_hand"].as_i64(), v["version"].as_i64()),
        (200, Some(0), Some(0))
    );
    let (st, v) = call(
        &c,
        "PUT",
        &u("/v1/inventory/S001/A1"),
        None,
        Some(r#"{"on_hand":10,"safety_stock":1}"#),
    );
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({"location":"S001","sku":"A1","on_hand":10,"reserved":0,"safety_stock":1,"available":9,"version":1,"rotation":0.0})
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/inventory/S001/A1/adjustments",
        Some(r#"{"delta":-2,"reason":"sale"}"#),
    );
    assert_eq!(
        (st, v["on_hand"].as_i64(), v["version"].as_i64()),
        (200, Some(8), Some(2))
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/inventory/S001/A1/adjustments",
        Some(r#"{"delta":-9,"reason":"damage"}"#),
    );
    assert_eq!((st, v["code"].as_str()), (409, Some("insufficient_stock")));
    assert_eq!(
        call(
            &c,
            "PUT",
            &u("/v1/inventory/S001/NOPE"),
            None,
            Some(r#"{"on_hand":1}"#)
        )
        .1["code"],
        "unknown_sku"
    );
    assert_eq!(
        call(
            &c,
            "PUT",
            &u("/v1/inventory/NOPE/A1"),
            None,
            Some(r#"{"on_hand":1}"#)
        )
        .1["code"],
        "unknown_location"
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/inventory/batch",
        Some(r#"{"items":[{"location":"DC1","sku":"A1","on_hand":100,"safety_stock":0}]}"#),
    );
    assert_eq!((st, v["applied"].as_i64()), (200, Some(1)));
    let (st, v) = get(&c, &s, "/v1/availability/A1");
    assert_eq!((st, v["available"].as_i64()), (200, Some(107)));
    assert_eq!(v["locations"].as_array().map(Vec::len), Some(2));

    // Reservations: hold, read, confirm (twice), fulfil.
    let (st, h, r) = call_full(
        &c,
        "POST",
        &u("/v1/reservations"),
        None,
        Some(
            r#"{"lines":[{"sku":"A1","qty":2,"location":"S001"},{"sku":"A1","qty":5,"location":"DC1"}],"ttl_s":600}"#,
        ),
        &[],
    );
    assert_eq!(st, 201, "{r}");
    assert!(h.get("location").is_some());
    assert_eq!(r["status"], "held");
    assert_eq!(r["lines"].as_array().map(Vec::len), Some(2));
    assert!(r["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let id = r["id"].as_str().expect("id").to_string();
    assert_eq!(get(&c, &s, "/v1/inventory/S001/A1").1["reserved"], 2);
    assert_eq!(
        get(&c, &s, &format!("/v1/reservations/{id}")).1["status"],
        "held"
    );
    let (st, v) = post(
        &c,
        &s,
        &format!("/v1/reservations/{id}/extend"),
        Some(r#"{"ttl_s":60}"#),
    );
    assert_eq!((st, v["status"].as_str()), (200, Some("held")));
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id}/fulfil"), None).0,
        409
    );
    let confirmed = post(&c, &s, &format!("/v1/reservations/{id}/confirm"), None).1;
    assert_eq!(confirmed["status"], "confirmed");
    // A confirmed reservation no longer expires, and says so.
    assert!(confirmed["expires_at"].is_null(), "{confirmed}");
    assert!(confirmed["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id}/confirm"), None).0,
        200
    );
    let (st, v) = post(
        &c,
        &s,
        &format!("/v1/reservations/{id}/extend"),
        Some(r#"{"ttl_s":60}"#),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("reservation_not_held"))
    );
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id}/fulfil"), None).1["status"],
        "fulfilled"
    );
    let v = get(&c, &s, "/v1/inventory/S001/A1").1;
    assert_eq!(
        (v["on_hand"].as_i64(), v["reserved"].as_i64()),
        (Some(6), Some(0))
    );
    let (st, v) = post(&c, &s, &format!("/v1/reservations/{id}/release"), None);
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("reservation_not_held"))
    );

    // Release gives the quantity back at once; releasing again is 200.
    let (_, r) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A1","qty":3,"location":"S001"}]}"#),
    );
    let id2 = r["id"].as_str().expect("id").to_string();
    assert_eq!(get(&c, &s, "/v1/inventory/S001/A1").1["available"], 2);
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id2}/release"), None).1["status"],
        "released"
    );
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id2}/release"), None).0,
        200
    );
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id2}/confirm"), None).0,
        409
    );
    assert_eq!(get(&c, &s, "/v1/inventory/S001/A1").1["available"], 5);

    // All or nothing: a short line holds nothing and is named.
    let (st, v) = call(
        &c,
        "POST",
        &u("/v1/reservations"),
        None,
        Some(
            r#"{"lines":[{"sku":"A1","qty":1,"location":"DC1"},{"sku":"A1","qty":50,"location":"S001"}]}"#,
        ),
    );
    assert_eq!((st, v["code"].as_str()), (409, Some("insufficient_stock")));
    assert_eq!(
        v["lines"],
        json!([{"sku":"A1","location":"S001","requested":50,"available":5}])
    );
    assert_eq!(get(&c, &s, "/v1/inventory/DC1/A1").1["reserved"], 0);

    // Partial: holds what there is.
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A1","qty":50,"location":"S001"}],"allow_partial":true}"#),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["lines"][0]["qty"], 5);
    assert_eq!(v["lines"][0]["requested"], 50);
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A1","qty":1,"location":"S001"}],"allow_partial":true}"#),
    );
    assert_eq!((st, v["code"].as_str()), (409, Some("insufficient_stock")));

    // A line without a location is sourced when a destination is given:
    // here no location has a million A1 (tests/sourcing_api.rs holds).
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A1","qty":1000000}],"destination":{"lat":45.1,"lon":9.2}}"#),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{v}"
    );
    assert_eq!(v["lines"][0]["location"], Value::Null);
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A1","qty":1,"location":null}]}"#),
    );
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("lines[0].location"))
    );
    assert_eq!(get(&c, &s, "/v1/reservations/nope").0, 404);

    // Operations.
    assert_eq!(get(&c, &s, "/healthz").0, 200);
    let (st, v) = get(&c, &s, "/v1/openapi.json");
    assert_eq!(st, 200);
    assert!(v["paths"]["/v1/reservations"]["post"].is_object());
    assert!(v["paths"]["/v1/inventory/{location}/{sku}/adjustments"]["post"].is_object());
    let m = c
        .get(u("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        m.contains("holdfast_reservations_total{status=\"held\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("holdfast_http_request_duration_seconds_bucket{route=\"reservations_create\"")
    );
    assert!(m.contains("holdfast_reservations_total{status=\"fulfilled\"} 1"));
}

#[test]
fn a_reservation_with_ttl_1_expires() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 5);
    let (st, r) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A0","qty":5,"location":"S000"}],"ttl_s":1}"#),
    );
    assert_eq!(st, 201);
    let id = r["id"].as_str().expect("id").to_string();
    assert_eq!(get(&c, &s, "/v1/inventory/S000/A0").1["available"], 0);
    let t0 = Instant::now();
    loop {
        let (_, v) = get(&c, &s, &format!("/v1/reservations/{id}"));
        if v["status"] == "expired" {
            // An expired reservation still tells when it expired.
            assert!(
                v["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{v}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "never expired: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&c, &s, "/v1/inventory/S000/A0").1["available"], 5);
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id}/confirm"), None).0,
        409
    );
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id}/release"), None).1["status"],
        "expired"
    );
}

#[test]
fn idempotency_keys_replay_and_race() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 100);
    let body = r#"{"lines":[{"sku":"A0","qty":3,"location":"S000"}]}"#;
    let k = [("Idempotency-Key", "cart-1")];
    let (st1, _, a) = call_full(&c, "POST", &s.url("/v1/reservations"), None, Some(body), &k);
    let (st2, _, b) = call_full(&c, "POST", &s.url("/v1/reservations"), None, Some(body), &k);
    assert_eq!((st1, st2), (201, 201));
    assert_eq!(a, b);
    assert_eq!(get(&c, &s, "/v1/inventory/S000/A0").1["reserved"], 3);
    let (st, _, v) = call_full(
        &c,
        "POST",
        &s.url("/v1/reservations"),
        None,
        Some(r#"{"lines":[{"sku":"A0","qty":4,"location":"S000"}]}"#),
        &k,
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let (st, _, _) = call_full(
        &c,
        "POST",
        &s.url("/v1/reservations"),
        None,
        Some(body),
        &[("Idempotency-Key", "bad key!")],
    );
    assert_eq!(st, 422);

    // Eight clients at once with one key: one hold, one answer.
    let answers: Vec<(u16, Value)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    let c = client();
                    let (st, _, v) = call_full(
                        &c,
                        "POST",
                        &s.url("/v1/reservations"),
                        None,
                        Some(body),
                        &[("Idempotency-Key", "cart-2")],
                    );
                    (st, v)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(
        answers
            .iter()
            .all(|(st, v)| *st == 201 && *v == answers[0].1),
        "{answers:?}"
    );
    assert_eq!(get(&c, &s, "/v1/inventory/S000/A0").1["reserved"], 6);

    // Keys survive a restart.
    let mut s = s;
    s.kill_and_restart("");
    let (st, _, again) = call_full(&c, "POST", &s.url("/v1/reservations"), None, Some(body), &k);
    assert_eq!((st, &again), (201, &a));
    assert_eq!(get(&c, &s, "/v1/inventory/S000/A0").1["reserved"], 6);
}

/// A small deterministic generator for random bodies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn bad_input_is_4xx_problem_json_and_writes_nothing() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 10);
    let (_, r) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A0","qty":1,"location":"S000"}]}"#),
    );
    let rid = r["id"].as_str().expect("id").to_string();
    let before = get(&c, &s, "/v1/inventory/S000/A0").1;

    let endpoints = [
        ("PUT", "/v1/skus/A0".to_string()),
        ("PUT", "/v1/locations/S000".to_string()),
        ("PUT", "/v1/inventory/S000/A0".to_string()),
        ("POST", "/v1/inventory/S000/A0/adjustments".to_string()),
        ("POST", "/v1/inventory/batch".to_string()),
        ("POST", "/v1/reservations".to_string()),
        ("POST", format!("/v1/reservations/{rid}/extend")),
    ];
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(1_100_000));
    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"sku":"A0","qty":1,"location":"S000"}))
        .collect();
    let mut bodies: Vec<String> = vec![
        "".into(),
        "{".into(),
        "not json".into(),
        "[]".into(),
        "null".into(),
        "42".into(),
        r#"{"name":""}"#.into(),
        r#"{"name":5,"on_hand":-1,"delta":"x","reason":"theft","items":"no","lines":[],"ttl_s":0}"#.into(),
        r#"{"on_hand":1000000001,"safety_stock":-1,"delta":0,"reason":"sale","kind":"shop","lat":91,"lon":0,"ttl_s":86401}"#.into(),
        r#"{"lines":[{"sku":"A0","qty":1,"location":null}],"on_hand":null,"delta":null,"name":null,"items":[{"location":null,"sku":"A0","on_hand":1}]}"#.into(),
        r#"{"on_hand":1.5,"delta":1e3,"lines":[{"sku":"A0","qty":0,"location":"S000"}],"ttl_s":"600","items":[{"location":"S000","sku":"A0"}]}"#.into(),
        r#"{"lines":[{"sku":"bad sku","qty":1000001,"location":"S000"}],"items":[{"location":"S000","sku":"NOPE","on_hand":1}],"name":["ok"],"kind":"store","lat":"x","lon":9}"#.into(),
        json!({"lines": too_many, "items": (0..10_001).map(|_| json!({})).collect::<Vec<_>>()}).to_string(),
        json!({"lines":[{"sku":"NOPE","qty":1,"location":"S000"}], "items":[{"location":"NOPE","sku":"A0","on_hand":1}]}).to_string(),
        big,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..40 {
        let n = (rng.next() % 200) as usize;
        let bytes: Vec<u8> = (0..n).map(|_| (rng.next() % 256) as u8).collect();
        bodies.push(String::from_utf8_lossy(&bytes).into_owned());
        // Random JSON-looking bodies too.
        let keys = [
            "name", "on_hand", "delta", "reason", "lines", "items", "ttl_s", "kind", "lat", "qty",
        ];
        let vals = [
            "-1",
            "1e99",
            "\"\"",
            "[]",
            "{}",
            "null",
            "true",
            "\" \"",
            "99999999999999999999",
            "[{\"sku\":{}}]",
        ];
        let k = keys[(rng.next() % 10) as usize];
        let v = vals[(rng.next() % 10) as usize];
        bodies.push(format!("{{\"{k}\":{v}}}"));
    }
    for (m, p) in &endpoints {
        for b in &bodies {
            let (st, h, v) = call_full(&c, m, &s.url(p), None, Some(b), &[]);
            assert!((400..500).contains(&st), "{m} {p} {b:.80}: {st} {v}");
            assert!(is_problem(&h, &v, st), "{m} {p}: not problem+json: {v}");
        }
    }
    let after = get(&c, &s, "/v1/inventory/S000/A0").1;
    assert_eq!(before, after, "a refused request changed the record");
    assert_eq!(get(&c, &s, "/v1/skus/A0").1["name"], "sku 0");
    let (st, v) = get(&c, &s, &format!("/v1/reservations/{rid}"));
    assert_eq!((st, v["status"].as_str()), (200, Some("held")));
    let (st, h, v) = call_full(
        &c,
        "PUT",
        &s.url("/v1/skus/A0"),
        None,
        Some(&"x".repeat(2 << 20)),
        &[],
    );
    assert_eq!(st, 413);
    assert!(is_problem(&h, &v, 413));
    let (st, h, v) = call_full(&c, "DELETE", &s.url("/v1/skus/A0"), None, None, &[]);
    assert_eq!(st, 405);
    assert!(is_problem(&h, &v, 405));
    let (st, h, v) = call_full(&c, "GET", &s.url("/v1/nothing/here"), None, None, &[]);
    assert_eq!(st, 404);
    assert!(is_problem(&h, &v, 404));
    let (st, _, _) = call_full(&c, "GET", &s.url("/v1/skus/bad%20id"), None, None, &[]);
    assert_eq!(st, 422);
}

const STORE_AND_SLOW: &str = r#"
[[auth.tokens]]
token = "store-s000"
role = "store"
location = "S000"
[[auth.tokens]]
token = "slow-client"
role = "channel"
rate_limit_per_s = 2
rate_limit_burst = 3
"#;

#[test]
fn every_role_against_every_endpoint() {
    let s = Server::start(&auth_with(STORE_AND_SLOW));
    let c = client();
    seed(&c, &s, Some("admin-secret"), 1, 2, 50);
    let (_, r) = call(
        &c,
        "POST",
        &s.url("/v1/reservations"),
        Some("web-checkout"),
        Some(r#"{"lines":[{"sku":"A0","qty":1,"location":"S000"}]}"#),
    );
    let rid = r["id"].as_str().expect("a reservation").to_string();
    let res = r#"{"lines":[{"sku":"A0","qty":1,"location":"S000"}]}"#;
    // (method, path, body, admin, channel, store S000)
    type Case<'a> = (&'a str, String, Option<&'a str>, u16, u16, u16);
    let cases: Vec<Case> = vec![
        (
            "PUT",
            "/v1/skus/A0".into(),
            Some(r#"{"name":"x"}"#),
            200,
            403,
            403,
        ),
        ("GET", "/v1/skus/A0".into(), None, 200, 200, 200),
        (
            "PUT",
            "/v1/locations/S000".into(),
            Some(r#"{"name":"x","kind":"store","lat":1,"lon":1}"#),
            200,
            403,
            403,
        ),
        ("GET", "/v1/locations/S000".into(), None, 200, 200, 200),
        ("GET", "/v1/locations".into(), None, 200, 200, 200),
        (
            "PUT",
            "/v1/inventory/S000/A0".into(),
            Some(r#"{"on_hand":50}"#),
            200,
            403,
            200,
        ),
        (
            "PUT",
            "/v1/inventory/S001/A0".into(),
            Some(r#"{"on_hand":50}"#),
            200,
            403,
            403,
        ),
        ("GET", "/v1/inventory/S000/A0".into(), None, 200, 403, 200),
        ("GET", "/v1/inventory/S001/A0".into(), None, 200, 403, 403),
        (
            "POST",
            "/v1/inventory/S000/A0/adjustments".into(),
            Some(r#"{"delta":1,"reason":"receipt"}"#),
            200,
            403,
            200,
        ),
        (
            "POST",
            "/v1/inventory/S001/A0/adjustments".into(),
            Some(r#"{"delta":1,"reason":"receipt"}"#),
            200,
            403,
            403,
        ),
        (
            "POST",
            "/v1/inventory/batch".into(),
            Some(r#"{"items":[{"location":"S001","sku":"A0","on_hand":5}]}"#),
            200,
            403,
            403,
        ),
        (
            "POST",
            "/v1/inventory/batch".into(),
            Some(r#"{"items":[{"location":"S000","sku":"A0","on_hand":50}]}"#),
            200,
            403,
            200,
        ),
        ("GET", "/v1/availability/A0".into(), None, 200, 200, 403),
        ("POST", "/v1/reservations".into(), Some(res), 201, 201, 403),
        (
            "GET",
            format!("/v1/reservations/{rid}"),
            None,
            200,
            200,
            403,
        ),
        (
            "POST",
            format!("/v1/reservations/{rid}/extend"),
            Some(r#"{"ttl_s":100}"#),
            200,
            200,
            403,
        ),
        (
            "POST",
            format!("/v1/reservations/{rid}/confirm"),
            None,
            200,
            200,
            403,
        ),
        (
            "POST",
            format!("/v1/reservations/{rid}/fulfil"),
            None,
            200,
            409,
            403,
        ),
        (
            "POST",
            format!("/v1/reservations/{rid}/release"),
            None,
            409,
            409,
            403,
        ),
    ];
    for (m, p, b, admin, channel, store) in &cases {
        for (tok, want) in [
            ("admin-secret", admin),
            ("web-checkout", channel),
            ("store-s000", store),
        ] {
            let (st, v) = call(&c, m, &s.url(p), Some(tok), *b);
            assert_eq!(st, *want, "{tok} {m} {p}: {v}");
        }
        assert_eq!(call(&c, m, &s.url(p), None, *b).0, 401, "no token {m} {p}");
        assert_eq!(
            call(&c, m, &s.url(p), Some("wrong-token"), *b).0,
            401,
            "bad token {m} {p}"
        );
    }
    // Operations are open.
    assert_eq!(get(&c, &s, "/healthz").0, 200);
    assert_eq!(get(&c, &s, "/v1/openapi.json").0, 200);

    // Rate limit: a burst of 3, then 429 with Retry-After.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let (st, h, v) = call_full(
            &c,
            "GET",
            &s.url("/v1/skus/A0"),
            Some("slow-client"),
            None,
            &[],
        );
        if st == 429 {
            assert_eq!(v["code"], "rate_limited");
            retry_after = h
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        statuses.push(st);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
}

#[test]
fn flash_sale_cap_per_reservation() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 100);
    call(
        &c,
        "PUT",
        &s.url("/v1/skus/A0"),
        None,
        Some(r#"{"name":"hot","max_qty_per_reservation":2}"#),
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A0","qty":3,"location":"S000"}]}"#),
    );
    assert_eq!((st, v["code"].as_str()), (422, Some("validation_failed")));
    let (st, _) = call(
        &c,
        "POST",
        &s.url("/v1/reservations"),
        None,
        Some(
            r#"{"lines":[{"sku":"A0","qty":2,"location":"S000"},{"sku":"A0","qty":1,"location":"S000"}]}"#,
        ),
    );
    assert_eq!(st, 422, "the cap counts every line of the SKU");
    assert_eq!(
        post(
            &c,
            &s,
            "/v1/reservations",
            Some(r#"{"lines":[{"sku":"A0","qty":2,"location":"S000"}]}"#)
        )
        .0,
        201
    );
}

#[test]
fn import_loads_a_network_through_the_batch_endpoint() {
    let s = Server::start(&auth_with(STORE_AND_SLOW));
    let c = client();
    // The catalog first (import loads counts of known SKUs and locations),
    // by `import --catalog`.
    let dir = tempfile::tempdir().expect("tmp");
    let skus = dir.path().join("skus.csv");
    std::fs::write(
        &skus,
        "sku,name,weight_g,ship_alone\nA0,x,100,\nA1,x,,\nA2,sofa,52000,true\n",
    )
    .expect("skus");
    let out = holdfast_import(
        &s.base,
        "admin-secret",
        &["--catalog", skus.to_str().expect("path")],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 3 SKUs"));
    let (_, sofa) = call(&c, "GET", &s.url("/v1/skus/A2"), Some("admin-secret"), None);
    assert_eq!(
        (sofa["weight_g"].as_u64(), sofa["ship_alone"].as_bool()),
        (Some(52000), Some(true))
    );
    for j in 0..2 {
        call(
            &c,
            "PUT",
            &s.url(&format!("/v1/locations/S00{j}")),
            Some("admin-secret"),
            Some(r#"{"name":"s","kind":"store","lat":1,"lon":1}"#),
        );
    }
    let csv = dir.path().join("counts.csv");
    let mut text = String::from("location,sku,on_hand\n");
    for i in 0..3 {
        for j in 0..2 {
            text.push_str(&format!("S00{j},A{i},{}\n", 10 * i + j));
        }
    }
    std::fs::write(&csv, text).expect("csv");
    let jsonl = dir.path().join("counts.jsonl");
    std::fs::write(
        &jsonl,
        "{\"location\":\"S001\",\"sku\":\"A2\",\"on_hand\":77,\"safety_stock\":2}\n",
    )
    .expect("jsonl");
    let run = |file: &std::path::Path, token: &str| {
        holdfast_import(
            &s.base,
            token,
            &[file.to_str().expect("path")],
            &["--batch", "4"],
        )
    };
    let out = run(&csv, "admin-secret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 6 stock records"));
    assert_eq!(
        call(
            &c,
            "GET",
            &s.url("/v1/inventory/S001/A2"),
            Some("admin-secret"),
            None
        )
        .1["on_hand"],
        21
    );
    let out = run(&jsonl, "admin-secret");
    assert!(out.status.success());
    let v = call(
        &c,
        "GET",
        &s.url("/v1/inventory/S001/A2"),
        Some("admin-secret"),
        None,
    )
    .1;
    assert_eq!(
        (v["on_hand"].as_i64(), v["safety_stock"].as_i64()),
        (Some(77), Some(2))
    );
    // A refused batch stops the import with the server's answer.
    let out = run(&csv, "web-checkout");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
}

#[test]
fn a_bulk_catalog_import_is_all_or_nothing_and_survives_kill_9() {
    let mut s = Server::start("");
    let c = client();
    let items: Vec<Value> = (0..500)
        .map(|i| json!({"sku": format!("K{i:04}"), "name": format!("item {i}"), "weight_g": i, "ship_alone": i % 100 == 0}))
        .collect();
    let (st, v) = post(
        &c,
        &s,
        "/v1/skus/batch",
        Some(&json!({ "items": items }).to_string()),
    );
    assert_eq!((st, v["applied"].as_u64()), (200, Some(500)), "{v}");
    assert_eq!(get(&c, &s, "/v1/skus/K0100").1["ship_alone"], true);

    // One bad item: nothing of the batch is written, the item is named.
    let (st, v) = post(
        &c,
        &s,
        "/v1/skus/batch",
        Some(&json!({"items": [{"sku": "NEW1", "name": "fine"}, {"sku": "NEW2"}, {"sku": "bad id!", "name": "x"}]}).to_string()),
    );
    assert_eq!(st, 422, "{v}");
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, vec!["items[1].name", "items[2].sku"]);
    assert_eq!(get(&c, &s, "/v1/skus/NEW1").0, 404);
    for body in [json!({"items": []}), json!({"items": "x"}), json!({})] {
        let (st, v) = post(&c, &s, "/v1/skus/batch", Some(&body.to_string()));
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some("items")),
            "{v}"
        );
    }

    // Acknowledged is durable: the batch is one journal record, replayed.
    s.kill_and_restart("");
    let (st, v) = get(&c, &s, "/v1/skus/K0499");
    assert_eq!(
        (st, v["name"].as_str(), v["weight_g"].as_u64()),
        (200, Some("item 499"), Some(499))
    );
    assert_eq!(get(&c, &s, "/v1/skus/K0000").1["ship_alone"], true);
}

/// An adjustment with an `Idempotency-Key` is applied once per key (of its
/// token): asked again it answers the record as it is, another adjustment
/// under the key is refused (422), and the key outlives a kill -9 and a
/// snapshot that trimmed the journal behind it.
#[test]
fn a_keyed_adjustment_is_applied_once_across_a_kill_9() {
    let mut s = Server::start("[snapshot]\nevery_records = 5\nevery_s = 1\n");
    let c = client();
    seed(&c, &s, None, 1, 1, 10);
    let adjust = |s: &Server, key: &str, delta: i64| {
        call_full(
            &c,
            "POST",
            &s.url("/v1/inventory/S000/A0/adjustments"),
            None,
            Some(&json!({"delta": delta, "reason": "return"}).to_string()),
            &[("Idempotency-Key", key)],
        )
    };
    let on_hand = |s: &Server| get(&c, s, "/v1/inventory/S000/A0").1["on_hand"].clone();
    let (st, _, v) = adjust(&s, "back-1", 2);
    assert_eq!((st, &v["on_hand"]), (200, &json!(12)), "{v}");
    let (st, _, v) = adjust(&s, "back-1", 2);
    assert_eq!((st, &v["on_hand"]), (200, &json!(12)), "applied twice: {v}");
    let (st, h, v) = adjust(&s, "back-1", 3);
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{v}"
    );
    assert!(is_problem(&h, &v, 422));
    // Enough records for a snapshot, then its time.
    for i in 0..8 {
        assert_eq!(adjust(&s, &format!("more-{i}"), 1).0, 200);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(on_hand(&s), json!(20));
    s.kill_and_restart("[snapshot]\nevery_records = 5\nevery_s = 1\n");
    assert_eq!(on_hand(&s), json!(20));
    for key in ["back-1", "more-0", "more-7"] {
        let delta = if key == "back-1" { 2 } else { 1 };
        let (st, _, v) = adjust(&s, key, delta);
        assert_eq!((st, &v["on_hand"]), (200, &json!(20)), "{key} again: {v}");
    }
    // Unkeyed adjustments are applied each time, as before.
    let (st, _, v) = call_full(
        &c,
        "POST",
        &s.url("/v1/inventory/S000/A0/adjustments"),
        None,
        Some(&json!({"delta": 1, "reason": "receipt"}).to_string()),
        &[],
    );
    assert_eq!((st, &v["on_hand"]), (200, &json!(21)), "{v}");
}

/// A count sets on_hand: a batch naming one record twice applies its items
/// in order (the last wins), never the sum of their deltas from the value
/// before the batch (issue 17: it read 20 after two counts of 10, then -40
/// after three of 0, and a restart kept it).
#[test]
fn a_batch_naming_a_record_twice_applies_its_counts_in_order() {
    let mut s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 0);
    let batch = |s: &Server, counts: &[i64]| {
        let items: Vec<Value> = counts
            .iter()
            .map(|n| json!({"location": "S000", "sku": "A0", "on_hand": n}))
            .collect();
        call(
            &c,
            "POST",
            &s.url("/v1/inventory/batch"),
            None,
            Some(&json!({ "items": items }).to_string()),
        )
    };
    let record = |s: &Server| get(&c, s, "/v1/inventory/S000/A0").1;
    let (st, v) = batch(&s, &[10, 10]);
    assert_eq!((st, &v["applied"]), (200, &json!(2)), "{v}");
    let r = record(&s);
    assert_eq!(
        (&r["on_hand"], &r["available"]),
        (&json!(10), &json!(10)),
        "{r}"
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A0","qty":11,"location":"S000"}]}"#),
    );
    assert_eq!(st, 409, "11 of 10 held: {v}");
    assert_eq!(batch(&s, &[0, 0, 0]).0, 200);
    assert_eq!(record(&s)["on_hand"], json!(0));
    assert_eq!(batch(&s, &[7, 3, 5]).0, 200);
    let before = record(&s);
    assert_eq!(before["on_hand"], json!(5), "{before}");
    s.kill_and_restart("");
    let after = record(&s);
    assert_eq!(after, before, "the restart changed the record");
    // Nothing is stuck: an adjustment applies.
    let (st, v) = post(
        &c,
        &s,
        "/v1/inventory/S000/A0/adjustments",
        Some(r#"{"delta":-5,"reason":"sale"}"#),
    );
    assert_eq!((st, &v["on_hand"]), (200, &json!(0)), "{v}");
}

/// A refused cart changes nothing, its records' versions included, and a
/// version never goes backwards across a restart (issue 17: a refused cart
/// moved S001's version 2 -> 4, and a restart read 2 again).
#[test]
fn a_refused_cart_moves_no_version_and_versions_survive_a_restart() {
    let mut s = Server::start("");
    let c = client();
    // A0 and A1 live in different stock shards where there are two or more
    // (a cart across shards holds provisionally, then undoes).
    seed(&c, &s, None, 2, 2, 0);
    put_ok_count(&c, &s, "S000", "A0", 10);
    put_ok_count(&c, &s, "S001", "A0", 1);
    put_ok_count(&c, &s, "S001", "A1", 1);
    let versions = |s: &Server| {
        ["S000/A0", "S001/A0", "S000/A1", "S001/A1"].map(|r| {
            get(&c, s, &format!("/v1/inventory/{r}")).1["version"]
                .as_u64()
                .expect("a version")
        })
    };
    let before = versions(&s);
    for cart in [
        r#"{"lines":[{"sku":"A0","qty":2,"location":"S000"},{"sku":"A0","qty":5,"location":"S001"}]}"#,
        r#"{"lines":[{"sku":"A0","qty":2,"location":"S000"},{"sku":"A1","qty":5,"location":"S001"}]}"#,
    ] {
        let (st, v) = post(&c, &s, "/v1/reservations", Some(cart));
        assert_eq!(st, 409, "{v}");
        assert_eq!(versions(&s), before, "after the refused {cart}");
    }
    // A granted hold moves each of its records by one, and that survives a
    // restart.
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(
            r#"{"lines":[{"sku":"A0","qty":2,"location":"S000"},{"sku":"A1","qty":1,"location":"S001"}]}"#,
        ),
    );
    assert_eq!(st, 201, "{v}");
    let mut want = before;
    want[0] += 1;
    want[3] += 1;
    assert_eq!(versions(&s), want);
    s.kill_and_restart("");
    assert_eq!(versions(&s), want);
}

fn put_ok_count(c: &reqwest::blocking::Client, s: &Server, loc: &str, sku: &str, on_hand: i64) {
    let (st, v) = call(
        c,
        "PUT",
        &s.url(&format!("/v1/inventory/{loc}/{sku}")),
        None,
        Some(&json!({ "on_hand": on_hand }).to_string()),
    );
    assert_eq!(st, 200, "{v}");
}

/// on_hand never leaves 0..=1,000,000,000: a count below what is reserved,
/// then the fulfilment of the reserved units (the goods left all the same),
/// corrects the record to 0 with a journaled correction instead of leaving
/// it negative (and every later adjustment refused).
#[test]
fn a_fulfilment_past_a_lower_count_leaves_on_hand_at_zero() {
    let mut s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 5);
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A0","qty":5,"location":"S000"}]}"#),
    );
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(
        post(&c, &s, &format!("/v1/reservations/{id}/confirm"), None).0,
        200
    );
    put_ok_count(&c, &s, "S000", "A0", 2);
    let (st, v) = post(&c, &s, &format!("/v1/reservations/{id}/fulfil"), None);
    assert_eq!(st, 200, "{v}");
    let record = |s: &Server| get(&c, s, "/v1/inventory/S000/A0").1;
    let r = record(&s);
    assert_eq!(
        (&r["on_hand"], &r["reserved"]),
        (&json!(0), &json!(0)),
        "{r}"
    );
    s.kill_and_restart("");
    let after = record(&s);
    assert_eq!(
        (&after["on_hand"], &after["reserved"]),
        (&json!(0), &json!(0)),
        "{after}"
    );
    assert_eq!(after["version"], r["version"], "{after} after {r}");
    let (st, v) = post(
        &c,
        &s,
        "/v1/inventory/S000/A0/adjustments",
        Some(r#"{"delta":3,"reason":"receipt"}"#),
    );
    assert_eq!((st, &v["on_hand"]), (200, &json!(3)), "{v}");
}

#[test]
fn a_null_destination_sources_nothing_and_holds_nothing() {
    // A null member is an absent one: a line without a location and a
    // null destination (or pickup_location) has nowhere to be sourced
    // for. It was left out and the rest held, 201: all or nothing broken.
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 2, 1, 5);
    for target in [r#""destination":null"#, r#""pickup_location":null"#] {
        let body = format!(
            r#"{{"lines":[{{"sku":"A0","qty":1,"location":"S000"}},{{"sku":"A1","qty":1}}],{target}}}"#
        );
        let (st, v) = post(&c, &s, "/v1/reservations", Some(&body));
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some("lines[1].location")),
            "{body}: {v}"
        );
    }
    assert_eq!(common::stock(&c, &s, "S000", "A0"), (5, 0));
}

#[test]
fn a_reservation_not_held_keeps_the_problem_s_status() {
    // RFC 9457 (and api.md's problems): `status` is the HTTP status. A
    // 409 reservation_not_held wrote the reservation's there ("released");
    // it is `reservation_status`.
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 5);
    let (st, r) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(r#"{"lines":[{"sku":"A0","qty":1,"location":"S000"}]}"#),
    );
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().expect("id");
    let (st, _) = post(&c, &s, &format!("/v1/reservations/{id}/release"), None);
    assert_eq!(st, 200);
    let order = json!({"id": "O-1", "lines": [{"sku": "A0", "qty": 1, "unit_price": "1.00"}],
        "delivery": {"type": "ship", "lat": 45.4, "lon": 9.1}, "payment": {"provider": "sandbox"},
        "reservation_id": id});
    for (path, body) in [
        (format!("/v1/reservations/{id}/confirm"), None),
        ("/v1/orders".to_string(), Some(order.to_string())),
    ] {
        let (st, h, v) = call_full(&c, "POST", &s.url(&path), None, body.as_deref(), &[]);
        assert!(st == 409 && is_problem(&h, &v, 409), "{path}: {st} {v}");
        assert_eq!(
            (v["code"].as_str(), v["reservation_status"].as_str()),
            (Some("reservation_not_held"), Some("released")),
            "{path}: {v}"
        );
    }
}

#[test]
fn a_malformed_idempotency_key_is_refused_by_every_endpoint_that_takes_one() {
    // api.md: an idempotency key is an identifier; anything else is 422.
    // An order took any header and placed the order.
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 5);
    let order = json!({"id": "O-1", "lines": [{"sku": "A0", "qty": 1, "unit_price": "1.00"}],
        "delivery": {"type": "ship", "lat": 45.4, "lon": 9.1}, "payment": {"provider": "sandbox"}});
    for (path, body) in [
        ("/v1/orders", order.to_string()),
        (
            "/v1/reservations",
            r#"{"lines":[{"sku":"A0","qty":1,"location":"S000"}]}"#.to_string(),
        ),
        (
            "/v1/inventory/S000/A0/adjustments",
            r#"{"delta":1,"reason":"receipt"}"#.to_string(),
        ),
    ] {
        let (st, _, v) = call_full(
            &c,
            "POST",
            &s.url(path),
            None,
            Some(&body),
            &[("Idempotency-Key", "not a key!")],
        );
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some("Idempotency-Key")),
            "{path}: {v}"
        );
    }
    assert_eq!(get(&c, &s, "/v1/orders/O-1").0, 404);
    assert_eq!(common::stock(&c, &s, "S000", "A0"), (5, 0));
}
