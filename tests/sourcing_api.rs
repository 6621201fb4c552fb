//! `POST /v1/sourcing/plan` against the real binary: the rules of api.md's
//! Sourcing section on a small network where the right answer is known.

mod common;

use common::{call, client, get, post, put_ok, stock, Server};
use serde_json::{json, Value};

fn location(
    c: &reqwest::blocking::Client,
    s: &Server,
    id: &str,
    kind: &str,
    lat: f64,
    lon: f64,
    extra: Value,
) {
    let mut body = json!({"name": id, "kind": kind, "lat": lat, "lon": lon, "priority": 10, "ship": true, "pickup": kind == "store", "active": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    put_ok(c, s, &format!("/v1/locations/{id}"), body);
}

fn plan(c: &reqwest::blocking::Client, s: &Server, body: Value) -> (u16, Value) {
    post(c, s, "/v1/sourcing/plan", Some(&body.to_string()))
}

/// (location, [(sku, qty)]) per shipment.
fn shipments(v: &Value) -> Vec<(String, Vec<(String, u64)>)> {
    v["shipments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let lines = s["lines"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|x| {
                                    (
                                        x["sku"].as_str().unwrap_or("").to_string(),
                                        x["qty"].as_u64().unwrap_or(0),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (s["location"].as_str().unwrap_or("").to_string(), lines)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn one(loc: &str, lines: &[(&str, u64)]) -> Vec<(String, Vec<(String, u64)>)> {
    vec![(
        loc.to_string(),
        lines.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
    )]
}

const MILANO: (f64, f64) = (45.4642, 9.19);
const ROMA: (f64, f64) = (41.9028, 12.4964);
const TORINO: (f64, f64) = (45.0703, 7.6869);

#[test]
fn plans_follow_the_rules_and_hold_nothing() {
    let s = Server::start("");
    let c = client();
    for sku in ["A", "B"] {
        put_ok(&c, &s, &format!("/v1/skus/{sku}"), json!({"name": sku}));
    }
    location(&c, &s, "DC1", "dc", 45.52, 9.21, json!({"priority": 0}));
    location(&c, &s, "S_MI", "store", MILANO.0, MILANO.1, json!({}));
    location(&c, &s, "S_RM", "store", ROMA.0, ROMA.1, json!({}));
    location(
        &c,
        &s,
        "S_TO",
        "store",
        TORINO.0,
        TORINO.1,
        json!({"active": false}),
    );
    location(
        &c,
        &s,
        "S_NP",
        "store",
        40.85,
        14.27,
        json!({"pickup": false}),
    );
    let items = json!({"items": [
        {"location": "DC1", "sku": "A", "on_hand": 10}, {"location": "DC1", "sku": "B", "on_hand": 10},
        {"location": "S_MI", "sku": "A", "on_hand": 1},
        {"location": "S_RM", "sku": "A", "on_hand": 5}, {"location": "S_RM", "sku": "B", "on_hand": 5},
        {"location": "S_TO", "sku": "A", "on_hand": 50}, {"location": "S_TO", "sku": "B", "on_hand": 50},
    ]});
    let (st, v) = post(&c, &s, "/v1/inventory/batch", Some(&items.to_string()));
    assert_eq!(st, 200, "{v}");
    let cart = json!([{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]);

    // Delivered near Roma: the Roma store holds the whole cart.
    let (st, v) = plan(
        &c,
        &s,
        json!({"lines": cart, "destination": {"lat": 41.89, "lon": 12.49}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(shipments(&v), one("S_RM", &[("A", 2), ("B", 1)]));
    assert_eq!(v["method"], "exact");
    assert_eq!(v["unsourced"], json!([]));
    let d = v["shipments"][0]["distance_km"].as_f64().unwrap_or(-1.0);
    assert!(d > 0.5 && d < 3.0, "{d}");

    // Delivered in Milano: the Milano store has one A only; the DC, a few
    // km out, serves the whole cart in one shipment (no split).
    let (_, v) = plan(
        &c,
        &s,
        json!({"lines": cart, "destination": {"lat": MILANO.0, "lon": MILANO.1}}),
    );
    assert_eq!(shipments(&v), one("DC1", &[("A", 2), ("B", 1)]));

    // Delivered in Torino: the Torino store is inactive, never chosen.
    let (_, v) = plan(
        &c,
        &s,
        json!({"lines": cart, "destination": {"lat": TORINO.0, "lon": TORINO.1}, "explain": true}),
    );
    assert_eq!(shipments(&v), one("DC1", &[("A", 2), ("B", 1)]));
    let explained: Vec<(&str, bool)> = v["explain"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| (k["location"].as_str().unwrap_or(""), k["chosen"] == true))
                .collect()
        })
        .unwrap_or_default();
    assert!(explained.contains(&("DC1", true)), "{v}");
    assert!(explained.iter().all(|(l, _)| *l != "S_TO"), "{v}");
    let first = &v["explain"][0]["scores"];
    let sum = first["distance"].as_f64().unwrap_or(0.0)
        + first["priority"].as_f64().unwrap_or(0.0)
        + first["rotation"].as_f64().unwrap_or(0.0);
    assert!(
        (sum - first["total"].as_f64().unwrap_or(-1.0)).abs() < 1e-6,
        "{first}"
    );

    // Pay and collect in Milano: one A comes from the store itself...
    let (_, v) = plan(
        &c,
        &s,
        json!({"lines": [{"sku": "A", "qty": 1}], "pickup_location": "S_MI"}),
    );
    assert_eq!(shipments(&v), one("S_MI", &[("A", 1)]));
    assert_eq!(
        (
            v["shipments"][0]["transfer"].as_bool(),
            v["shipments"][0]["distance_km"].as_f64()
        ),
        (Some(false), Some(0.0))
    );
    // ... the whole cart by a transfer from the DC.
    let (_, v) = plan(&c, &s, json!({"lines": cart, "pickup_location": "S_MI"}));
    assert_eq!(shipments(&v), one("DC1", &[("A", 2), ("B", 1)]));
    assert_eq!(v["shipments"][0]["transfer"], true);

    // More than any location has: unsourced, nothing shipped.
    let (st, v) = plan(
        &c,
        &s,
        json!({"lines": [{"sku": "A", "qty": 40}, {"sku": "B", "qty": 1}], "destination": {"lat": ROMA.0, "lon": ROMA.1}}),
    );
    assert_eq!(st, 200);
    assert_eq!(v["unsourced"], json!([{"sku": "A", "qty": 40}]));
    assert_eq!(shipments(&v), one("S_RM", &[("B", 1)]));

    // A plan holds nothing.
    let (_, r) = get(&c, &s, "/v1/inventory/S_RM/A");
    assert_eq!(
        (r["reserved"].as_i64(), r["available"].as_i64()),
        (Some(0), Some(5))
    );

    // A location written since the last plan is seen: Roma closes.
    location(
        &c,
        &s,
        "S_RM",
        "store",
        ROMA.0,
        ROMA.1,
        json!({"active": false}),
    );
    let (_, v) = plan(
        &c,
        &s,
        json!({"lines": cart, "destination": {"lat": ROMA.0, "lon": ROMA.1}}),
    );
    assert_eq!(shipments(&v), one("DC1", &[("A", 2), ("B", 1)]));

    // Bad input: a clear 422 naming the field, never a 5xx.
    let bad = [
        (json!({"lines": cart}), "destination"),
        (
            json!({"lines": cart, "destination": {"lat": 1, "lon": 1}, "pickup_location": "S_MI"}),
            "pickup_location",
        ),
        (
            json!({"lines": cart, "destination": {"lat": 91, "lon": 1}}),
            "destination.lat",
        ),
        (
            json!({"lines": cart, "destination": "Milano"}),
            "destination",
        ),
        (
            json!({"lines": [], "destination": {"lat": 1, "lon": 1}}),
            "lines",
        ),
        (
            json!({"lines": [{"sku": "A", "qty": 0}], "destination": {"lat": 1, "lon": 1}}),
            "lines[0].qty",
        ),
        (
            json!({"lines": [{"sku": "A", "qty": 1}], "pickup_location": "S_NP"}),
            "pickup_location",
        ),
        (
            json!({"lines": [{"sku": "A", "qty": 1}], "pickup_location": "S_TO"}),
            "pickup_location",
        ),
    ];
    for (body, field) in bad {
        let (st, v) = plan(&c, &s, body.clone());
        assert_eq!(
            (st, v["code"].as_str()),
            (422, Some("validation_failed")),
            "{body}: {v}"
        );
        assert_eq!(v["errors"][0]["field"], field, "{body}: {v}");
    }
    let (st, v) = plan(
        &c,
        &s,
        json!({"lines": [{"sku": "NOPE", "qty": 1}], "destination": {"lat": 1, "lon": 1}}),
    );
    assert_eq!((st, v["code"].as_str()), (422, Some("unknown_sku")), "{v}");
    let (st, v) = plan(&c, &s, json!({"lines": cart, "pickup_location": "S_XX"}));
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("unknown_location")),
        "{v}"
    );
    let (st, _) = post(&c, &s, "/v1/sourcing/plan", Some("{not json"));
    assert_eq!(st, 400);
    assert_eq!(get(&c, &s, "/v1/sourcing/plan").0, 405);
    let (_, doc) = get(&c, &s, "/v1/openapi.json");
    assert!(doc["paths"]["/v1/sourcing/plan"]["post"].is_object());
}

/// The network of these tests: a DC near Milano, stores in Milano and Roma.
fn network(c: &reqwest::blocking::Client, s: &Server) {
    for sku in ["A", "B"] {
        put_ok(c, s, &format!("/v1/skus/{sku}"), json!({"name": sku}));
    }
    location(c, s, "DC1", "dc", 45.52, 9.21, json!({"priority": 0}));
    location(c, s, "S_MI", "store", MILANO.0, MILANO.1, json!({}));
    location(c, s, "S_RM", "store", ROMA.0, ROMA.1, json!({}));
    let items = json!({"items": [
        {"location": "DC1", "sku": "A", "on_hand": 10}, {"location": "DC1", "sku": "B", "on_hand": 10},
        {"location": "S_MI", "sku": "A", "on_hand": 1},
        {"location": "S_RM", "sku": "A", "on_hand": 5}, {"location": "S_RM", "sku": "B", "on_hand": 5},
    ]});
    let (st, v) = post(c, s, "/v1/inventory/batch", Some(&items.to_string()));
    assert_eq!(st, 200, "{v}");
}

fn reserved(c: &reqwest::blocking::Client, s: &Server, loc: &str, sku: &str) -> i64 {
    stock(c, s, loc, sku).1
}

#[test]
fn reservations_without_locations_are_sourced_and_held() {
    let s = Server::start("");
    let c = client();
    network(&c, &s);
    let reserve = |body: Value| post(&c, &s, "/v1/reservations", Some(&body.to_string()));

    // Near Roma: the Roma store holds the whole cart; the answer names it.
    let (st, v) = reserve(
        json!({"lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}], "destination": {"lat": 41.89, "lon": 12.49}}),
    );
    assert_eq!(st, 201, "{v}");
    let at: Vec<(&str, &str, u64)> = v["lines"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["sku"].as_str().unwrap_or(""),
                        l["location"].as_str().unwrap_or(""),
                        l["qty"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(at, vec![("A", "S_RM", 2), ("B", "S_RM", 1)]);
    assert_eq!(
        (reserved(&c, &s, "S_RM", "A"), reserved(&c, &s, "S_RM", "B")),
        (2, 1)
    );

    // A line the client placed stays where it was placed; the other is
    // sourced (pickup in Milano: the store itself has the one A).
    let (st, v) = reserve(
        json!({"lines": [{"sku": "B", "qty": 1, "location": "DC1"}, {"sku": "A", "qty": 1}], "pickup_location": "S_MI"}),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (
            v["lines"][0]["location"].as_str(),
            v["lines"][1]["location"].as_str()
        ),
        (Some("DC1"), Some("S_MI"))
    );

    // More than any one location has: 409 naming the line, nothing held.
    let before = (reserved(&c, &s, "DC1", "B"), reserved(&c, &s, "S_RM", "B"));
    let (st, v) = reserve(
        json!({"lines": [{"sku": "A", "qty": 30}, {"sku": "B", "qty": 1}], "destination": {"lat": ROMA.0, "lon": ROMA.1}}),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{v}"
    );
    assert_eq!(
        (
            v["lines"][0]["sku"].as_str(),
            v["lines"][0]["requested"].as_u64()
        ),
        (Some("A"), Some(30))
    );
    assert_eq!(
        (reserved(&c, &s, "DC1", "B"), reserved(&c, &s, "S_RM", "B")),
        before
    );
    // With allow_partial the servable line is held, the other left out.
    let (st, v) = reserve(
        json!({"lines": [{"sku": "A", "qty": 30}, {"sku": "B", "qty": 1}], "destination": {"lat": ROMA.0, "lon": ROMA.1}, "allow_partial": true}),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (
            v["lines"][0]["sku"].as_str(),
            v["lines"][0]["location"].as_str()
        ),
        (Some("B"), Some("S_RM"))
    );

    // Without a destination or pickup, a line without a location is 422.
    let (st, v) = reserve(json!({"lines": [{"sku": "A", "qty": 1}]}));
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("lines[0].location"))
    );
    let (st, v) = reserve(json!({"lines": [{"sku": "A", "qty": 1}], "pickup_location": "NOPE"}));
    assert_eq!((st, v["code"].as_str()), (422, Some("unknown_location")));
}

#[test]
fn concurrent_sourced_reservations_replan_and_never_oversell() {
    let s = Server::start("");
    network(&client(), &s);
    // Roma has 3 A left after this, Milano 1, the DC 10: 12 buyers near
    // Roma, one A each, all at once. Plans made at the same moment pick the
    // same store; the holds that find it empty plan again and get the next.
    // Every buyer is served, no store is oversold.
    let c = client();
    let (st, _) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(&json!({"lines": [{"sku": "A", "qty": 2, "location": "S_RM"}]}).to_string()),
    );
    assert_eq!(st, 201);
    let results: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let s = &s;
                scope.spawn(move || {
                    let c = client();
                    post(&c, s, "/v1/reservations", Some(&json!({"lines": [{"sku": "A", "qty": 1}], "destination": {"lat": ROMA.0, "lon": ROMA.1}}).to_string()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for (st, v) in &results {
        assert_eq!(*st, 201, "{v}");
    }
    let count = |loc: &str| {
        results
            .iter()
            .filter(|(_, v)| v["lines"][0]["location"] == loc)
            .count()
    };
    // Once Roma is empty, the Milano store (one A, a few km nearer Roma
    // than the DC) and then the DC.
    assert_eq!((count("S_RM"), count("S_MI"), count("DC1")), (3, 1, 8));
    assert_eq!(
        (
            reserved(&c, &s, "S_RM", "A"),
            reserved(&c, &s, "S_MI", "A"),
            reserved(&c, &s, "DC1", "A")
        ),
        (5, 1, 8)
    );
}

#[test]
fn oversized_goods_ship_alone_and_skus_carry_their_dimensions() {
    let s = Server::start("");
    let c = client();
    network(&c, &s);
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/skus/SOFA"),
        None,
        Some(&json!({"name": "Sofa", "weight_g": 52000, "dimensions_mm": {"length": 2100, "width": 900, "height": 800}, "ship_alone": true}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        get(&c, &s, "/v1/skus/SOFA").1,
        json!({"sku": "SOFA", "name": "Sofa", "weight_g": 52000, "max_qty_per_reservation": null,
               "dimensions_mm": {"length": 2100, "width": 900, "height": 800}, "ship_alone": true})
    );
    assert_eq!(get(&c, &s, "/v1/skus/A").1["ship_alone"], false);
    let (st, v) = post(
        &c,
        &s,
        "/v1/inventory/batch",
        Some(&json!({"items": [{"location": "DC1", "sku": "SOFA", "on_hand": 3}]}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    // The DC has everything, but the sofa travels on its own.
    let (st, v) = plan(
        &c,
        &s,
        json!({"lines": [{"sku": "A", "qty": 1}, {"sku": "SOFA", "qty": 1}, {"sku": "B", "qty": 1}], "destination": {"lat": MILANO.0, "lon": MILANO.1}}),
    );
    assert_eq!(st, 200, "{v}");
    let mut got = shipments(&v);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "DC1".to_string(),
                vec![("A".to_string(), 1), ("B".to_string(), 1)]
            ),
            ("DC1".to_string(), vec![("SOFA".to_string(), 1)]),
        ]
    );
    for (body, field) in [
        (
            json!({"name": "x", "dimensions_mm": {"length": 0, "width": 1, "height": 1}}),
            "dimensions_mm.length",
        ),
        (
            json!({"name": "x", "dimensions_mm": {"length": 1, "width": 1}}),
            "dimensions_mm.height",
        ),
        (
            json!({"name": "x", "dimensions_mm": [1, 2, 3]}),
            "dimensions_mm",
        ),
        (json!({"name": "x", "ship_alone": "yes"}), "ship_alone"),
    ] {
        let (st, v) = call(
            &c,
            "PUT",
            &s.url("/v1/skus/X"),
            None,
            Some(&body.to_string()),
        );
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some(field)),
            "{body}: {v}"
        );
    }
}

/// api.md: "slow rotation is preferred, so stores keep their fast sellers
/// for walk-in customers". Two stores side by side with the same stock: the
/// one selling at the till is the one that reads as fast, and the plan goes
/// to the other, before and after a kill -9.
#[test]
fn the_store_that_sells_fast_keeps_its_stock_for_walk_ins() {
    let mut s = Server::start("");
    let c = client();
    put_ok(&c, &s, "/v1/skus/A", json!({"name": "A"}));
    location(&c, &s, "S_QUIET", "store", MILANO.0, MILANO.1, json!({}));
    location(
        &c,
        &s,
        "S_TILL",
        "store",
        MILANO.0,
        MILANO.1 + 0.001,
        json!({}),
    );
    for l in ["S_QUIET", "S_TILL"] {
        put_ok(
            &c,
            &s,
            &format!("/v1/inventory/{l}/A"),
            json!({"on_hand": 20}),
        );
    }
    let rotation = |s: &Server, l: &str| {
        let (_, v) = get(&c, s, &format!("/v1/inventory/{l}/A"));
        v["rotation"].as_f64().unwrap_or(-1.0)
    };
    assert_eq!(rotation(&s, "S_QUIET"), 0.0);
    assert_eq!(rotation(&s, "S_TILL"), 0.0);
    let body = json!({"lines": [{"sku": "A", "qty": 1}], "destination": {"lat": MILANO.0, "lon": MILANO.1 + 0.01}, "explain": true});
    // Equal rotation: the nearer one, S_TILL, by a few metres.
    let (_, v) = plan(&c, &s, body.clone());
    assert_eq!(shipments(&v), one("S_TILL", &[("A", 1)]), "{v}");

    // S_TILL sells 8 at the till: now it is the fast one.
    let (st, v) = post(
        &c,
        &s,
        "/v1/inventory/S_TILL/A/adjustments",
        Some(&json!({"delta": -8, "reason": "sale"}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    let r = v["rotation"].as_f64().unwrap_or(-1.0);
    assert!(
        r > 0.3 && r < 0.5,
        "8 sold over ~19 on hand on average: {v}"
    );
    // A receipt is not a sale.
    let (st, _) = post(
        &c,
        &s,
        "/v1/inventory/S_QUIET/A/adjustments",
        Some(&json!({"delta": 5, "reason": "receipt"}).to_string()),
    );
    assert_eq!(st, 200);
    assert_eq!(rotation(&s, "S_QUIET"), 0.0);
    let (_, v) = plan(&c, &s, body.clone());
    assert_eq!(shipments(&v), one("S_QUIET", &[("A", 1)]), "{v}");
    let till_score = v["explain"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["location"] == "S_TILL"))
        .map(|x| x["scores"]["rotation"].as_f64().unwrap_or(-1.0));
    assert!(till_score.is_some_and(|x| x > 0.0), "explained: {v}");

    // Rebuilt from the journal after kill -9: the same figure and plan.
    let before = rotation(&s, "S_TILL");
    s.kill_and_restart("");
    assert_eq!(rotation(&s, "S_TILL"), before);
    let (_, v) = plan(&c, &s, body);
    assert_eq!(shipments(&v), one("S_QUIET", &[("A", 1)]), "{v}");
}

/// Issue 17's network: W1 (near Milano) has 3 of Q5, W2 (Torino) has 4.
fn split_network(c: &reqwest::blocking::Client, s: &Server) {
    put_ok(c, s, "/v1/skus/Q5", json!({"name": "Q5"}));
    location(c, s, "W1", "dc", 45.52, 9.21, json!({}));
    location(c, s, "W2", "dc", TORINO.0, TORINO.1, json!({}));
    let items = json!({"items": [
        {"location": "W1", "sku": "Q5", "on_hand": 3}, {"location": "W2", "sku": "Q5", "on_hand": 4},
    ]});
    let (st, v) = post(c, s, "/v1/inventory/batch", Some(&items.to_string()));
    assert_eq!(st, 200, "{v}");
}

/// (sku, location, qty) per reservation line.
fn held_lines(v: &Value) -> Vec<(String, String, u64)> {
    let mut at: Vec<(String, String, u64)> = v["lines"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["sku"].as_str().unwrap_or("").to_string(),
                        l["location"].as_str().unwrap_or("").to_string(),
                        l["qty"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    at.sort();
    at
}

fn split_order(id: &str, extra: Value) -> Value {
    let mut b = json!({"id": id, "lines": [{"sku": "Q5", "qty": 6, "unit_price": "10.00"}],
        "delivery": {"type": "ship", "lat": MILANO.0, "lon": MILANO.1}, "payment": {"provider": "sandbox"}});
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    b
}

/// Issue 17: a cart of 6 Q5 where W1 has 3 and W2 has 4 is served by
/// both (W1, nearer Milano, gives its 3; W2 the other 3): planned, held
/// as a reservation of two parts, placed as an order of two shipments.
/// `"split_lines": false` gives the old answer (unsourced, 409), and so
/// does `[sourcing] split_lines = false` (a request's true overrides it).
#[test]
fn a_line_no_location_can_serve_whole_is_split_across_locations() {
    let s = Server::start("");
    let c = client();
    split_network(&c, &s);
    let cart = json!([{"sku": "Q5", "qty": 6}]);
    let milano = json!({"lat": MILANO.0, "lon": MILANO.1});

    let (st, v) = plan(&c, &s, json!({"lines": cart, "destination": milano}));
    assert_eq!(st, 200, "{v}");
    let mut got = shipments(&v);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("W1".to_string(), vec![("Q5".to_string(), 3)]),
            ("W2".to_string(), vec![("Q5".to_string(), 3)]),
        ],
        "{v}"
    );
    assert_eq!(v["unsourced"], json!([]));
    // Asked not to split: the old answer.
    let (st, v) = plan(
        &c,
        &s,
        json!({"lines": cart, "destination": milano, "split_lines": false}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["shipments"], &v["unsourced"]),
        (&json!([]), &json!([{"sku": "Q5", "qty": 6}]))
    );
    let (st, v) = plan(
        &c,
        &s,
        json!({"lines": cart, "destination": milano, "split_lines": "no"}),
    );
    assert_eq!(
        (st, v["code"].as_str(), v["errors"][0]["field"].as_str()),
        (422, Some("validation_failed"), Some("split_lines")),
        "{v}"
    );

    // A reservation holds both parts, all or nothing.
    let reserve = |body: Value| post(&c, &s, "/v1/reservations", Some(&body.to_string()));
    let (st, r) = reserve(json!({"lines": cart, "destination": milano}));
    assert_eq!(st, 201, "{r}");
    assert_eq!(
        held_lines(&r),
        vec![
            ("Q5".to_string(), "W1".to_string(), 3),
            ("Q5".to_string(), "W2".to_string(), 3)
        ]
    );
    assert_eq!(
        (reserved(&c, &s, "W1", "Q5"), reserved(&c, &s, "W2", "Q5")),
        (3, 3)
    );
    let id = r["id"].as_str().unwrap_or("");
    let (st, _) = post(&c, &s, &format!("/v1/reservations/{id}/release"), None);
    assert_eq!(st, 200);
    let (st, v) = reserve(json!({"lines": cart, "destination": milano, "split_lines": false}));
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{v}"
    );
    let (st, v) = reserve(json!({"lines": cart, "destination": milano, "split_lines": 1}));
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("split_lines")),
        "{v}"
    );
    assert_eq!(
        (reserved(&c, &s, "W1", "Q5"), reserved(&c, &s, "W2", "Q5")),
        (0, 0)
    );

    // An order: one shipment per location, the line's parts in each.
    let order = |body: Value| post(&c, &s, "/v1/orders", Some(&body.to_string()));
    let (st, v) = order(split_order("O-OFF", json!({"split_lines": false})));
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{v}"
    );
    let (st, v) = order(split_order("O-BAD", json!({"split_lines": "yes"})));
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("split_lines")),
        "{v}"
    );
    let (st, o) = order(split_order("O-SPLIT", json!({})));
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["total"], "60.00");
    let mut parts: Vec<(String, Value)> = o["shipments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["location"].as_str().unwrap_or("").to_string(),
                        x["lines"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        parts,
        vec![
            ("W1".to_string(), json!([{"sku": "Q5", "qty": 3}])),
            ("W2".to_string(), json!([{"sku": "Q5", "qty": 3}])),
        ],
        "{o}"
    );
    assert_eq!(
        (reserved(&c, &s, "W1", "Q5"), reserved(&c, &s, "W2", "Q5")),
        (3, 3)
    );
}

#[test]
fn sourcing_split_lines_false_in_the_configuration_keeps_lines_whole() {
    let s = Server::start("[sourcing]\nsplit_lines = false");
    let c = client();
    split_network(&c, &s);
    let cart = json!([{"sku": "Q5", "qty": 6}]);
    let milano = json!({"lat": MILANO.0, "lon": MILANO.1});
    let (st, v) = plan(&c, &s, json!({"lines": cart, "destination": milano}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["shipments"], &v["unsourced"]),
        (&json!([]), &json!([{"sku": "Q5", "qty": 6}]))
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(&json!({"lines": cart, "destination": milano}).to_string()),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{v}"
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/orders",
        Some(&split_order("O-1", json!({})).to_string()),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{v}"
    );
    assert_eq!(
        (reserved(&c, &s, "W1", "Q5"), reserved(&c, &s, "W2", "Q5")),
        (0, 0)
    );
    // A request may still ask for it.
    let (_, v) = plan(
        &c,
        &s,
        json!({"lines": cart, "destination": milano, "split_lines": true}),
    );
    assert_eq!(v["shipments"].as_array().map(Vec::len), Some(2), "{v}");
}
