//! Incoming supply through a real server: announced (its units incoming
//! on the location's records, with the earliest time expected), delivered
//! in one go or several (on hand; a delivery once per Idempotency-Key),
//! cancelled; the id as the idempotency key; each role's reach; bad
//! input; the movement history and metrics; kill -9 losing nothing
//! acknowledged.

mod common;

use common::{auth_with, call, call_full, client, now_ms, seed, Server};
use holdfast::clock::rfc3339;
use reqwest::blocking::Client;
use serde_json::{json, Value};

const STORES: &str = "[[auth.tokens]]\ntoken = \"store-s000\"\nrole = \"store\"\nlocation = \"S000\"\n[[auth.tokens]]\ntoken = \"store-s001\"\nrole = \"store\"\nlocation = \"S001\"\n";
const ADMIN: Option<&str> = Some("admin-secret");
const CHANNEL: Option<&str> = Some("web-checkout");
const OWN: Option<&str> = Some("store-s000");
const OTHER: Option<&str> = Some("store-s001");
const DAY: i64 = 24 * 3600 * 1000;

fn send(
    c: &Client,
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    call(c, method, &s.url(path), token, body.as_deref())
}

/// Announces supply `id` at S000 of `lines` (sku index, qty) expected
/// `days` from now.
fn announce(
    c: &Client,
    s: &Server,
    token: Option<&str>,
    id: &str,
    days: i64,
    lines: &[(u32, u32)],
) -> (u16, Value) {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(k, q)| json!({"sku": format!("A{k}"), "qty": q}))
        .collect();
    let body = json!({"id": id, "location": "S000", "expected_at": eta(days), "lines": lines});
    send(c, s, "POST", "/v1/supply", token, Some(body))
}

/// `days` from now, to the second (as a supply names it).
fn eta(days: i64) -> String {
    rfc3339((now_ms() + days * DAY) / 1000 * 1000)
}

fn deliver(
    c: &Client,
    s: &Server,
    id: &str,
    key: Option<&str>,
    lines: &[(u32, u32)],
) -> (u16, Value) {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(k, q)| json!({"sku": format!("A{k}"), "qty": q}))
        .collect();
    let body = json!({ "lines": lines }).to_string();
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    let url = s.url(&format!("/v1/supply/{id}/receive"));
    let (st, _, v) = call_full(c, "POST", &url, ADMIN, Some(&body), &headers);
    (st, v)
}

/// (on_hand, available, incoming, incoming_eta) of A`sku` at S000.
fn figures(c: &Client, s: &Server, sku: u32) -> (i64, i64, i64, Value) {
    let (st, v) = send(
        c,
        s,
        "GET",
        &format!("/v1/inventory/S000/A{sku}"),
        ADMIN,
        None,
    );
    assert_eq!(st, 200, "{v}");
    (
        v["on_hand"].as_i64().expect("on_hand"),
        v["available"].as_i64().expect("available"),
        v.get("incoming").and_then(Value::as_i64).unwrap_or(0),
        v.get("incoming_eta").cloned().unwrap_or(Value::Null),
    )
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("?")
}

