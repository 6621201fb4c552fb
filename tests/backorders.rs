//! Backorders and preorders through a real server: a line that allows a
//! backorder holds what is on hand first, then the rest against incoming
//! supply within the SKU's limit (the answer names `backordered` units
//! and their `eta`); a preorder sells only against supply before its
//! release; a reservation with units not arrived is not fulfilled; a
//! delivery converts them first-in first-out; availability shows
//! `available` and `available_to_backorder` apart; kill -9 loses nothing.

mod common;

use common::{assert_metrics, call, client, now_ms, seed, Server};
use holdfast::clock::rfc3339;
use reqwest::blocking::Client;
use serde_json::{json, Value};

const DAY: i64 = 24 * 3600 * 1000;

fn send(c: &Client, s: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    call(c, method, &s.url(path), None, Some(&body.to_string()))
}

fn get(c: &Client, s: &Server, path: &str) -> Value {
    let (st, v) = call(c, "GET", &s.url(path), None, None);
    assert_eq!(st, 200, "{path}: {v}");
    v
}

/// `days` from now, to the second.
fn in_days(days: i64) -> String {
    rfc3339((now_ms() + days * DAY) / 1000 * 1000)
}

fn sku(c: &Client, s: &Server, sku: &str, extra: Value) {
    let mut body = json!({"name": format!("sku {sku}")});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let (st, v) = send(c, s, "PUT", &format!("/v1/skus/{sku}"), body);
    assert_eq!(st, 200, "{v}");
}

fn announce(c: &Client, s: &Server, id: &str, eta: &str, sku: &str, qty: u32) {
    let body = json!({"id": id, "location": "S000", "expected_at": eta,
        "lines": [{"sku": sku, "qty": qty}]});
    let (st, v) = send(c, s, "POST", "/v1/supply", body);
    assert_eq!(st, 201, "{v}");
}

fn deliver(c: &Client, s: &Server, id: &str, sku: &str, qty: u32) {
    let body = json!({"lines": [{"sku": sku, "qty": qty}]});
    let (st, v) = send(c, s, "POST", &format!("/v1/supply/{id}/receive"), body);
    assert_eq!(st, 200, "{v}");
}

/// Reserves `qty` of `sku` at S000, allowing a backorder or not.
fn reserve(c: &Client, s: &Server, sku: &str, qty: u32, backorder: bool) -> (u16, Value) {
    let line = json!({"sku": sku, "location": "S000", "qty": qty, "allow_backorder": backorder});
    cart(c, s, json!({ "lines": [line] }))
}

/// `POST /v1/reservations` of `body`.
fn cart(c: &Client, s: &Server, body: Value) -> (u16, Value) {
    send(c, s, "POST", "/v1/reservations", body)
}

fn held(c: &Client, s: &Server, sku: &str, qty: u32) -> Value {
    let (st, v) = reserve(c, s, sku, qty, true);
    assert_eq!(st, 201, "{v}");
    v
}

/// A cart of one line refused: 409 `insufficient_stock`.
fn short(c: &Client, s: &Server, sku: &str, qty: u32, backorder: bool) {
    let (st, v) = reserve(c, s, sku, qty, backorder);
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{v}"
    );
}

/// (available, available_to_backorder: -1 when left out) of `sku`.
fn availability(c: &Client, s: &Server, sku: &str) -> (i64, i64) {
    let a = get(c, s, &format!("/v1/availability/{sku}"));
    let n = |k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(-1);
    (n("available"), n("available_to_backorder"))
}

fn step(c: &Client, s: &Server, r: &Value, action: &str) -> (u16, Value) {
    let id = r["id"].as_str().expect("an id");
    send(
        c,
        s,
        "POST",
        &format!("/v1/reservations/{id}/{action}"),
        json!({}),
    )
}

/// The plan of `qty` of `sku` near the stores, allowing a backorder or
/// not.
fn plan_of(c: &Client, s: &Server, sku: &str, qty: u32, backorder: bool) -> Value {
    let line = json!({"sku": sku, "qty": qty, "allow_backorder": backorder});
    let near = json!({"lat": 45.4, "lon": 9.1});
    let body = json!({"lines": [line], "destination": near});
    let (st, v) = send(c, s, "POST", "/v1/sourcing/plan", body);
    assert_eq!(st, 200, "{v}");
    v
}

