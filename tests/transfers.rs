//! Transfers between locations through a real server: requested, shipped
//! (the units leave the sender's on_hand only if free there, and show in
//! transit at the receiver), received (what arrived joins on_hand, the
//! rest is the discrepancy), cancelled before shipping; the id as the
//! idempotency key; each role's reach; bad input; the listing; the
//! movement history and metrics; kill -9 between the steps losing
//! nothing acknowledged.

mod common;

use common::{auth_with, call, client, movement_kinds, seed, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const STORES: &str = "[[auth.tokens]]\ntoken = \"store-s000\"\nrole = \"store\"\nlocation = \"S000\"\n[[auth.tokens]]\ntoken = \"store-s001\"\nrole = \"store\"\nlocation = \"S001\"\n[[auth.tokens]]\ntoken = \"store-s002\"\nrole = \"store\"\nlocation = \"S002\"\n";
const ADMIN: Option<&str> = Some("admin-secret");
const CHANNEL: Option<&str> = Some("web-checkout");
const SENDER: Option<&str> = Some("store-s000");
const RECEIVER: Option<&str> = Some("store-s001");
const OTHER: Option<&str> = Some("store-s002");

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

fn request(c: &Client, s: &Server, token: Option<&str>, id: &str, qty: u32) -> (u16, Value) {
    let body = json!({"id": id, "from": "S000", "to": "S001", "lines": [{"sku": "A0", "qty": qty}, {"sku": "A1", "qty": 1}]});
    send(c, s, "POST", "/v1/transfers", token, Some(body))
}

fn step(
    c: &Client,
    s: &Server,
    token: Option<&str>,
    id: &str,
    action: &str,
    body: Option<Value>,
) -> (u16, Value) {
    send(
        c,
        s,
        "POST",
        &format!("/v1/transfers/{id}/{action}"),
        token,
        body,
    )
}

/// (on_hand, reserved, in_transit) of a record (in_transit 0 when absent).
fn figures(c: &Client, s: &Server, loc: &str, sku: &str) -> (i64, i64, i64) {
    let (st, v) = send(
        c,
        s,
        "GET",
        &format!("/v1/inventory/{loc}/{sku}"),
        ADMIN,
        None,
    );
    assert_eq!(st, 200, "{v}");
    (
        v["on_hand"].as_i64().expect("on_hand"),
        v["reserved"].as_i64().expect("reserved"),
        v.get("in_transit").and_then(Value::as_i64).unwrap_or(0),
    )
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("?")
}

#[test]
fn a_shipment_takes_free_units_all_or_none() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 3, 10);
    // Three held by checkout, two set apart: 5 free at the sender.
    let hold = json!({"lines": [{"sku": "A0", "qty": 3, "location": "S000"}], "ttl_s": 600});
    assert_eq!(
        send(&c, &s, "POST", "/v1/reservations", CHANNEL, Some(hold)).0,
        201
    );
    let apart = json!({"bucket": "damaged", "delta": 2, "reason": "damage"});
    let (st, v) = send(
        &c,
        &s,
        "POST",
        "/v1/inventory/S000/A0/unsellable",
        SENDER,
        Some(apart),
    );
    assert_eq!(st, 200, "{v}");

    // Too many: requested, but shipping it is refused and moves nothing.
    let (st, v) = request(&c, &s, ADMIN, "T-big", 6);
    assert_eq!((st, v["status"].as_str()), (201, Some("requested")), "{v}");
    let (st, v) = step(&c, &s, SENDER, "T-big", "ship", None);
    assert_eq!((st, code(&v)), (409, "insufficient_stock"), "{v}");
    assert_eq!(
        v["lines"],
        json!([{"sku": "A0", "location": "S000", "requested": 6, "available": 5}]),
        "{v}"
    );
    assert_eq!(figures(&c, &s, "S000", "A0"), (10, 3, 0), "nothing moved");
    assert_eq!(
        figures(&c, &s, "S000", "A1"),
        (10, 0, 0),
        "not even the line that fitted"
    );
    let (st, v) = step(&c, &s, RECEIVER, "T-big", "cancel", None);
    assert_eq!((st, v["status"].as_str()), (200, Some("cancelled")), "{v}");
    let (st, v) = step(&c, &s, ADMIN, "T-big", "ship", None);
    assert_eq!(
        (st, code(&v), v["transfer_status"].as_str()),
        (409, "invalid_transition", Some("cancelled")),
        "{v}"
    );

    // The store that receives asks for five: all of them leave.
    let (st, v) = request(&c, &s, RECEIVER, "T-1", 5);
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["lines"][0],
        json!({"sku": "A0", "qty": 5, "received": null, "discrepancy": null})
    );
    let (st, v) = step(&c, &s, SENDER, "T-1", "ship", None);
    assert_eq!((st, v["status"].as_str()), (200, Some("shipped")), "{v}");
    assert!(v["shipped_at"].is_string(), "{v}");
    assert_eq!(
        figures(&c, &s, "S000", "A0"),
        (5, 3, 0),
        "the units left the sender"
    );
    assert_eq!(
        figures(&c, &s, "S001", "A0"),
        (10, 0, 5),
        "and are on their way"
    );
    assert_eq!(figures(&c, &s, "S001", "A1"), (10, 0, 1));
    // The sender's held and set-apart units are untouched: nothing is
    // free to sell there now.
    let (_, v) = send(&c, &s, "GET", "/v1/inventory/S000/A0", ADMIN, None);
    assert_eq!(
        (v["available"].as_i64(), v["unsellable"]["damaged"].as_i64()),
        (Some(0), Some(2)),
        "{v}"
    );
    // In transit is not available at the receiver yet.
    let (_, v) = send(&c, &s, "GET", "/v1/inventory/S001/A0", ADMIN, None);
    assert_eq!(v["available"], 10, "{v}");
    // Shipping again answers the transfer; nothing leaves twice.
    let (st, v) = step(&c, &s, ADMIN, "T-1", "ship", None);
    assert_eq!((st, v["status"].as_str()), (200, Some("shipped")), "{v}");
    assert_eq!(figures(&c, &s, "S000", "A0"), (5, 3, 0));
    // Cancelling once shipped is refused.
    let (st, v) = step(&c, &s, ADMIN, "T-1", "cancel", None);
    assert_eq!((st, code(&v)), (409, "invalid_transition"), "{v}");
    common::assert_metrics(
        &c,
        &s,
        &[
            "holdfast_transfers_short_total 1",
            "holdfast_transfers_open 1",
            "holdfast_transfers_total{step=\"cancelled\"} 1",
        ],
    );
}

