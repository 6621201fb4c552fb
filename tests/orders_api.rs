//! Orders through HTTP against the real binary (api.md, Orders): ship to
//! home, pay and collect (from the store, by transfer), a split, cancel,
//! partial returns, a declined payment, illegal transitions, and kill -9 in
//! the middle of a flow.

mod common;

use common::{auth_with, call, client, get, post, put_ok, stock, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// DC1 near Milano (A, B, D), stores in Milano (A) and Roma (A, B, C).
fn network(c: &Client, s: &Server) {
    for sku in ["A", "B", "C", "D"] {
        put_ok(c, s, &format!("/v1/skus/{sku}"), json!({"name": sku}));
    }
    let loc = |id: &str, kind: &str, lat: f64, lon: f64| {
        put_ok(
            c,
            s,
            &format!("/v1/locations/{id}"),
            json!({"name": id, "kind": kind, "lat": lat, "lon": lon, "priority": 10, "ship": true, "pickup": kind == "store"}),
        );
    };
    loc("DC1", "dc", 45.52, 9.21);
    loc("S_MI", "store", 45.4642, 9.19);
    loc("S_RM", "store", 41.9028, 12.4964);
    let items = json!({"items": [
        {"location": "DC1", "sku": "A", "on_hand": 10}, {"location": "DC1", "sku": "B", "on_hand": 10}, {"location": "DC1", "sku": "D", "on_hand": 3},
        {"location": "S_MI", "sku": "A", "on_hand": 2},
        {"location": "S_RM", "sku": "A", "on_hand": 5}, {"location": "S_RM", "sku": "B", "on_hand": 5}, {"location": "S_RM", "sku": "C", "on_hand": 3},
    ]});
    let (st, v) = post(c, s, "/v1/inventory/batch", Some(&items.to_string()));
    assert_eq!(st, 200, "{v}");
}

fn order(c: &Client, s: &Server, body: Value) -> (u16, Value) {
    post(c, s, "/v1/orders", Some(&body.to_string()))
}

fn event(c: &Client, s: &Server, id: &str, n: u32, status: &str) -> (u16, Value) {
    post(
        c,
        s,
        &format!("/v1/orders/{id}/shipments/{n}/events"),
        Some(&json!({"status": status}).to_string()),
    )
}

/// Delivered near Roma.
fn roma() -> Value {
    json!({"type": "ship", "lat": 41.89, "lon": 12.49})
}

#[test]
fn ship_to_home_from_order_to_return() {
    let s = Server::start("");
    let c = client();
    network(&c, &s);
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "O-1", "lines": [{"sku": "A", "qty": 2, "unit_price": "10.00"}, {"sku": "B", "qty": 1, "unit_price": "5.50"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 201, "{o}");
    assert_eq!(
        (
            o["status"].as_str(),
            o["total"].as_str(),
            o["payment"]["state"].as_str()
        ),
        (Some("confirmed"), Some("25.50"), Some("authorized"))
    );
    assert_eq!(o["shipments"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (
            o["shipments"][0]["location"].as_str(),
            o["shipments"][0]["type"].as_str()
        ),
        (Some("S_RM"), Some("delivery"))
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 2));
    assert_eq!(stock(&c, &s, "S_RM", "B"), (5, 1));
    // The same id again: 409, nothing more held.
    let (st, v) = order(
        &c,
        &s,
        json!({"id": "O-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "1"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!((st, v["code"].as_str()), (409, Some("order_exists")));
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 2));
    // Whatever the body names: an order's id is taken before its SKUs and
    // its pickup are looked up (a retry with another cart is 409 too).
    for body in [
        json!({"id": "O-1", "lines": [{"sku": "NOPE", "qty": 1, "unit_price": "1"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
        json!({"id": "O-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "1"}], "delivery": {"type": "pickup", "location": "NOWHERE"}, "payment": {"provider": "sandbox"}}),
    ] {
        let (st, v) = order(&c, &s, body);
        assert_eq!((st, v["code"].as_str()), (409, Some("order_exists")), "{v}");
    }

    let (st, o) = event(&c, &s, "O-1", 1, "picked");
    assert_eq!(
        (st, o["status"].as_str(), o["payment"]["captured"].as_str()),
        (200, Some("in_fulfilment"), Some("0.00"))
    );
    // Captured when it ships; the goods leave the store's stock.
    let (st, o) = event(&c, &s, "O-1", 1, "shipped");
    assert_eq!(
        (st, o["status"].as_str(), o["payment"]["captured"].as_str()),
        (200, Some("shipped"), Some("25.50"))
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (3, 0));
    assert_eq!(stock(&c, &s, "S_RM", "B"), (4, 0));
    // A retried webhook changes nothing.
    let (st, _) = event(&c, &s, "O-1", 1, "shipped");
    assert_eq!(st, 200);
    assert_eq!(stock(&c, &s, "S_RM", "A"), (3, 0));
    // Illegal: backwards, an unknown shipment, a cancel after it left.
    let (st, v) = event(&c, &s, "O-1", 1, "packed");
    assert_eq!((st, v["code"].as_str()), (409, Some("invalid_transition")));
    assert_eq!(event(&c, &s, "O-1", 9, "picked").0, 409);
    assert_eq!(event(&c, &s, "O-1", 1, "teleported").0, 422);
    let (st, v) = post(&c, &s, "/v1/orders/O-1/cancel", None);
    assert_eq!((st, v["code"].as_str()), (409, Some("invalid_transition")));
    let (st, o) = event(&c, &s, "O-1", 1, "delivered");
    assert_eq!((st, o["status"].as_str()), (200, Some("delivered")));

    // A partial return to the Milano store: restocked there, refunded.
    let (st, o) = post(
        &c,
        &s,
        "/v1/orders/O-1/returns",
        Some(&json!({"lines": [{"sku": "A", "qty": 1}], "location": "S_MI"}).to_string()),
    );
    assert_eq!(
        (st, o["payment"]["refunded"].as_str()),
        (200, Some("10.00")),
        "{o}"
    );
    assert_eq!(o["lines"][0]["returned"], 1);
    assert_eq!(stock(&c, &s, "S_MI", "A"), (3, 0));
    let (st, v) = post(
        &c,
        &s,
        "/v1/orders/O-1/returns",
        Some(&json!({"lines": [{"sku": "A", "qty": 2}], "location": "S_MI"}).to_string()),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("invalid_transition")),
        "{v}"
    );
    let (st, v) = post(
        &c,
        &s,
        "/v1/orders/O-1/returns",
        Some(&json!({"lines": [{"sku": "C", "qty": 1}], "location": "S_MI"}).to_string()),
    );
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("lines[0].sku"))
    );
    assert_eq!(get(&c, &s, "/v1/orders/O-1").1["status"], "delivered");
    assert_eq!(get(&c, &s, "/v1/orders/NOPE").0, 404);
    let (_, doc) = get(&c, &s, "/v1/openapi.json");
    assert!(doc["paths"]["/v1/orders"]["post"].is_object());
    assert!(doc["paths"]["/v1/orders/{id}/shipments/{shipment}/events"]["post"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["OrderInput"]["properties"]["lines"]["items"]["properties"]
            ["unit_price"]["pattern"],
        "^[0-9]{1,11}(\\.[0-9]{1,2})?$"
    );
}

#[test]
fn pay_and_collect_from_the_store_or_by_transfer_and_a_split() {
    let s = Server::start("");
    let c = client();
    network(&c, &s);
    let pickup = json!({"type": "pickup", "location": "S_MI"});
    // The Milano store has the A itself.
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "P-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "3"}], "delivery": pickup, "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 201, "{o}");
    assert_eq!(
        (
            o["shipments"][0]["location"].as_str(),
            o["shipments"][0]["type"].as_str()
        ),
        (Some("S_MI"), Some("pickup"))
    );
    let (st, o) = event(&c, &s, "P-1", 1, "ready_for_pickup");
    assert_eq!(
        (st, o["status"].as_str(), o["payment"]["state"].as_str()),
        (200, Some("ready_for_pickup"), Some("captured"))
    );
    assert_eq!(
        stock(&c, &s, "S_MI", "A"),
        (2, 1),
        "still on the shelf until collected"
    );
    let (st, o) = event(&c, &s, "P-1", 1, "collected");
    assert_eq!((st, o["status"].as_str()), (200, Some("collected")));
    assert_eq!(stock(&c, &s, "S_MI", "A"), (1, 0));

    // A and B: the store has no B, so the DC sends the whole cart over.
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "P-2", "lines": [{"sku": "A", "qty": 1, "unit_price": "3"}, {"sku": "B", "qty": 1, "unit_price": "4"}], "delivery": pickup, "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 201, "{o}");
    assert_eq!(
        (
            o["shipments"][0]["location"].as_str(),
            o["shipments"][0]["type"].as_str()
        ),
        (Some("DC1"), Some("transfer"))
    );
    assert_eq!(
        event(&c, &s, "P-2", 1, "collected").0,
        409,
        "not before it is ready"
    );
    let (st, _) = event(&c, &s, "P-2", 1, "shipped");
    assert_eq!(st, 200);
    assert_eq!(stock(&c, &s, "DC1", "B"), (9, 0));
    assert_eq!(event(&c, &s, "P-2", 1, "ready_for_pickup").0, 200);
    let (st, o) = event(&c, &s, "P-2", 1, "collected");
    assert_eq!((st, o["status"].as_str()), (200, Some("collected")));

    // C only in Roma, D only at the DC: two shipments, each its own path.
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "S-1", "lines": [{"sku": "C", "qty": 1, "unit_price": "1"}, {"sku": "D", "qty": 1, "unit_price": "1"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 201, "{o}");
    let mut locs: Vec<&str> = o["shipments"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["location"].as_str()).collect())
        .unwrap_or_default();
    locs.sort();
    assert_eq!(locs, vec!["DC1", "S_RM"]);
    assert_eq!(event(&c, &s, "S-1", 1, "shipped").0, 200);
    assert_eq!(get(&c, &s, "/v1/orders/S-1").1["status"], "in_fulfilment");
    assert_eq!(event(&c, &s, "S-1", 2, "shipped").0, 200);
    assert_eq!(get(&c, &s, "/v1/orders/S-1").1["status"], "shipped");
}

/// The number of the shipment of order `o` from `location`, and its lines.
fn shipment_at(o: &Value, location: &str) -> (u32, Value) {
    o["shipments"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["location"] == location))
        .map(|s| (s["id"].as_u64().unwrap_or(0) as u32, s["lines"].clone()))
        .unwrap_or((0, Value::Null))
}

/// 12 A near Roma: no location has 12; Roma's 5 and 7 of the DC's 10 do
/// (the fewest parts, then the nearest first). One line, two shipments:
/// a cancel releases both holds; each part is shipped, delivered,
/// returned and refunded on its own; the payment is captured once.
#[test]
fn a_line_split_across_locations_ships_returns_and_cancels_per_part() {
    let s = Server::start("");
    let c = client();
    network(&c, &s);
    let body = |id: &str| json!({"id": id, "lines": [{"sku": "A", "qty": 12, "unit_price": "2.00"}], "delivery": roma(), "payment": {"provider": "sandbox"}});
    let (st, o) = order(&c, &s, body("X-1"));
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["total"], "24.00");
    assert_eq!(o["shipments"].as_array().map(Vec::len), Some(2), "{o}");
    assert_eq!(shipment_at(&o, "S_RM").1, json!([{"sku": "A", "qty": 5}]));
    assert_eq!(shipment_at(&o, "DC1").1, json!([{"sku": "A", "qty": 7}]));
    assert_eq!(
        (stock(&c, &s, "S_RM", "A"), stock(&c, &s, "DC1", "A")),
        ((5, 5), (10, 7))
    );
    let (st, o) = post(&c, &s, "/v1/orders/X-1/cancel", None);
    assert_eq!((st, o["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(
        (stock(&c, &s, "S_RM", "A"), stock(&c, &s, "DC1", "A")),
        ((5, 0), (10, 0))
    );

    let (st, o) = order(&c, &s, body("X-2"));
    assert_eq!(st, 201, "{o}");
    let (roma_part, dc_part) = (shipment_at(&o, "S_RM").0, shipment_at(&o, "DC1").0);
    let (st, o) = event(&c, &s, "X-2", roma_part, "shipped");
    assert_eq!(
        (st, o["status"].as_str(), o["payment"]["captured"].as_str()),
        (200, Some("in_fulfilment"), Some("24.00"))
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (0, 0));
    assert_eq!(event(&c, &s, "X-2", roma_part, "delivered").0, 200);
    let give_back = |qty: u32, at: &str| {
        post(
            &c,
            &s,
            "/v1/orders/X-2/returns",
            Some(&json!({"location": at, "lines": [{"sku": "A", "qty": qty}]}).to_string()),
        )
    };
    // Only what was delivered comes back: Roma's 5.
    let (st, v) = give_back(6, "S_RM");
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("invalid_transition")),
        "{v}"
    );
    let (st, o) = give_back(5, "S_RM");
    assert_eq!(
        (st, o["payment"]["refunded"].as_str()),
        (200, Some("10.00")),
        "{o}"
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 0));
    // The DC's part: left, delivered, returned; every cent refunded.
    assert_eq!(event(&c, &s, "X-2", dc_part, "shipped").0, 200);
    assert_eq!(stock(&c, &s, "DC1", "A"), (3, 0));
    let (st, o) = event(&c, &s, "X-2", dc_part, "delivered");
    assert_eq!(
        (st, o["payment"]["captured"].as_str()),
        (200, Some("24.00"))
    );
    let (st, o) = give_back(7, "DC1");
    assert_eq!(
        (st, o["status"].as_str(), o["payment"]["refunded"].as_str()),
        (200, Some("returned"), Some("24.00")),
        "{o}"
    );

    // A checkout's reservation sourced the same way (two parts of one
    // line) becomes an order of the same two shipments.
    let (st, r) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(&json!({"lines": [{"sku": "A", "qty": 12}], "destination": {"lat": 41.89, "lon": 12.49}}).to_string()),
    );
    assert_eq!(
        (st, r["lines"].as_array().map(Vec::len)),
        (201, Some(2)),
        "{r}"
    );
    let mut from = body("X-3");
    from["reservation_id"] = r["id"].clone();
    let (st, o) = order(&c, &s, from);
    assert_eq!(st, 201, "{o}");
    assert_eq!(shipment_at(&o, "S_RM").1, json!([{"sku": "A", "qty": 5}]));
    assert_eq!(shipment_at(&o, "DC1").1, json!([{"sku": "A", "qty": 7}]));
    assert_eq!(
        (stock(&c, &s, "S_RM", "A"), stock(&c, &s, "DC1", "A")),
        ((5, 5), (10, 7))
    );
}

#[test]
fn cancel_declined_payment_and_short_stock_leave_nothing_held() {
    let s = Server::start("");
    let c = client();
    network(&c, &s);
    let (st, _) = order(
        &c,
        &s,
        json!({"id": "C-1", "lines": [{"sku": "A", "qty": 3, "unit_price": "2"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 201);
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 3));
    assert_eq!(event(&c, &s, "C-1", 1, "packed").0, 200);
    let (st, o) = post(&c, &s, "/v1/orders/C-1/cancel", None);
    assert_eq!(
        (st, o["status"].as_str(), o["payment"]["state"].as_str()),
        (200, Some("cancelled"), Some("voided"))
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 0));
    assert_eq!(
        post(&c, &s, "/v1/orders/C-1/cancel", None).0,
        200,
        "cancelling twice"
    );
    assert_eq!(event(&c, &s, "C-1", 1, "shipped").0, 409);

    // The sandbox declines amounts ending in .51: the order is kept, as
    // payment_declined, and nothing stays held.
    let (st, v) = order(
        &c,
        &s,
        json!({"id": "D-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "10.51"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (402, Some("payment_declined")),
        "{v}"
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 0));
    assert_eq!(
        get(&c, &s, "/v1/orders/D-1").1["status"],
        "payment_declined"
    );
    assert_eq!(event(&c, &s, "D-1", 1, "picked").0, 409);
    // Provider down (.52): 503, nothing held, nothing recorded.
    let (st, _) = order(
        &c,
        &s,
        json!({"id": "U-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "10.52"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 503);
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 0));
    assert_eq!(get(&c, &s, "/v1/orders/U-1").0, 404);

    // A free order (a promotion) needs no payment provider's yes.
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "F-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "0"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(
        (st, o["status"].as_str(), o["total"].as_str()),
        (201, Some("confirmed"), Some("0.00")),
        "{o}"
    );
    assert_eq!(post(&c, &s, "/v1/orders/F-1/cancel", None).0, 200);

    // More than anyone has: 409 naming the line, nothing held.
    let (st, v) = order(
        &c,
        &s,
        json!({"id": "X-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "1"}, {"sku": "B", "qty": 500, "unit_price": "1"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(
        (st, v["code"].as_str(), v["lines"][0]["sku"].as_str()),
        (409, Some("insufficient_stock"), Some("B"))
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 0));

    // Bad input: 422 naming the field.
    for (body, field) in [
        (
            json!({"id": "V-1", "lines": [{"sku": "A", "qty": 1}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
            "lines[0].unit_price",
        ),
        (
            json!({"id": "V-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "1.234"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
            "lines[0].unit_price",
        ),
        (
            json!({"id": "V-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "1"}], "delivery": {"type": "drone"}, "payment": {"provider": "sandbox"}}),
            "delivery.type",
        ),
        (
            json!({"id": "V-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "1"}], "delivery": roma(), "payment": {"provider": "adyen"}}),
            "payment.provider",
        ),
        (
            json!({"lines": [{"sku": "A", "qty": 1, "unit_price": "1"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
            "id",
        ),
    ] {
        let (st, v) = order(&c, &s, body.clone());
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some(field)),
            "{body}: {v}"
        );
    }
}

#[test]
fn orders_survive_kill_9_in_the_middle_of_their_flow() {
    let mut s = Server::start("");
    let c = client();
    network(&c, &s);
    let (st, _) = order(
        &c,
        &s,
        json!({"id": "K-1", "lines": [{"sku": "A", "qty": 2, "unit_price": "7.00"}], "delivery": roma(), "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 201);
    assert_eq!(event(&c, &s, "K-1", 1, "shipped").0, 200);
    s.kill_and_restart("");
    let (st, o) = get(&c, &s, "/v1/orders/K-1");
    assert_eq!(
        (st, o["status"].as_str(), o["payment"]["captured"].as_str()),
        (200, Some("shipped"), Some("14.00"))
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (3, 0));
    assert_eq!(event(&c, &s, "K-1", 1, "delivered").0, 200);
    let (st, v) = post(
        &c,
        &s,
        "/v1/orders/K-1/returns",
        Some(&json!({"lines": [{"sku": "A", "qty": 2}], "location": "S_RM"}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    s.kill_and_restart("");
    let (_, o) = get(&c, &s, "/v1/orders/K-1");
    assert_eq!(
        (o["status"].as_str(), o["payment"]["refunded"].as_str()),
        (Some("returned"), Some("14.00"))
    );
    assert_eq!(
        stock(&c, &s, "S_RM", "A"),
        (5, 0),
        "the restock is in the order's record"
    );
}

#[test]
fn daily_capacity_is_taken_by_orders_and_given_back_by_cancels() {
    let mut s = Server::start("");
    let c = client();
    network(&c, &s);
    let capped = |id: &str, lat: f64, lon: f64, cap: u32| {
        put_ok(
            &c,
            &s,
            &format!("/v1/locations/{id}"),
            json!({"name": id, "kind": "store", "lat": lat, "lon": lon, "priority": 10, "pickup": true, "daily_capacity": cap}),
        );
    };
    capped("S_RM", 41.9028, 12.4964, 1);
    capped("S_MI", 45.4642, 9.19, 2);
    let one_a = |id: &str, delivery: Value| json!({"id": id, "lines": [{"sku": "A", "qty": 1, "unit_price": "1"}], "delivery": delivery, "payment": {"provider": "sandbox"}});
    let from = |v: &Value| {
        v["shipments"][0]["location"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    let (st, o1) = order(&c, &s, one_a("Q-1", roma()));
    assert_eq!((st, from(&o1).as_str()), (201, "S_RM"));
    // Roma has had its one order today: the next goes to the next best,
    // the Milano store (one of its two for today).
    let (st, o2) = order(&c, &s, one_a("Q-2", roma()));
    assert_eq!((st, from(&o2).as_str()), (201, "S_MI"));
    // A cancel gives the slot back.
    assert_eq!(post(&c, &s, "/v1/orders/Q-1/cancel", None).0, 200);
    let (_, o3) = order(&c, &s, one_a("Q-3", roma()));
    assert_eq!(from(&o3), "S_RM");

    // A pickup counts against the pickup store: Milano's second today.
    let pickup = json!({"type": "pickup", "location": "S_MI"});
    let (st, v) = order(&c, &s, one_a("Q-4", pickup.clone()));
    assert_eq!(st, 201, "{v}");
    let (st, v) = order(&c, &s, one_a("Q-5", pickup.clone()));
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("pickup_location")),
        "{v}"
    );
    // A plan sees it too.
    let (st, _) = post(
        &c,
        &s,
        "/v1/sourcing/plan",
        Some(&json!({"lines": [{"sku": "A", "qty": 1}], "pickup_location": "S_MI"}).to_string()),
    );
    assert_eq!(st, 422);

    // The counts and the counter's open pickups are rebuilt from the
    // orders after kill -9.
    s.kill_and_restart("");
    let (_, o6) = order(&c, &s, one_a("Q-6", roma()));
    assert_eq!(from(&o6), "DC1", "both stores are full today");
    assert_eq!(order(&c, &s, one_a("Q-7", pickup)).0, 422);
    let (st, p) = get(&c, &s, "/v1/locations/S_MI/pickups");
    assert_eq!(
        (st, p["pickups"][0]["id"].as_str()),
        (200, Some("Q-4")),
        "{p}"
    );
    // A cancelled pickup leaves the counter and gives its slot back.
    assert_eq!(post(&c, &s, "/v1/orders/Q-4/cancel", None).0, 200);
    let (_, p) = get(&c, &s, "/v1/locations/S_MI/pickups");
    assert_eq!(p["pickups"], json!([]));
    let pickup = json!({"type": "pickup", "location": "S_MI"});
    assert_eq!(order(&c, &s, one_a("Q-8", pickup)).0, 201);
}

const STORES: &str = r#"
[[auth.tokens]]
token = "store-milano"
role = "store"
location = "S_MI"
[[auth.tokens]]
token = "store-roma"
role = "store"
location = "S_RM"
"#;

#[test]
fn store_tokens_move_their_own_shipments_and_hand_over_their_pickups() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    let as_ = |tok: &str, method: &str, path: &str, body: Option<Value>| {
        call(
            &c,
            method,
            &s.url(path),
            Some(tok),
            body.map(|b| b.to_string()).as_deref(),
        )
    };
    assert_eq!(
        as_(
            "admin-secret",
            "PUT",
            "/v1/skus/A",
            Some(json!({"name": "A"}))
        )
        .0,
        200
    );
    for (id, kind, lat, lon) in [
        ("DC1", "dc", 45.52, 9.21),
        ("S_MI", "store", 45.4642, 9.19),
        ("S_RM", "store", 41.9028, 12.4964),
    ] {
        let body =
            json!({"name": id, "kind": kind, "lat": lat, "lon": lon, "pickup": kind == "store"});
        assert_eq!(
            as_(
                "admin-secret",
                "PUT",
                &format!("/v1/locations/{id}"),
                Some(body)
            )
            .0,
            200
        );
    }
    let items = json!({"items": [{"location": "DC1", "sku": "A", "on_hand": 10}, {"location": "S_RM", "sku": "A", "on_hand": 5}]});
    assert_eq!(
        as_("admin-secret", "POST", "/v1/inventory/batch", Some(items)).0,
        200
    );
    let place = |id: &str, delivery: Value| {
        as_(
            "web-checkout",
            "POST",
            "/v1/orders",
            Some(
                json!({"id": id, "lines": [{"sku": "A", "qty": 1, "unit_price": "5"}], "delivery": delivery, "payment": {"provider": "sandbox"}}),
            ),
        )
    };
    let ev = |tok: &str, id: &str, status: &str| {
        as_(
            tok,
            "POST",
            &format!("/v1/orders/{id}/shipments/1/events"),
            Some(json!({"status": status})),
        )
        .0
    };

    // Shipped from Roma: the Roma store moves it, Milano neither sees nor moves it.
    let (st, o) = place("T-1", json!({"type": "ship", "lat": 41.89, "lon": 12.49}));
    assert_eq!(
        (st, o["shipments"][0]["location"].as_str()),
        (201, Some("S_RM"))
    );
    assert_eq!(as_("store-milano", "GET", "/v1/orders/T-1", None).0, 403);
    assert_eq!(as_("store-roma", "GET", "/v1/orders/T-1", None).0, 200);
    assert_eq!(ev("store-milano", "T-1", "picked"), 403);
    assert_eq!(ev("store-roma", "T-1", "picked"), 200);
    assert_eq!(ev("store-roma", "T-1", "shipped"), 200);
    assert_eq!(
        as_("store-roma", "POST", "/v1/orders/T-1/cancel", None).0,
        403,
        "cancels are the channel's"
    );
    assert_eq!(ev("web-checkout", "T-1", "delivered"), 200);
    // Returns at the store's own counter only.
    let ret = |tok: &str, at: &str| {
        as_(
            tok,
            "POST",
            "/v1/orders/T-1/returns",
            Some(json!({"lines": [{"sku": "A", "qty": 1}], "location": at})),
        )
        .0
    };
    assert_eq!(ret("store-roma", "S_MI"), 403);
    assert_eq!(ret("store-roma", "S_RM"), 200);

    // Collected in Milano, sent by the DC: Milano hands it over but does not ship it.
    let (st, o) = place("T-2", json!({"type": "pickup", "location": "S_MI"}));
    assert_eq!(
        (st, o["shipments"][0]["type"].as_str()),
        (201, Some("transfer"))
    );
    assert_eq!(as_("store-milano", "GET", "/v1/orders/T-2", None).0, 200);
    assert_eq!(ev("store-milano", "T-2", "shipped"), 403);
    assert_eq!(ev("admin-secret", "T-2", "shipped"), 200);
    assert_eq!(ev("store-milano", "T-2", "ready_for_pickup"), 200);
    // Milano's counter lists it (its board shows it); Roma may not look.
    let (st, p) = as_("store-milano", "GET", "/v1/locations/S_MI/pickups", None);
    assert_eq!(st, 200, "{p}");
    let listed: Vec<&str> = p["pickups"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, vec!["T-2"], "{p}");
    assert_eq!(
        p["pickups"][0]["shipments"][0]["status"],
        "ready_for_pickup"
    );
    assert_eq!(
        as_("store-roma", "GET", "/v1/locations/S_MI/pickups", None).0,
        403
    );
    assert_eq!(
        as_("admin-secret", "GET", "/v1/locations/S_RM/pickups", None).1["pickups"],
        json!([])
    );
    assert_eq!(ev("store-milano", "T-2", "collected"), 200);
    // Collected: no longer open at the counter.
    assert_eq!(
        as_("store-milano", "GET", "/v1/locations/S_MI/pickups", None).1["pickups"],
        json!([])
    );
    assert_eq!(
        as_("store-milano", "POST", "/v1/orders", Some(json!({}))).0,
        403,
        "stores do not place orders"
    );
}

fn reserve(c: &Client, s: &Server, lines: Value, ttl_s: u64) -> String {
    let (st, v) = post(
        c,
        s,
        "/v1/reservations",
        Some(&json!({"lines": lines, "ttl_s": ttl_s}).to_string()),
    );
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap_or_default().to_string()
}

fn reservation_status(c: &Client, s: &Server, id: &str) -> String {
    let (_, v) = get(c, s, &format!("/v1/reservations/{id}"));
    v["status"].as_str().unwrap_or_default().to_string()
}

/// api.md: "`reservation_id` may name a held reservation to turn into the
/// order". The cart's units stay reserved throughout (nobody else can take
/// them between checkout and order), become one reservation per shipment,
/// and survive kill -9.
#[test]
fn a_held_reservation_becomes_the_order() {
    let mut s = Server::start("");
    let c = client();
    network(&c, &s);
    let cart = reserve(
        &c,
        &s,
        json!([{"sku": "A", "location": "S_RM", "qty": 2}, {"sku": "B", "location": "DC1", "qty": 1}]),
        600,
    );
    let lines = json!([{"sku": "A", "qty": 2, "unit_price": "10.00"}, {"sku": "B", "qty": 1, "unit_price": "5.00"}]);
    let body = |id: &str, lines: &Value, r: &str| json!({"id": id, "lines": lines, "delivery": roma(), "payment": {"provider": "sandbox"}, "reservation_id": r});

    // Lines that are not what the reservation holds: 422, nothing moved.
    let (st, v) = order(
        &c,
        &s,
        body(
            "O-X",
            &json!([{"sku": "A", "qty": 1, "unit_price": "10.00"}, {"sku": "B", "qty": 1, "unit_price": "5.00"}]),
            &cart,
        ),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("validation_failed")),
        "{v}"
    );
    assert_eq!(v["errors"][0]["field"], "reservation_id", "{v}");
    let (st, v) = order(&c, &s, body("O-X", &lines, "r-none"));
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("reservation_id")),
        "{v}"
    );
    // A declined payment leaves the cart held: the shopper pays again.
    let declined = json!([{"sku": "A", "qty": 2, "unit_price": "10.00"}, {"sku": "B", "qty": 1, "unit_price": "5.51"}]);
    let (st, v) = order(&c, &s, body("O-D", &declined, &cart));
    assert_eq!(
        (st, v["code"].as_str()),
        (402, Some("payment_declined")),
        "{v}"
    );
    assert_eq!(reservation_status(&c, &s, &cart), "held");
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 2));
    assert_eq!(stock(&c, &s, "DC1", "B"), (10, 1));

    let (st, o) = order(&c, &s, body("O-R", &lines, &cart));
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["status"], "confirmed", "{o}");
    let ships = o["shipments"].as_array().cloned().unwrap_or_default();
    let got: Vec<(String, String, String, u64)> = ships
        .iter()
        .map(|x| {
            (
                x["location"].as_str().unwrap_or("").to_string(),
                x["type"].as_str().unwrap_or("").to_string(),
                x["lines"][0]["sku"].as_str().unwrap_or("").to_string(),
                x["lines"][0]["qty"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("S_RM".into(), "delivery".into(), "A".into(), 2),
            ("DC1".into(), "delivery".into(), "B".into(), 1)
        ]
    );
    // The same units, still reserved: nothing was released in between.
    assert_eq!(stock(&c, &s, "S_RM", "A"), (5, 2));
    assert_eq!(stock(&c, &s, "DC1", "B"), (10, 1));
    assert_eq!(reservation_status(&c, &s, &cart), "released");
    let parts: Vec<String> = ships
        .iter()
        .map(|x| x["reservation_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        parts.iter().all(|p| !p.is_empty() && *p != cart),
        "{parts:?}"
    );
    for p in &parts {
        assert_eq!(reservation_status(&c, &s, p), "confirmed");
    }
    // A reservation becomes one order only.
    let (st, v) = order(&c, &s, body("O-R2", &lines, &cart));
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("reservation_not_held")),
        "{v}"
    );

    assert_eq!(event(&c, &s, "O-R", 1, "shipped").0, 200);
    assert_eq!(stock(&c, &s, "S_RM", "A"), (3, 0));
    s.kill_and_restart("");
    assert_eq!(get(&c, &s, "/v1/orders/O-R").1["status"], "in_fulfilment");
    assert_eq!(reservation_status(&c, &s, &cart), "released");
    assert_eq!(reservation_status(&c, &s, &parts[1]), "confirmed");
    assert_eq!(stock(&c, &s, "S_RM", "A"), (3, 0));
    assert_eq!(stock(&c, &s, "DC1", "B"), (10, 1));
    assert_eq!(event(&c, &s, "O-R", 2, "shipped").0, 200);
    assert_eq!(stock(&c, &s, "DC1", "B"), (9, 0));

    // Pay and collect at S_MI from a cart held there and at the DC: a
    // pickup from the store's own shelf and a transfer to it.
    let cart = reserve(
        &c,
        &s,
        json!([{"sku": "A", "location": "S_MI", "qty": 1}, {"sku": "D", "location": "DC1", "qty": 1}]),
        600,
    );
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "O-P", "lines": [{"sku": "D", "qty": 1, "unit_price": "1.00"}, {"sku": "A", "qty": 1, "unit_price": "1.00"}],
               "delivery": {"type": "pickup", "location": "S_MI"}, "payment": {"provider": "sandbox"}, "reservation_id": cart}),
    );
    assert_eq!(st, 201, "{o}");
    let types: Vec<&str> = o["shipments"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(types, vec!["pickup", "transfer"], "{o}");

    // An expired reservation cannot become an order.
    let cart = reserve(
        &c,
        &s,
        json!([{"sku": "A", "location": "S_RM", "qty": 1}]),
        1,
    );
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let (st, v) = order(
        &c,
        &s,
        body(
            "O-E",
            &json!([{"sku": "A", "qty": 1, "unit_price": "1.00"}]),
            &cart,
        ),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("reservation_not_held")),
        "{v}"
    );
    assert_eq!(stock(&c, &s, "S_RM", "A"), (3, 0));
    assert_eq!(get(&c, &s, "/v1/orders/O-E").0, 404);
}

/// A cart sold ahead of supply becomes an order: its shipment cannot
/// leave (409 backordered) until the supply arrives and is converted to
/// it, the parts wait in the cart's turn, nor (409 not_released) before
/// a preorder's release, and then it ships.
#[test]
fn an_order_of_units_not_arrived_ships_once_they_are_received() {
    let s = Server::start("");
    let c = client();
    network(&c, &s);
    put_ok(
        &c,
        &s,
        "/v1/skus/C",
        json!({"name": "C", "backorder": {"max_units": 10}}),
    );
    let po = json!({"id": "PO-C", "location": "S_RM", "expected_at": holdfast::clock::rfc3339(common::now_ms() + 86_400_000),
        "lines": [{"sku": "C", "qty": 4}]});
    assert_eq!(post(&c, &s, "/v1/supply", Some(&po.to_string())).0, 201);
    let (st, r) = post(
        &c,
        &s,
        "/v1/reservations",
        Some(&json!({"lines": [{"sku": "C", "location": "S_RM", "qty": 5, "allow_backorder": true}]}).to_string()),
    );
    assert_eq!(
        (st, r["lines"][0]["backordered"].as_i64()),
        (201, Some(2)),
        "{r}"
    );
    let body = json!({"id": "O-BO", "lines": [{"sku": "C", "qty": 5, "unit_price": "3.00"}], "delivery": roma(),
        "payment": {"provider": "sandbox"}, "reservation_id": r["id"]});
    let (st, o) = order(&c, &s, body);
    assert_eq!(st, 201, "{o}");
    let part = o["shipments"][0]["reservation_id"]
        .as_str()
        .expect("a part")
        .to_string();
    let (_, p) = get(&c, &s, &format!("/v1/reservations/{part}"));
    assert_eq!(
        (
            p["lines"][0]["backordered"].as_i64(),
            p["created_at"].clone()
        ),
        (Some(2), r["created_at"].clone()),
        "{p}"
    );
    assert_eq!(event(&c, &s, "O-BO", 1, "packed").0, 200);
    let (st, v) = event(&c, &s, "O-BO", 1, "shipped");
    assert_eq!(
        (st, v["code"].as_str(), v["backordered"].as_i64()),
        (409, Some("backordered"), Some(2)),
        "{v}"
    );
    let got = json!({"lines": [{"sku": "C", "qty": 4}]});
    assert_eq!(
        post(&c, &s, "/v1/supply/PO-C/receive", Some(&got.to_string())).0,
        200
    );
    // Made a preorder meanwhile: arrived, it waits for its street date.
    let release =
        |days: i64| holdfast::clock::rfc3339((common::now_ms() / 1000 + days * 86_400) * 1000);
    let street = release(3);
    let preorder = |at: &str| json!({"name": "C", "preorder": {"release_at": at, "max_units": 10}});
    put_ok(&c, &s, "/v1/skus/C", preorder(&street));
    let (st, v) = event(&c, &s, "O-BO", 1, "shipped");
    assert_eq!(
        (st, v["code"].as_str(), &v["release_at"]),
        (409, Some("not_released"), &json!(street)),
        "{v}"
    );
    put_ok(&c, &s, "/v1/skus/C", preorder(&release(-1)));
    let (st, v) = event(&c, &s, "O-BO", 1, "shipped");
    assert_eq!(st, 200, "{v}");
    assert_eq!(stock(&c, &s, "S_RM", "C"), (2, 0));
}

/// A record's units in transit (0 when the record shows none).
fn in_transit(c: &Client, s: &Server, loc: &str, sku: &str) -> i64 {
    let (_, v) = get(c, s, &format!("/v1/inventory/{loc}/{sku}"));
    v["in_transit"].as_i64().unwrap_or(0)
}

/// A pickup served by a transfer from the DC travels as a transfer
/// (`{order}:{n}`): made shipped as its goods leave (in transit at the
/// pickup store; the DC's units left with the reservation), received in
/// full as they reach the counter (sold goods: the store's on_hand does
/// not move), never moved by a step asked of it; kept across kill -9.
#[test]
fn a_pickup_by_transfer_travels_as_a_transfer() {
    let mut s = Server::start("");
    let c = client();
    network(&c, &s);
    let pickup = json!({"type": "pickup", "location": "S_MI"});
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "PT-1", "lines": [{"sku": "A", "qty": 2, "unit_price": "3"}, {"sku": "B", "qty": 1, "unit_price": "4"}], "delivery": pickup, "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["shipments"][0]["type"], "transfer", "{o}");
    assert_eq!(
        get(&c, &s, "/v1/transfers/PT-1:1").0,
        404,
        "not before it leaves"
    );
    assert_eq!(event(&c, &s, "PT-1", 1, "packed").0, 200);
    assert_eq!(
        get(&c, &s, "/v1/transfers/PT-1:1").0,
        404,
        "packed, not left"
    );

    let (st, _) = event(&c, &s, "PT-1", 1, "shipped");
    assert_eq!(st, 200);
    let (st, t) = get(&c, &s, "/v1/transfers/PT-1:1");
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        (&t["from"], &t["to"], &t["status"], &t["order"]),
        (
            &json!("DC1"),
            &json!("S_MI"),
            &json!("shipped"),
            &json!({"id": "PT-1", "shipment": 1})
        )
    );
    assert_eq!(
        t["lines"],
        json!([{"sku": "A", "qty": 2, "received": null, "discrepancy": null},
               {"sku": "B", "qty": 1, "received": null, "discrepancy": null}])
    );
    assert_eq!(
        stock(&c, &s, "DC1", "A"),
        (8, 0),
        "left with the reservation"
    );
    assert_eq!(stock(&c, &s, "S_MI", "A"), (2, 0));
    assert_eq!(in_transit(&c, &s, "S_MI", "A"), 2);
    assert_eq!(in_transit(&c, &s, "S_MI", "B"), 1);
    let (_, listed) = get(&c, &s, "/v1/transfers?location=S_MI&status=shipped");
    assert_eq!(listed["transfers"][0]["id"], "PT-1:1", "{listed}");

    // Its steps are the shipment's: refused when asked of the transfer.
    let arrived = json!({"lines": [{"sku": "A", "qty": 2}]}).to_string();
    for (action, body) in [
        ("receive", Some(arrived.as_str())),
        ("cancel", None),
        ("ship", None),
    ] {
        let (st, v) = post(&c, &s, &format!("/v1/transfers/PT-1:1/{action}"), body);
        assert_eq!(
            (st, v["code"].as_str(), &v["order"]),
            (
                409,
                Some("invalid_transition"),
                &json!({"id": "PT-1", "shipment": 1})
            ),
            "{action}: {v}"
        );
    }
    assert_eq!(in_transit(&c, &s, "S_MI", "A"), 2, "nothing moved");

    s.kill_and_restart("");
    assert_eq!(get(&c, &s, "/v1/transfers/PT-1:1").1["status"], "shipped");
    assert_eq!(in_transit(&c, &s, "S_MI", "A"), 2);

    assert_eq!(event(&c, &s, "PT-1", 1, "ready_for_pickup").0, 200);
    let (_, t) = get(&c, &s, "/v1/transfers/PT-1:1");
    assert_eq!(
        (&t["status"], &t["discrepancy"]),
        (&json!("received"), &json!(0)),
        "{t}"
    );
    assert_eq!(t["lines"][0]["received"], 2);
    assert_eq!(
        (in_transit(&c, &s, "S_MI", "A"), stock(&c, &s, "S_MI", "A")),
        (0, (2, 0)),
        "at the counter, not on the shelf"
    );
    let (_, h) = get(&c, &s, "/v1/inventory/S_MI/A/history");
    let moves = h["movements"].as_array().cloned().unwrap_or_default();
    let refs: Vec<(&str, i64, i64)> = moves
        .iter()
        .filter(|m| m["ref"] == "PT-1:1")
        .map(|m| {
            let n = |k: &str| m[k].as_i64().unwrap_or(i64::MIN);
            (
                m["kind"].as_str().unwrap_or("?"),
                n("delta_on_hand"),
                n("delta_in_transit"),
            )
        })
        .collect();
    assert_eq!(
        refs,
        vec![("transfer_in", 0, -2), ("transfer_in", 0, 2)],
        "{h}"
    );
    assert_eq!(event(&c, &s, "PT-1", 1, "collected").0, 200);
    assert_eq!(stock(&c, &s, "S_MI", "A"), (2, 0));

    s.kill_and_restart("");
    assert_eq!(get(&c, &s, "/v1/transfers/PT-1:1").1["status"], "received");
    assert_eq!(in_transit(&c, &s, "S_MI", "A"), 0);

    // Straight to the counter (a move may skip steps): made and received.
    let (st, o) = order(
        &c,
        &s,
        json!({"id": "PT-2", "lines": [{"sku": "B", "qty": 1, "unit_price": "4"}], "delivery": pickup, "payment": {"provider": "sandbox"}}),
    );
    assert_eq!(
        (st, &o["shipments"][0]["type"]),
        (201, &json!("transfer")),
        "{o}"
    );
    assert_eq!(event(&c, &s, "PT-2", 1, "ready_for_pickup").0, 200);
    let (_, t) = get(&c, &s, "/v1/transfers/PT-2:1");
    assert_eq!(
        (&t["status"], &t["from"]),
        (&json!("received"), &json!("DC1")),
        "{t}"
    );
    assert_eq!(in_transit(&c, &s, "S_MI", "B"), 0);
    assert_eq!(stock(&c, &s, "DC1", "B"), (8, 0));
}