/// A reservation's first line's units not arrived (0 when the answer
/// leaves them out).
fn backordered(c: &Client, s: &Server, r: &Value) -> i64 {
    let id = r["id"].as_str().expect("an id");
    let v = get(c, s, &format!("/v1/reservations/{id}"));
    v["lines"][0]
        .get("backordered")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// (on_hand, reserved, available, incoming, backordered) of `sku` at S000.
fn record(c: &Client, s: &Server, sku: &str) -> (i64, i64, i64, i64, i64) {
    let v = get(c, s, &format!("/v1/inventory/S000/{sku}"));
    let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    (
        n("on_hand"),
        n("reserved"),
        n("available"),
        n("incoming"),
        n("backordered"),
    )
}

#[test]
fn a_backorder_holds_on_hand_first_then_supply_and_converts_first_in_first_out() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 2, 1, 2);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 5}}));
    let eta = in_days(3);
    announce(&c, &s, "PO-1", &eta, "A0", 4);

    // 2 on hand, 1 against the supply: the answer says which and when.
    let first = held(&c, &s, "A0", 3);
    let line = &first["lines"][0];
    assert_eq!(
        (line["qty"].clone(), line["backordered"].clone()),
        (json!(3), json!(1)),
        "{first}"
    );
    assert_eq!(line["eta"], json!(eta), "{first}");
    assert_eq!(record(&c, &s, "A0"), (2, 2, 0, 4, 1));
    assert_eq!(availability(&c, &s, "A0"), (0, 3));
    let a = get(&c, &s, "/v1/availability/A0");
    assert_eq!(a["locations"][0]["available_to_backorder"], 3, "{a}");

    // Without allowing a backorder nothing is left; with it, the supply.
    short(&c, &s, "A0", 1, false);
    let second = held(&c, &s, "A0", 3);
    assert_eq!(second["lines"][0]["backordered"], 3, "{second}");
    // The supply is sold out (4 incoming, 4 sold against it).
    short(&c, &s, "A0", 1, true);
    assert_eq!(availability(&c, &s, "A0"), (0, 0));

    // Units not arrived are never fulfilled.
    assert_eq!(step(&c, &s, &first, "confirm").0, 200);
    let (st, v) = step(&c, &s, &first, "fulfil");
    assert_eq!(
        (st, v["code"].clone(), v["backordered"].clone()),
        (409, json!("backordered"), json!(1)),
        "{v}"
    );
    assert_eq!(record(&c, &s, "A0"), (2, 2, 0, 4, 4));

    // Two arrive: the first reservation's unit first, then the second's.
    deliver(&c, &s, "PO-1", "A0", 2);
    assert_eq!(
        (backordered(&c, &s, &first), backordered(&c, &s, &second)),
        (0, 2)
    );
    assert_eq!(record(&c, &s, "A0"), (4, 4, 0, 2, 2));
    let (st, v) = step(&c, &s, &first, "fulfil");
    assert_eq!(st, 200, "{v}");
    assert_eq!(record(&c, &s, "A0"), (1, 1, 0, 2, 2));

    // A release gives back both its unit on hand and its room on supply.
    assert_eq!(step(&c, &s, &second, "release").0, 200);
    assert_eq!(record(&c, &s, "A0"), (1, 0, 1, 2, 0));
    assert_eq!(availability(&c, &s, "A0"), (1, 2));
    assert_metrics(
        &c,
        &s,
        &[
            "holdfast_backorder_units_held_total 4",
            "holdfast_backorder_units_converted_total 2",
        ],
    );
    // A SKU that allows none shows no such figure.
    assert_eq!(availability(&c, &s, "A1"), (2, -1));
}

#[test]
fn the_skus_limit_bounds_what_is_outstanding_across_locations() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 2, 0);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 3}}));
    announce(&c, &s, "PO-1", &in_days(2), "A0", 10);
    let body = json!({"id": "PO-2", "location": "S001", "expected_at": in_days(2),
        "lines": [{"sku": "A0", "qty": 10}]});
    assert_eq!(send(&c, &s, "POST", "/v1/supply", body).0, 201);
    held(&c, &s, "A0", 2);
    let line = json!({"sku": "A0", "location": "S001", "qty": 2, "allow_backorder": true});
    let (st, v) = cart(&c, &s, json!({ "lines": [line] }));
    assert_eq!(
        (st, v["code"].clone()),
        (409, json!("insufficient_stock")),
        "{v}"
    );
    // A partial cart takes what the limit leaves.
    let line = json!({"sku": "A0", "location": "S001", "qty": 2, "allow_backorder": true});
    let (st, v) = cart(&c, &s, json!({ "lines": [line], "allow_partial": true }));
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (
            v["lines"][0]["qty"].clone(),
            v["lines"][0]["backordered"].clone()
        ),
        (json!(1), json!(1)),
        "{v}"
    );
    assert_eq!(availability(&c, &s, "A0"), (0, 0));
}