#[test]
fn a_receipt_adds_what_arrived_and_shows_the_rest_as_discrepancy() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 3, 10);
    assert_eq!(request(&c, &s, RECEIVER, "T-1", 5).0, 201);
    assert_eq!(step(&c, &s, SENDER, "T-1", "ship", None).0, 200);
    // Four of A0 arrive, A1 not named: none of it.
    let got = json!({"lines": [{"sku": "A0", "qty": 4}]});
    let (st, v) = step(&c, &s, RECEIVER, "T-1", "receive", Some(got.clone()));
    assert_eq!((st, v["status"].as_str()), (200, Some("received")), "{v}");
    assert_eq!(
        v["lines"][0],
        json!({"sku": "A0", "qty": 5, "received": 4, "discrepancy": 1})
    );
    assert_eq!(
        v["lines"][1],
        json!({"sku": "A1", "qty": 1, "received": 0, "discrepancy": 1})
    );
    assert_eq!(v["discrepancy"], 2, "{v}");
    assert_eq!(
        figures(&c, &s, "S001", "A0"),
        (14, 0, 0),
        "arrived; nothing in transit"
    );
    assert_eq!(figures(&c, &s, "S001", "A1"), (10, 0, 0));
    // The same receipt again answers it; other figures are refused.
    let (st, v) = step(&c, &s, RECEIVER, "T-1", "receive", Some(got));
    assert_eq!(
        (st, v["lines"][0]["received"].as_i64()),
        (200, Some(4)),
        "{v}"
    );
    assert_eq!(figures(&c, &s, "S001", "A0"), (14, 0, 0), "received once");
    let other = json!({"lines": [{"sku": "A0", "qty": 5}]});
    let (st, v) = step(&c, &s, RECEIVER, "T-1", "receive", Some(other));
    assert_eq!((st, code(&v)), (409, "invalid_transition"), "{v}");

    // Each record's history tells the transfer, by its id.
    let (st, v) = send(
        &c,
        &s,
        "GET",
        "/v1/inventory/S000/A0/history?limit=1",
        ADMIN,
        None,
    );
    assert_eq!(st, 200, "{v}");
    let m = &v["movements"][0];
    assert_eq!(
        (
            m["kind"].as_str(),
            m["delta_on_hand"].as_i64(),
            m["ref"].as_str()
        ),
        (Some("transfer_out"), Some(-5), Some("T-1")),
        "{v}"
    );
    assert_eq!(m["by"], json!({"role": "store", "location": "S000"}), "{v}");
    let (_, v) = send(
        &c,
        &s,
        "GET",
        "/v1/inventory/S001/A0/history?limit=2",
        ADMIN,
        None,
    );
    let moves = v["movements"].as_array().expect("movements");
    assert_eq!(movement_kinds(moves), ["transfer_in", "transfer_in"], "{v}");
    assert_eq!(
        (
            moves[0]["delta_on_hand"].as_i64(),
            moves[0]["delta_in_transit"].as_i64()
        ),
        (Some(4), Some(-5)),
        "{v}"
    );
    assert_eq!(
        (
            moves[1]["delta_on_hand"].as_i64(),
            moves[1]["delta_in_transit"].as_i64()
        ),
        (Some(0), Some(5)),
        "{v}"
    );

    // And the metrics count them.
    common::assert_metrics(
        &c,
        &s,
        &[
            "holdfast_transfers_total{step=\"requested\"} 1",
            "holdfast_transfers_total{step=\"shipped\"} 1",
            "holdfast_transfers_total{step=\"received\"} 1",
            "holdfast_transfers_total{step=\"cancelled\"} 0",
            "holdfast_transfer_units_total{kind=\"shipped\"} 6",
            "holdfast_transfer_units_total{kind=\"received\"} 4",
            "holdfast_transfers_short_total 0",
            "holdfast_transfers_open 0",
        ],
    );
}