#[test]
fn supply_shows_incoming_until_delivered_and_joins_on_hand() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 2, 10);
    let (st, v) = announce(&c, &s, ADMIN, "PO-1", 3, &[(0, 10), (1, 5)]);
    assert_eq!((st, v["status"].as_str()), (201, Some("expected")), "{v}");
    let in_3_days = v["expected_at"].clone();
    assert_eq!(
        figures(&c, &s, 0),
        (10, 10, 10, in_3_days.clone()),
        "incoming, not available"
    );
    // An earlier one: the record shows the earliest.
    let (st, v) = announce(&c, &s, OWN, "ASN-2", 1, &[(0, 4)]);
    assert_eq!(st, 201, "{v}");
    assert_eq!(figures(&c, &s, 0), (10, 10, 14, v["expected_at"].clone()));
    let (st, v) = deliver(&c, &s, "ASN-2", None, &[(0, 4)]);
    assert_eq!((st, v["status"].as_str()), (200, Some("received")), "{v}");
    assert_eq!(
        figures(&c, &s, 0),
        (14, 14, 10, in_3_days.clone()),
        "back to the later one"
    );

    // Part of PO-1, under a key: applied once.
    let (st, v) = deliver(&c, &s, "PO-1", Some("dock-7"), &[(0, 6)]);
    assert_eq!(
        (st, v["lines"][0]["remaining"].as_i64()),
        (200, Some(4)),
        "{v}"
    );
    let (st, v) = deliver(&c, &s, "PO-1", Some("dock-7"), &[(0, 6)]);
    assert_eq!(
        (st, v["receipts"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    assert_eq!(figures(&c, &s, 0), (20, 20, 4, in_3_days));
    let (st, v) = deliver(&c, &s, "PO-1", Some("dock-7"), &[(0, 1)]);
    assert_eq!((st, code(&v)), (422, "idempotency_key_reused"), "{v}");
    // The rest, one more of A0 than ordered: on the shelf all the same.
    let (st, v) = deliver(&c, &s, "PO-1", None, &[(0, 5), (1, 5)]);
    assert_eq!((st, v["status"].as_str()), (200, Some("received")), "{v}");
    assert_eq!(
        figures(&c, &s, 0),
        (25, 25, 0, Value::Null),
        "nothing more to come"
    );
    assert_eq!(figures(&c, &s, 1), (15, 15, 0, Value::Null));
    let (st, v) = deliver(&c, &s, "PO-1", None, &[(0, 1)]);
    assert_eq!(
        (st, code(&v), v["supply_status"].as_str()),
        (409, "invalid_transition", Some("received")),
        "{v}"
    );

    // The history tells each delivery, by the supply's id.
    let (_, v) = send(
        &c,
        &s,
        "GET",
        "/v1/inventory/S000/A0/history?limit=3",
        ADMIN,
        None,
    );
    let kinds: Vec<(&str, i64, &str)> = v["movements"]
        .as_array()
        .expect("movements")
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap_or("?"),
                m["delta_on_hand"].as_i64().unwrap_or(0),
                m["ref"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("receipt", 5, "PO-1"),
            ("receipt", 6, "PO-1"),
            ("receipt", 4, "ASN-2")
        ],
        "{v}"
    );

    // Cancelled part way: what came stays, the rest leaves incoming.
    assert_eq!(announce(&c, &s, ADMIN, "PO-3", 2, &[(1, 7)]).0, 201);
    assert_eq!(deliver(&c, &s, "PO-3", None, &[(1, 2)]).0, 200);
    let (st, v) = send(&c, &s, "POST", "/v1/supply/PO-3/cancel", OWN, None);
    assert_eq!((st, v["status"].as_str()), (200, Some("cancelled")), "{v}");
    assert_eq!(figures(&c, &s, 1), (17, 17, 0, Value::Null));
    assert_eq!(deliver(&c, &s, "PO-3", None, &[(1, 1)]).0, 409);

    common::assert_metrics(
        &c,
        &s,
        &[
            "holdfast_supply_total{step=\"expected\"} 3",
            "holdfast_supply_total{step=\"received\"} 4",
            "holdfast_supply_total{step=\"cancelled\"} 1",
            "holdfast_supply_units_received_total 22",
        ],
    );
}

#[test]
fn each_role_reaches_its_own_and_bad_input_is_named() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 2, 10);
    assert_eq!(announce(&c, &s, CHANNEL, "PO-1", 1, &[(0, 1)]).0, 403);
    let elsewhere = json!({"id": "PO-1", "location": "S001", "expected_at": "junk"});
    let (st, v) = send(&c, &s, "POST", "/v1/supply", OWN, Some(elsewhere));
    assert_eq!(st, 403, "authorization before validation: {v}");
    assert_eq!(announce(&c, &s, OWN, "PO-1", 1, &[(0, 3)]).0, 201);
    // The same again answers it; another under the id is refused.
    assert_eq!(announce(&c, &s, ADMIN, "PO-1", 1, &[(0, 3)]).0, 200);
    let (st, v) = announce(&c, &s, ADMIN, "PO-1", 1, &[(0, 4)]);
    assert_eq!((st, code(&v)), (409, "supply_exists"), "{v}");
    for (token, want) in [(ADMIN, 200), (OWN, 200), (OTHER, 403), (CHANNEL, 403)] {
        let (st, v) = send(&c, &s, "GET", "/v1/supply/PO-1", token, None);
        assert_eq!(st, want, "{token:?}: {v}");
    }
    assert_eq!(
        send(&c, &s, "POST", "/v1/supply/PO-1/cancel", OTHER, None).0,
        403
    );
    assert_eq!(
        send(&c, &s, "GET", "/v1/supply/PO-none", ADMIN, None).0,
        404
    );
    let (_, v) = send(&c, &s, "GET", "/v1/supply", OTHER, None);
    assert_eq!(v["supplies"], json!([]), "{v}");
    let (_, v) = send(&c, &s, "GET", "/v1/supply?status=expected", OWN, None);
    assert_eq!(v["supplies"][0]["id"], "PO-1", "{v}");
    assert_eq!(
        send(&c, &s, "GET", "/v1/supply?location=S000", OTHER, None).0,
        403
    );
    assert_eq!(
        send(&c, &s, "GET", "/v1/supply?status=late", ADMIN, None).0,
        422
    );

    let fields = |v: &Value| -> Vec<String> {
        v["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|x| x["field"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let ask = |body: Value| send(&c, &s, "POST", "/v1/supply", ADMIN, Some(body));
    let far = rfc3339(now_ms() + 3 * 365 * DAY);
    let (st, v) = ask(
        json!({"id": "PO 2", "location": "S000", "expected_at": far, "lines": [{"sku": "A0", "qty": 0}]}),
    );
    assert_eq!(
        (st, fields(&v)),
        (
            422,
            vec![
                "id".to_string(),
                "expected_at".into(),
                "lines[0].qty".into()
            ]
        ),
        "{v}"
    );
    let (st, v) = ask(
        json!({"id": "PO-2", "location": "S009", "expected_at": eta(1), "lines": [{"sku": "A0", "qty": 1}]}),
    );
    assert_eq!(
        (st, code(&v), v["field"].as_str()),
        (422, "unknown_location", Some("location")),
        "{v}"
    );
    let (st, v) = ask(
        json!({"id": "PO-2", "location": "S000", "expected_at": eta(1), "lines": [{"sku": "A0", "qty": 1}, {"sku": "A0", "qty": 1}]}),
    );
    assert_eq!(
        (st, fields(&v)),
        (422, vec!["lines[1].sku".to_string()]),
        "{v}"
    );
    for (body, field) in [
        (json!({"lines": [{"sku": "A1", "qty": 1}]}), "lines[0].sku"),
        (json!({"lines": [{"sku": "A0", "qty": 0}]}), "lines"),
        (json!({"lines": []}), "lines"),
    ] {
        let (st, v) = send(&c, &s, "POST", "/v1/supply/PO-1/receive", ADMIN, Some(body));
        assert_eq!((st, fields(&v)), (422, vec![field.to_string()]), "{v}");
    }
    assert_eq!(figures(&c, &s, 0).2, 3, "nothing delivered");
    // A record's incoming units stay within 1,000,000,000.
    let (st, v) = announce(&c, &s, ADMIN, "PO-big", 1, &[(0, 999_999_998)]);
    assert_eq!((st, fields(&v)), (422, vec!["lines".to_string()]), "{v}");
    assert_eq!(
        announce(&c, &s, ADMIN, "PO-big", 1, &[(0, 999_999_997)]).0,
        201
    );
    // A cancel asked again is answered; a delivery after it refused.
    for _ in 0..2 {
        let (st, v) = send(&c, &s, "POST", "/v1/supply/PO-big/cancel", ADMIN, None);
        assert_eq!((st, v["status"].as_str()), (200, Some("cancelled")), "{v}");
    }
    assert_eq!(deliver(&c, &s, "PO-big", None, &[(0, 1)]).0, 409);
    assert_eq!(figures(&c, &s, 0).2, 3);
}

#[test]
fn supply_survives_kill_9_before_and_after_a_snapshot() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 2, 1, 10);
    let (st, v) = announce(&c, &s, None, "PO-1", 5, &[(0, 8)]);
    assert_eq!(st, 201, "{v}");
    let in_5_days = v["expected_at"].clone();
    assert_eq!(announce(&c, &s, None, "PO-2", 2, &[(0, 3)]).0, 201);
    s.kill_and_restart(journal_only);
    let (st, _, v) = call_full(
        &c,
        "POST",
        &s.url("/v1/supply/PO-2/receive"),
        None,
        Some(&json!({"lines": [{"sku": "A0", "qty": 3}]}).to_string()),
        &[("idempotency-key", "d1")],
    );
    assert_eq!(st, 200, "{v}");
    s.kill_and_restart("[snapshot]\nevery_records = 1\nevery_s = 1\n");
    assert_eq!(figures(&c, &s, 0), (13, 13, 8, in_5_days.clone()));
    let (st, _, v) = call_full(
        &c,
        "POST",
        &s.url("/v1/supply/PO-2/receive"),
        None,
        Some(&json!({"lines": [{"sku": "A0", "qty": 3}]}).to_string()),
        &[("idempotency-key", "d1")],
    );
    assert_eq!(
        (st, v["receipts"].as_array().map(Vec::len)),
        (200, Some(1)),
        "the key survived: {v}"
    );
    assert_eq!(deliver_plain(&c, &s, "PO-1", 2), 200);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    s.kill_and_restart(journal_only);
    assert_eq!(figures(&c, &s, 0), (15, 15, 6, in_5_days));
    let (_, v) = send(&c, &s, "GET", "/v1/supply?status=expected", None, None);
    assert_eq!(v["supplies"][0]["lines"][0]["remaining"], 6, "{v}");
}