#[test]
fn a_preorder_sells_only_to_preorders_until_its_release() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 5);
    let release = in_days(10);
    sku(
        &c,
        &s,
        "A0",
        json!({"preorder": {"release_at": release, "max_units": 3}}),
    );
    let v = get(&c, &s, "/v1/skus/A0");
    assert_eq!(
        v["preorder"],
        json!({"release_at": release, "max_units": 3}),
        "{v}"
    );

    // Before the release only preorders (lines allowing it) buy: the two
    // units that arrived early first, then against supply, 3 at most.
    assert_eq!(availability(&c, &s, "A0"), (0, 5));
    short(&c, &s, "A0", 1, false);
    let early = held(&c, &s, "A0", 2);
    assert!(early["lines"][0].get("backordered").is_none(), "{early}");
    announce(&c, &s, "PO-1", &in_days(9), "A0", 10);
    let r = held(&c, &s, "A0", 5);
    assert_eq!(r["lines"][0]["backordered"], 2, "three on hand: {r}");
    assert_eq!(availability(&c, &s, "A0"), (0, 1));
    short(&c, &s, "A0", 2, true);
    assert_eq!(record(&c, &s, "A0"), (5, 5, 0, 10, 2));
    // Units that arrived early are not handed over before the street date.
    assert_eq!(step(&c, &s, &early, "confirm").0, 200, "confirmed as any");
    let (st, v) = step(&c, &s, &early, "fulfil");
    assert_eq!(
        (st, v["code"].as_str(), &v["release_at"]),
        (409, Some("not_released"), &json!(release)),
        "{v}"
    );

    // Released: sold on hand as any SKU (no backorder configured) once
    // the supply is in and the preorders have theirs.
    deliver(&c, &s, "PO-1", "A0", 4);
    assert_eq!(backordered(&c, &s, &r), 0);
    sku(
        &c,
        &s,
        "A0",
        json!({"preorder": {"release_at": in_days(-1), "max_units": 3}}),
    );
    assert_eq!(availability(&c, &s, "A0"), (2, -1));
    let (st, v) = reserve(&c, &s, "A0", 2, false);
    assert_eq!(st, 201, "{v}");
    assert_eq!(record(&c, &s, "A0"), (9, 9, 0, 6, 0));
    let (st, v) = step(&c, &s, &early, "fulfil");
    assert_eq!((st, &v["status"]), (200, &json!("fulfilled")), "{v}");
}

#[test]
fn bad_backorder_input_is_named() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 5);
    for (body, field) in [
        (
            json!({"name": "x", "backorder": {"max_units": 0}}),
            "backorder.max_units",
        ),
        (json!({"name": "x", "backorder": 5}), "backorder"),
        (
            json!({"name": "x", "preorder": {"max_units": 2}}),
            "preorder.release_at",
        ),
        (
            json!({"name": "x", "preorder": {"release_at": "soon", "max_units": 2}}),
            "preorder.release_at",
        ),
    ] {
        let (st, v) = send(&c, &s, "PUT", "/v1/skus/A0", body);
        assert_eq!(st, 422, "{v}");
        assert_eq!(v["errors"][0]["field"], field, "{v}");
    }
    let line = json!({"sku": "A0", "location": "S000", "qty": 1, "allow_backorder": "yes"});
    let (st, v) = cart(&c, &s, json!({ "lines": [line] }));
    assert_eq!(
        (st, v["errors"][0]["field"].clone()),
        (422, json!("lines[0].allow_backorder")),
        "{v}"
    );
    // Nothing half-applied: the SKU is as it was.
    let v = get(&c, &s, "/v1/skus/A0");
    assert!(
        v.get("backorder").is_none() && v.get("preorder").is_none(),
        "{v}"
    );
}