#[test]
fn the_id_is_the_key_and_each_role_reaches_its_own() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 3, 10);
    // Checkout has no business with transfers.
    assert_eq!(request(&c, &s, CHANNEL, "T-1", 1).0, 403);
    assert_eq!(send(&c, &s, "GET", "/v1/transfers", CHANNEL, None).0, 403);
    // A store asks only for its own location's.
    let (st, v) = send(
        &c,
        &s,
        "POST",
        "/v1/transfers",
        OTHER,
        Some(json!({"id": "T-1", "from": "S000", "to": "S001", "lines": "junk"})),
    );
    assert_eq!(st, 403, "authorization before validation: {v}");
    assert_eq!(request(&c, &s, SENDER, "T-1", 2).0, 201);

    // The same request again answers it; another under the id is refused.
    let (st, v) = request(&c, &s, RECEIVER, "T-1", 2);
    assert_eq!((st, v["id"].as_str()), (200, Some("T-1")), "{v}");
    let (st, v) = request(&c, &s, ADMIN, "T-1", 3);
    assert_eq!((st, code(&v)), (409, "transfer_exists"), "{v}");

    // Reading: admin, and the two stores; not a third.
    for (token, want) in [
        (ADMIN, 200),
        (SENDER, 200),
        (RECEIVER, 200),
        (OTHER, 403),
        (CHANNEL, 403),
    ] {
        let (st, v) = send(&c, &s, "GET", "/v1/transfers/T-1", token, None);
        assert_eq!(st, want, "{token:?}: {v}");
    }
    assert_eq!(
        send(&c, &s, "GET", "/v1/transfers/T-none", ADMIN, None).0,
        404
    );
    // Shipping is the sender's; receiving the receiver's.
    assert_eq!(step(&c, &s, RECEIVER, "T-1", "ship", None).0, 403);
    assert_eq!(step(&c, &s, OTHER, "T-1", "cancel", None).0, 403);
    assert_eq!(step(&c, &s, CHANNEL, "T-1", "ship", None).0, 403);
    assert_eq!(step(&c, &s, SENDER, "T-1", "ship", None).0, 200);
    let got = json!({"lines": [{"sku": "A0", "qty": 2}, {"sku": "A1", "qty": 1}]});
    assert_eq!(
        step(&c, &s, SENDER, "T-1", "receive", Some(got.clone())).0,
        403
    );
    let (st, v) = step(&c, &s, RECEIVER, "T-1", "receive", Some(got));
    assert_eq!((st, v["discrepancy"].as_i64()), (200, Some(0)), "{v}");
}