fn deliver_plain(c: &Client, s: &Server, id: &str, qty: u32) -> u16 {
    let body = json!({"lines": [{"sku": "A0", "qty": qty}]});
    send(
        c,
        s,
        "POST",
        &format!("/v1/supply/{id}/receive"),
        None,
        Some(body),
    )
    .0
}

#[test]
fn deliveries_under_way_when_killed_lose_nothing_acknowledged() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 3, 1, 10);
    let base = s.base.clone();
    // A worker announces supply and delivers it in two parts until the
    // server dies under it; it keeps the deliveries it was told of.
    let worker = std::thread::spawn(move || {
        let c = client();
        let mut told: Vec<(String, u32)> = Vec::new();
        for i in 0.. {
            let id = format!("PO-{i}");
            let ask = json!({"id": id, "location": "S000", "expected_at": eta(1 + i % 5),
                "lines": [{"sku": format!("A{}", i % 3), "qty": 6}]});
            let url = |p: &str| format!("{base}{p}");
            let Some((201, _)) =
                common::try_call(&c, "POST", &url("/v1/supply"), Some(&ask.to_string()))
            else {
                break;
            };
            told.push((id.clone(), 0));
            for part in [2u32, 4 + (i % 2) as u32] {
                let got =
                    json!({"lines": [{"sku": format!("A{}", i % 3), "qty": part}]}).to_string();
                match common::try_call(
                    &c,
                    "POST",
                    &url(&format!("/v1/supply/{id}/receive")),
                    Some(&got),
                ) {
                    Some((200, _)) => told.last_mut().expect("told").1 += part,
                    _ => return told,
                }
            }
        }
        told
    });
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    s.kill_and_restart(journal_only);
    let told = worker.join().expect("worker");
    assert!(told.len() > 5, "the worker got going: {told:?}");

    // Every acknowledged delivery is there; units are accounted: on hand
    // is the seed and every delivery kept, incoming what is still to come.
    let kept = common::all_pages(&c, &s, "/v1/supply", "supplies");
    for (id, units) in &told {
        let got = kept
            .iter()
            .find(|k| k["id"] == *id)
            .map_or(0, |k| k["lines"][0]["received"].as_u64().unwrap_or(0));
        assert!(got >= u64::from(*units), "{id}: told {units}, kept {got}");
    }
    for k in 0..3 {
        let sku = format!("A{k}");
        let of_sku = || kept.iter().filter(|p| p["lines"][0]["sku"] == sku);
        let received: i64 = of_sku()
            .map(|p| p["lines"][0]["received"].as_i64().unwrap_or(0))
            .sum();
        let coming: i64 = of_sku()
            .filter(|p| p["status"] == "expected")
            .map(|p| p["lines"][0]["remaining"].as_i64().unwrap_or(0))
            .sum();
        let (on_hand, _, incoming, _) = figures(&c, &s, k);
        assert_eq!((on_hand, incoming), (10 + received, coming), "A{k}");
    }
}