#[test]
fn backorders_and_their_conversions_survive_kill_9() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 1, 1, 1);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 10}}));
    announce(&c, &s, "PO-1", &in_days(4), "A0", 6);
    let rs: Vec<Value> = (0..3).map(|_| held(&c, &s, "A0", 2)).collect();
    assert_eq!(step(&c, &s, &rs[0], "confirm").0, 200);
    s.kill_and_restart(journal_only);
    assert_eq!(record(&c, &s, "A0"), (1, 1, 0, 6, 5));
    let waiting: Vec<i64> = rs.iter().map(|r| backordered(&c, &s, r)).collect();
    assert_eq!(waiting, vec![1, 2, 2]);

    // Three arrive: the first's one, the second's two; a kill after.
    deliver(&c, &s, "PO-1", "A0", 3);
    s.kill_and_restart(journal_only);
    let waiting: Vec<i64> = rs.iter().map(|r| backordered(&c, &s, r)).collect();
    assert_eq!(waiting, vec![0, 0, 2]);
    assert_eq!(record(&c, &s, "A0"), (4, 4, 0, 3, 2));
    assert_eq!(step(&c, &s, &rs[0], "fulfil").0, 200);

    // Through a snapshot too, and the book still converts in order.
    s.kill_and_restart("[snapshot]\nevery_records = 1\nevery_s = 1\n");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    s.kill_and_restart(journal_only);
    assert_eq!(record(&c, &s, "A0"), (2, 2, 0, 3, 2));
    deliver(&c, &s, "PO-1", "A0", 3);
    assert_eq!(backordered(&c, &s, &rs[2]), 0);
    assert_eq!(record(&c, &s, "A0"), (5, 4, 1, 0, 0));
}

#[test]
fn a_cart_across_shards_holds_or_undoes_its_backorder_whole() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 4, 1, 1);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 10}}));
    announce(&c, &s, "PO-1", &in_days(1), "A0", 5);
    let lines = |a1: u32| {
        json!({"lines": [
            {"sku": "A0", "location": "S000", "qty": 3, "allow_backorder": true},
            {"sku": "A1", "location": "S000", "qty": a1},
            {"sku": "A2", "location": "S000", "qty": 1},
            {"sku": "A3", "location": "S000", "qty": 1},
        ]})
    };
    // Short on A1: nothing is held, the backorder neither.
    let (st, v) = send(&c, &s, "POST", "/v1/reservations", lines(2));
    assert_eq!(st, 409, "{v}");
    assert_eq!(record(&c, &s, "A0"), (1, 0, 1, 5, 0));
    let (st, r) = send(&c, &s, "POST", "/v1/reservations", lines(1));
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["lines"][0]["backordered"], 2, "{r}");
    assert_eq!(record(&c, &s, "A0"), (1, 1, 0, 5, 2));
    deliver(&c, &s, "PO-1", "A0", 5);
    assert_eq!(backordered(&c, &s, &r), 0);
    assert_eq!(record(&c, &s, "A0"), (6, 3, 3, 0, 0));
    assert_eq!(step(&c, &s, &r, "confirm").0, 200);
    assert_eq!(step(&c, &s, &r, "fulfil").0, 200);
    assert_eq!(record(&c, &s, "A0"), (3, 0, 3, 0, 0));
}

#[test]
fn backorders_made_under_another_number_of_books_still_convert_in_order() {
    let mut s = Server::start("shards = 1\n");
    let c = client();
    seed(&c, &s, None, 1, 1, 0);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 20}}));
    announce(&c, &s, "PO-1", &in_days(2), "A0", 12);
    let rs: Vec<Value> = (0..6).map(|_| held(&c, &s, "A0", 2)).collect();
    // Restarted with three books: most ids now name another book.
    s.kill_and_restart("shards = 3\n");
    deliver(&c, &s, "PO-1", "A0", 7);
    let waiting: Vec<i64> = rs.iter().map(|r| backordered(&c, &s, r)).collect();
    assert_eq!(waiting, vec![0, 0, 0, 1, 2, 2]);
    assert_eq!(record(&c, &s, "A0"), (7, 7, 0, 5, 5));
    // Each is still found where it is kept.
    assert_eq!(step(&c, &s, &rs[1], "confirm").0, 200);
    assert_eq!(step(&c, &s, &rs[1], "fulfil").0, 200);
    assert_eq!(step(&c, &s, &rs[4], "release").0, 200);
    assert_eq!(record(&c, &s, "A0"), (5, 5, 0, 5, 3));
}