#[test]
fn the_listing_shows_a_store_its_own_a_page_at_a_time() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 3, 10);
    assert_eq!(request(&c, &s, SENDER, "T-1", 2).0, 201);
    assert_eq!(step(&c, &s, SENDER, "T-1", "ship", None).0, 200);
    // The listing: a store sees its own location's only.
    let body =
        json!({"id": "T-2", "from": "S001", "to": "S002", "lines": [{"sku": "A0", "qty": 1}]});
    assert_eq!(
        send(&c, &s, "POST", "/v1/transfers", ADMIN, Some(body)).0,
        201
    );
    let ids = |v: &Value| -> Vec<String> {
        v["transfers"]
            .as_array()
            .expect("transfers")
            .iter()
            .map(|t| t["id"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    let (st, v) = send(&c, &s, "GET", "/v1/transfers", ADMIN, None);
    assert_eq!(
        (st, ids(&v)),
        (200, vec!["T-1".to_string(), "T-2".to_string()]),
        "{v}"
    );
    let (_, v) = send(&c, &s, "GET", "/v1/transfers", SENDER, None);
    assert_eq!(ids(&v), ["T-1"], "{v}");
    let (_, v) = send(&c, &s, "GET", "/v1/transfers", OTHER, None);
    assert_eq!(ids(&v), ["T-2"], "{v}");
    assert_eq!(
        send(&c, &s, "GET", "/v1/transfers?location=S000", OTHER, None).0,
        403
    );
    let (_, v) = send(
        &c,
        &s,
        "GET",
        "/v1/transfers?location=S001&status=requested",
        ADMIN,
        None,
    );
    assert_eq!(ids(&v), ["T-2"], "{v}");
    // A page at a time.
    let (_, v) = send(&c, &s, "GET", "/v1/transfers?limit=1", ADMIN, None);
    assert_eq!(
        (ids(&v), v["next_cursor"].as_str()),
        (vec!["T-1".to_string()], Some("T-1")),
        "{v}"
    );
    let (_, v) = send(
        &c,
        &s,
        "GET",
        "/v1/transfers?limit=1&cursor=T-1",
        ADMIN,
        None,
    );
    assert_eq!(
        (ids(&v), v["next_cursor"].clone()),
        (vec!["T-2".to_string()], Value::Null),
        "{v}"
    );
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 2, 10);
    let ask = |body: Value| send(&c, &s, "POST", "/v1/transfers", ADMIN, Some(body));
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
    let (st, v) = ask(json!({"id": "T 1", "from": "S000", "to": "S000", "lines": []}));
    assert_eq!(
        (st, fields(&v)),
        (422, vec!["id".to_string(), "to".into(), "lines".into()]),
        "{v}"
    );
    let (st, v) = ask(
        json!({"id": "T-1", "from": "S000", "to": "S001", "lines": [{"sku": "A0", "qty": 0}, {"sku": "A1", "qty": 1}, {"sku": "A1", "qty": 2}]}),
    );
    assert_eq!(
        (st, fields(&v)),
        (422, vec!["lines[0].qty".to_string(), "lines[2].sku".into()]),
        "{v}"
    );
    let (st, v) =
        ask(json!({"id": "T-1", "from": "S000", "to": "S009", "lines": [{"sku": "A0", "qty": 1}]}));
    assert_eq!(
        (st, code(&v), v["field"].as_str()),
        (422, "unknown_location", Some("to")),
        "{v}"
    );
    let (st, v) = ask(
        json!({"id": "T-1", "from": "S000", "to": "S001", "lines": [{"sku": "A0", "qty": 1}, {"sku": "Z9", "qty": 1}]}),
    );
    assert_eq!(
        (st, code(&v), v["field"].as_str()),
        (422, "unknown_sku", Some("lines[1].sku")),
        "{v}"
    );
    assert_eq!(send(&c, &s, "POST", "/v1/transfers", ADMIN, None).0, 400);
    // None of it was kept.
    let (_, v) = send(&c, &s, "GET", "/v1/transfers", ADMIN, None);
    assert_eq!(v["transfers"], json!([]), "{v}");

    assert_eq!(request(&c, &s, ADMIN, "T-1", 2).0, 201);
    // Received before it shipped: refused, whatever the body.
    let got = json!({"lines": [{"sku": "A0", "qty": 2}]});
    let (st, v) = step(&c, &s, ADMIN, "T-1", "receive", Some(got));
    assert_eq!(
        (st, code(&v), v["transfer_status"].as_str()),
        (409, "invalid_transition", Some("requested")),
        "{v}"
    );
    assert_eq!(step(&c, &s, ADMIN, "T-1", "ship", None).0, 200);
    for (body, field) in [
        (json!({"lines": [{"sku": "A7", "qty": 1}]}), "lines[0].sku"),
        (
            json!({"lines": [{"sku": "A0", "qty": 1}, {"sku": "A0", "qty": 1}]}),
            "lines[1].sku",
        ),
        (json!({"lines": [{"sku": "A0", "qty": -1}]}), "lines[0].qty"),
        (json!({"lines": []}), "lines"),
    ] {
        let (st, v) = step(&c, &s, ADMIN, "T-1", "receive", Some(body));
        assert_eq!((st, fields(&v)), (422, vec![field.to_string()]), "{v}");
    }
    assert_eq!(
        figures(&c, &s, "S001", "A0"),
        (10, 0, 2),
        "still in transit"
    );
    for q in [
        "status=lost",
        "limit=0",
        "limit=201",
        "cursor=a%20b",
        "location=a%20b",
    ] {
        let (st, v) = send(&c, &s, "GET", &format!("/v1/transfers?{q}"), ADMIN, None);
        assert_eq!(st, 422, "{q}: {v}");
    }
    assert_eq!(step(&c, &s, ADMIN, "T-none", "ship", None).0, 404);
    assert_eq!(send(&c, &s, "PUT", "/v1/transfers/T-1", ADMIN, None).0, 405);
}

#[test]
fn a_late_count_sees_the_units_a_transfer_took() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    seed(&c, &s, ADMIN, 2, 2, 10);
    // After the seed's counts, before the transfer.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = holdfast::clock::rfc3339(common::now_ms() - 100);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(request(&c, &s, ADMIN, "T-1", 4).0, 201);
    assert_eq!(step(&c, &s, ADMIN, "T-1", "ship", None).0, 200);
    // Counted 10 on the shelf before the four left: 6 are there now.
    let count = json!({"on_hand": 10, "counted_at": before});
    let (st, v) = send(&c, &s, "PUT", "/v1/inventory/S000/A0", SENDER, Some(count));
    assert_eq!((st, v["on_hand"].as_i64()), (200, Some(6)), "{v}");
}

#[test]
fn transfers_survive_kill_9_between_their_steps() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 2, 2, 10);
    assert_eq!(request(&c, &s, None, "T-1", 3).0, 201);
    assert_eq!(request(&c, &s, None, "T-2", 2).0, 201);
    s.kill_and_restart(journal_only);
    let (st, v) = step(&c, &s, None, "T-1", "ship", None);
    assert_eq!(
        (st, v["status"].as_str()),
        (200, Some("shipped")),
        "the request survived: {v}"
    );
    s.kill_and_restart(journal_only);
    assert_eq!(figures(&c, &s, "S000", "A0"), (7, 0, 0));
    assert_eq!(
        figures(&c, &s, "S001", "A0"),
        (10, 0, 3),
        "still in transit"
    );
    let (_, v) = send(&c, &s, "GET", "/v1/transfers/T-1", None, None);
    assert_eq!(v["status"], "shipped", "{v}");
    // A shipment is all or nothing across a restart too: T-2 still ships
    // only what is free.
    assert_eq!(step(&c, &s, None, "T-2", "ship", None).0, 200);
    let got = json!({"lines": [{"sku": "A0", "qty": 3}, {"sku": "A1", "qty": 1}]});
    assert_eq!(step(&c, &s, None, "T-1", "receive", Some(got)).0, 200);

    // Snapshotted, then killed: from the snapshot and the journal after it.
    s.kill_and_restart("[snapshot]\nevery_records = 1\nevery_s = 1\n");
    let got = json!({"lines": [{"sku": "A0", "qty": 1}]});
    assert_eq!(step(&c, &s, None, "T-2", "receive", Some(got)).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    s.kill_and_restart(journal_only);
    assert_eq!(figures(&c, &s, "S000", "A0"), (5, 0, 0));
    assert_eq!(figures(&c, &s, "S001", "A0"), (14, 0, 0));
    assert_eq!(figures(&c, &s, "S000", "A1"), (8, 0, 0));
    assert_eq!(figures(&c, &s, "S001", "A1"), (11, 0, 0));
    let (_, v) = send(&c, &s, "GET", "/v1/transfers?status=received", None, None);
    assert_eq!(v["transfers"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["transfers"][1]["discrepancy"], 2, "{v}");
    common::assert_metrics(&c, &s, &["holdfast_transfers_open 0"]);
}

/// What a worker was told of one transfer: its last acknowledged step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Told {
    Requested,
    Shipped,
    Received,
}