/// Carts sold ahead race deliveries of the supply they are sold against:
/// once every unit has arrived, none is left waiting, and the record was
/// never sold past its supply. (A stress test: the window it aims at, a
/// cart decided before a delivery and recorded after it, which is held
/// again, is too narrow to hit at will.)
#[test]
fn carts_racing_deliveries_are_never_left_waiting_for_supply_that_came() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 2, 1, 0);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 1000}}));
    announce(&c, &s, "PO-1", &in_days(1), "A0", 120);
    let base = s.base.clone();
    let buyers: Vec<_> = (0..4)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                let c = client();
                // Journaled by the backorder book, as every cart that
                // may be sold ahead is.
                let cart = json!({"lines": [
                    {"sku": "A0", "location": "S000", "qty": 1, "allow_backorder": true},
                ]})
                .to_string();
                let mut won = 0;
                for _ in 0..40 {
                    let url = format!("{base}/v1/reservations");
                    if call(&c, "POST", &url, None, Some(&cart)).0 == 201 {
                        won += 1;
                    }
                }
                won
            })
        })
        .collect();
    for _ in 0..120 {
        deliver(&c, &s, "PO-1", "A0", 1);
    }
    let won: i64 = buyers.into_iter().map(|b| b.join().expect("buyer")).sum();
    let (on_hand, reserved, _, incoming, waiting) = record(&c, &s, "A0");
    assert_eq!((on_hand, incoming), (120, 0));
    assert_eq!(
        waiting, 0,
        "every unit arrived: none waits ({won} carts won)"
    );
    assert_eq!(reserved, won.min(120), "{won} carts won");
    assert!(won <= 120, "never sold past the supply: {won}");
}