#[test]
fn transfers_under_way_when_killed_lose_nothing_acknowledged() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 4, 2, 100);
    let base = s.base.clone();
    // Two workers, one each way, request, ship and receive until the
    // server dies under them; each keeps what it was told.
    let workers: Vec<_> = [("S000", "S001"), ("S001", "S000")]
        .into_iter()
        .enumerate()
        .map(|(w, (from, to))| {
            let base = base.clone();
            std::thread::spawn(move || {
                let c = client();
                let mut told: Vec<(String, Told)> = Vec::new();
                for i in 0.. {
                    let id = format!("T-{w}-{i}");
                    let sku = format!("A{}", i % 4);
                    let ask = json!({"id": id, "from": from, "to": to, "lines": [{"sku": sku, "qty": 1 + i % 3}]});
                    let url = |p: &str| format!("{base}{p}");
                    let body = ask.to_string();
                    let Some((201, _)) = common::try_call(&c, "POST", &url("/v1/transfers"), Some(&body)) else {
                        break;
                    };
                    told.push((id.clone(), Told::Requested));
                    let ship = url(&format!("/v1/transfers/{id}/ship"));
                    match common::try_call(&c, "POST", &ship, None) {
                        Some((200, _)) => {}
                        // Out of free units: leave it requested.
                        Some((409, _)) => continue,
                        _ => break,
                    }
                    told.last_mut().expect("told").1 = Told::Shipped;
                    let got = json!({"lines": [{"sku": sku, "qty": i % 3}]}).to_string();
                    let receive = url(&format!("/v1/transfers/{id}/receive"));
                    let Some((200, _)) = common::try_call(&c, "POST", &receive, Some(&got)) else {
                        break;
                    };
                    told.last_mut().expect("told").1 = Told::Received;
                }
                told
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    s.kill_and_restart(journal_only);
    let told: Vec<(String, Told)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(told.len() > 10, "the workers got going: {told:?}");

    // Every acknowledged step is there after the restart.
    let kept = common::all_pages(&c, &s, "/v1/transfers", "transfers");
    let status = |id: &str| {
        let t = kept.iter().find(|t| t["id"] == id);
        match t.and_then(|t| t["status"].as_str()) {
            Some("requested") => Some(Told::Requested),
            Some("shipped") => Some(Told::Shipped),
            Some("received") => Some(Told::Received),
            _ => None,
        }
    };
    for (id, was) in &told {
        assert!(
            status(id) >= Some(*was),
            "{id}: told {was:?}, kept {:?}",
            status(id)
        );
    }

    // Units are conserved: on hand, in transit, and lost on the way.
    let lost: i64 = kept.iter().filter_map(|t| t["discrepancy"].as_i64()).sum();
    let mut total = 0;
    for sku in 0..4 {
        for loc in ["S000", "S001"] {
            let (on_hand, reserved, in_transit) = figures(&c, &s, loc, &format!("A{sku}"));
            assert!(on_hand >= 0 && reserved == 0, "{loc} A{sku}: {on_hand}");
            let coming: i64 = kept
                .iter()
                .filter(|t| {
                    t["status"] == "shipped"
                        && t["to"] == loc
                        && t["lines"][0]["sku"] == format!("A{sku}")
                })
                .map(|t| t["lines"][0]["qty"].as_i64().unwrap_or(0))
                .sum();
            assert_eq!(
                in_transit, coming,
                "{loc} A{sku}: in transit is what shipped there"
            );
            total += on_hand + in_transit;
        }
    }
    assert_eq!(
        total + lost,
        4 * 2 * 100,
        "what left arrived or was lost on the way"
    );
}