/// Sourcing plans lines allowing a backorder from on-hand stock first;
/// what on hand cannot serve is planned against supply after it, in a
/// shipment naming the units not on hand and the supply's ETA; a
/// reservation sourced so holds it there. A plain line gets no supply,
/// and before a preorder's release nothing.
#[test]
fn sourcing_plans_on_hand_first_then_against_supply_with_its_eta() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 2, 2, 0);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 5}}));
    let count = json!({"on_hand": 2});
    assert_eq!(send(&c, &s, "PUT", "/v1/inventory/S001/A0", count).0, 200);
    let eta = in_days(3);
    announce(&c, &s, "PO-1", &eta, "A0", 10);
    let near = json!({"lat": 45.4, "lon": 9.1});
    let plan = |qty: u32, backorder: bool| plan_of(&c, &s, "A0", qty, backorder);
    let p = plan(2, true);
    assert_eq!(p["shipments"][0]["location"], "S001", "on hand first: {p}");
    assert_eq!(p["shipments"][0].get("eta"), None, "{p}");
    assert_eq!(p["shipments"][0]["lines"], json!([{"sku": "A0", "qty": 2}]));

    // What on hand cannot serve is sold ahead, after it: S001's 2 now,
    // 2 more at S000 once its supply comes (a shipment of its own).
    let parts = |p: &Value| {
        let mut v: Vec<(String, Value, Value)> = p["shipments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let eta = s.get("eta").cloned().unwrap_or(Value::Null);
                (
                    s["location"].as_str().unwrap_or("?").to_string(),
                    s["lines"].clone(),
                    eta,
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let p = plan(4, true);
    assert_eq!(p["unsourced"], json!([]), "{p}");
    assert_eq!(
        parts(&p),
        vec![
            (
                "S000".into(),
                json!([{"sku": "A0", "qty": 2, "backordered": 2}]),
                json!(eta)
            ),
            ("S001".into(), json!([{"sku": "A0", "qty": 2}]), Value::Null),
        ],
        "{p}"
    );
    let p = plan(4, false);
    assert_eq!(p["unsourced"], json!([{"sku": "A0", "qty": 4}]), "{p}");
    assert_eq!(
        plan(7, true)["unsourced"],
        json!([]),
        "2 on hand and the limit's 5"
    );
    assert_eq!(
        plan(8, true)["unsourced"],
        json!([{"sku": "A0", "qty": 8}]),
        "past the SKU's limit"
    );

    // Held where it was planned: on hand, and sold ahead.
    let line = json!({"sku": "A0", "qty": 4, "allow_backorder": true});
    let (st, r) = cart(&c, &s, json!({"lines": [line], "destination": near}));
    assert_eq!(st, 201, "{r}");
    let mut held: Vec<(String, i64, i64)> = r["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let n = |k: &str| l.get(k).and_then(Value::as_i64).unwrap_or(0);
            (
                l["location"].as_str().unwrap_or("?").to_string(),
                n("qty"),
                n("backordered"),
            )
        })
        .collect();
    held.sort();
    assert_eq!(
        held,
        vec![("S000".into(), 2, 2), ("S001".into(), 2, 0)],
        "{r}"
    );
    // On hand gone, 3 of the limit left.
    assert_eq!(
        parts(&plan(3, true)),
        vec![(
            "S000".into(),
            json!([{"sku": "A0", "qty": 3, "backordered": 3}]),
            json!(eta)
        )]
    );
    assert_eq!(plan(4, true)["unsourced"], json!([{"sku": "A0", "qty": 4}]));
    // Supply at two places, the limit network-wide: never planned past it.
    let body = json!({"id": "PO-2", "location": "S001", "expected_at": in_days(1),
        "lines": [{"sku": "A0", "qty": 10}]});
    assert_eq!(send(&c, &s, "POST", "/v1/supply", body).0, 201);
    assert_eq!(plan(4, true)["unsourced"], json!([{"sku": "A0", "qty": 4}]));
    let p = plan(3, true);
    assert_eq!(
        (p["shipments"].as_array().map(Vec::len), &p["unsourced"]),
        (Some(1), &json!([])),
        "{p}"
    );

    // A preorder before its release: a plain line is planned nothing.
    sku(
        &c,
        &s,
        "A1",
        json!({"preorder": {"release_at": in_days(9), "max_units": 5}}),
    );
    let count = json!({"on_hand": 3});
    assert_eq!(send(&c, &s, "PUT", "/v1/inventory/S001/A1", count).0, 200);
    let plain = json!({"lines": [{"sku": "A1", "qty": 1}], "destination": near});
    let (_, p) = send(&c, &s, "POST", "/v1/sourcing/plan", plain);
    assert_eq!(p["unsourced"], json!([{"sku": "A1", "qty": 1}]), "{p}");
    let ahead =
        json!({"lines": [{"sku": "A1", "qty": 1, "allow_backorder": true}], "destination": near});
    let (_, p) = send(&c, &s, "POST", "/v1/sourcing/plan", ahead);
    assert_eq!(
        (&p["shipments"][0]["location"], &p["shipments"][0]["lines"]),
        (&json!("S001"), &json!([{"sku": "A1", "qty": 1}])),
        "units that arrived early, on hand: {p}"
    );
}

/// A line sold ahead is told when the supply that first-in first-out
/// gives its units is expected, after the units sold ahead before it:
/// not the earliest supply's time when that one is sold out already. A
/// plan names the same.
#[test]
fn the_eta_is_the_supply_first_in_first_out_gives() {
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 1, 1, 0);
    sku(&c, &s, "A0", json!({"backorder": {"max_units": 20}}));
    let (soon, later) = (in_days(2), in_days(6));
    announce(&c, &s, "PO-A", &later, "A0", 5);
    announce(&c, &s, "PO-B", &soon, "A0", 3);
    let first = held(&c, &s, "A0", 2);
    assert_eq!(first["lines"][0]["eta"], json!(soon), "{first}");
    let second = held(&c, &s, "A0", 2);
    assert_eq!(
        second["lines"][0]["eta"],
        json!(later),
        "units 3 and 4: the soon supply has 3: {second}"
    );
    let plan = |qty: u32| plan_of(&c, &s, "A0", qty, true);
    let p = plan(4);
    assert_eq!(p["shipments"][0]["eta"], json!(later), "{p}");
    assert_eq!(plan(5)["unsourced"], json!([{"sku": "A0", "qty": 5}]));
    // The first released: its units go to the next in line.
    assert_eq!(step(&c, &s, &first, "release").0, 200);
    let third = held(&c, &s, "A0", 1);
    assert_eq!(third["lines"][0]["eta"], json!(soon), "{third}");
}
