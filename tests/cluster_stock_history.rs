//! Counts as of a time and the movement history on a three-node cluster
//! (tests/common/cluster.rs, a `redis-server` of the test's own): written
//! and read through followers, and after the leader is killed (-9) the
//! new leader holds every acknowledged movement, once, derived from its
//! own copy of the journal; units set apart through a follower stay
//! apart.

mod common;

use common::cluster::{get_retrying, reserve, Cluster};
use common::redis::Redis;
use common::{call, client, movement_kinds, now_ms};
use holdfast::clock::rfc3339;
use serde_json::{json, Value};
use std::time::Duration;

fn send(cl: &Cluster, via: usize, method: &str, path: &str, body: Value) -> (u16, Value) {
    call(
        &client(),
        method,
        &cl.url(via, path),
        None,
        Some(&body.to_string()),
    )
}

/// (on_hand, in_transit) of A0 at `loc`, read through node `via`.
fn record(cl: &Cluster, via: usize, loc: &str) -> (i64, i64) {
    let (st, v) = get_retrying(&cl.url(via, &format!("/v1/inventory/{loc}/A0")));
    assert_eq!(st, 200, "{v}");
    (
        v["on_hand"].as_i64().unwrap_or(-1),
        v.get("in_transit").and_then(Value::as_i64).unwrap_or(0),
    )
}

fn history(cl: &Cluster, via: usize) -> Vec<Value> {
    let (st, v) = get_retrying(&cl.url(via, "/v1/inventory/S000/A0/history"));
    assert_eq!(st, 200, "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
    v["movements"].as_array().expect("movements").clone()
}

#[test]
fn late_counts_and_the_history_hold_through_followers_and_a_takeover() {
    let redis = Redis::start();
    let mut cl = Cluster::start(redis.port, "durability = \"replicated\"", 1500, "");
    let leader = cl.wait_leader();
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    cl.seed(f1, 2, 10);

    // Counted 9 "at 09:00"; a sale of 3 reached the engine first, through
    // the other follower: the late count keeps it (6, not 9).
    let at_0900 = now_ms();
    std::thread::sleep(Duration::from_millis(20));
    let (st, v) = send(
        &cl,
        f2,
        "POST",
        "/v1/inventory/S000/A0/adjustments",
        json!({"delta": -3, "reason": "sale"}),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = send(
        &cl,
        f1,
        "PUT",
        "/v1/inventory/S000/A0",
        json!({"on_hand": 9, "counted_at": rfc3339(at_0900)}),
    );
    assert_eq!((st, v["on_hand"].as_i64()), (200, Some(6)), "{v}");
    // Older than that count: refused through either follower.
    for via in [f1, f2] {
        let (st, v) = send(
            &cl,
            via,
            "PUT",
            "/v1/inventory/S000/A0",
            json!({"on_hand": 50, "counted_at": rfc3339(at_0900 - 1_000)}),
        );
        assert_eq!((st, v["code"].as_str()), (409, Some("stale_count")), "{v}");
    }
    // Two found damaged, through a follower: set apart, not sold.
    let (st, v) = send(
        &cl,
        f2,
        "POST",
        "/v1/inventory/S000/A0/unsellable",
        json!({"bucket": "damaged", "delta": 2, "reason": "damage"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["available"].as_i64(), &v["unsellable"]),
        (Some(4), &json!({"damaged": 2})),
        "{v}"
    );
    let (st, r) = reserve(&cl.url(f2, "/v1/reservations"), "A0", 2, None).expect("answer");
    assert_eq!(st, 201, "{r}");

    // The history, through every node, the same.
    let told = history(&cl, leader);
    assert_eq!(
        movement_kinds(&told),
        ["hold", "unsellable", "count", "adjustment", "count"],
        "{told:#?}"
    );
    assert_eq!(told[2]["on_hand"], 6);
    assert_eq!(told[1]["delta_unsellable"], json!({"damaged": 2}));
    assert_eq!(told[0]["ref"], r["id"]);
    for via in [f1, f2] {
        assert_eq!(history(&cl, via), told);
    }

    // The leader killed: the new one has every movement once, and the
    // count's time (a count older than it is still stale).
    cl.wait_copies_equal();
    cl.kill(leader);
    let next = cl.wait_leader();
    assert_ne!(next, leader);
    assert_eq!(history(&cl, next), told);
    let survivor = if next == f1 { f2 } else { f1 };
    let (st, v) = send(
        &cl,
        survivor,
        "PUT",
        "/v1/inventory/S000/A0",
        json!({"on_hand": 50, "counted_at": rfc3339(at_0900 - 1_000)}),
    );
    assert_eq!((st, v["code"].as_str()), (409, Some("stale_count")), "{v}");
    // A write after the takeover joins the same story.
    let (st, v) = send(
        &cl,
        survivor,
        "POST",
        "/v1/inventory/S000/A0/adjustments",
        json!({"delta": 4, "reason": "receipt"}),
    );
    assert_eq!((st, v["on_hand"].as_i64()), (200, Some(10)), "{v}");
    assert_eq!(
        (v["available"].as_i64(), &v["unsellable"]),
        (Some(6), &json!({"damaged": 2})),
        "the damaged units stayed apart through the takeover: {v}"
    );
    let after = history(&cl, survivor);
    assert_eq!(movement_kinds(&after)[0], "adjustment");
    assert_eq!(after[1..], told[..]);
}

/// A transfer requested, shipped and read through followers, and supply
/// announced and partly delivered; the leader killed (-9) while they are
/// on their way: the new leader holds the shipment (the units off the
/// sender, in transit at the receiver) and the supply still to come, and
/// takes the rest through the survivor.
#[test]
fn transfers_and_supply_on_their_way_survive_a_takeover() {
    let redis = Redis::start();
    let mut cl = Cluster::start(redis.port, "durability = \"replicated\"", 1500, "");
    let leader = cl.wait_leader();
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    cl.seed(f1, 2, 10);
    let (st, v) = send(
        &cl,
        f1,
        "PUT",
        "/v1/locations/S001",
        json!({"name": "t", "kind": "store", "lat": 45.1, "lon": 9.1}),
    );
    assert_eq!(st, 200, "{v}");
    let ask = json!({"id": "T-1", "from": "S000", "to": "S001", "lines": [{"sku": "A0", "qty": 4}, {"sku": "A1", "qty": 2}]});
    let (st, v) = send(&cl, f1, "POST", "/v1/transfers", ask.clone());
    assert_eq!((st, v["status"].as_str()), (201, Some("requested")), "{v}");
    let (st, v) = send(&cl, f2, "POST", "/v1/transfers/T-1/ship", json!({}));
    assert_eq!((st, v["status"].as_str()), (200, Some("shipped")), "{v}");

    // Read through a follower, from its own copy once it caught up with
    // the write it forwarded (the leader answers until then).
    let from_copy = (0..50).find_map(|_| {
        let (st, h, v) = common::call_full(
            &client(),
            "GET",
            &cl.url(f2, "/v1/transfers/T-1"),
            None,
            None,
            &[],
        );
        let copy = h.get("x-holdfast-read").is_some_and(|r| r == "follower");
        if !copy {
            std::thread::sleep(Duration::from_millis(50));
        }
        copy.then_some((st, v))
    });
    let (st, v) = from_copy.expect("a follower's read");
    assert_eq!((st, v["status"].as_str()), (200, Some("shipped")), "{v}");
    assert_eq!(record(&cl, f2, "S000"), (6, 0));
    assert_eq!(record(&cl, f2, "S001"), (0, 4));
    // Supply of A1 at S000: announced through one follower, half of it
    // delivered through the other.
    let po = json!({"id": "PO-1", "location": "S000", "expected_at": rfc3339(now_ms() + 86_400_000), "lines": [{"sku": "A1", "qty": 10}]});
    let (st, v) = send(&cl, f1, "POST", "/v1/supply", po);
    assert_eq!((st, v["status"].as_str()), (201, Some("expected")), "{v}");
    let half = json!({"lines": [{"sku": "A1", "qty": 5}]});
    let (st, v) = send(&cl, f2, "POST", "/v1/supply/PO-1/receive", half);
    assert_eq!(
        (st, v["lines"][0]["remaining"].as_i64()),
        (200, Some(5)),
        "{v}"
    );
    let supply = |cl: &Cluster, via: usize| {
        let (st, v) = get_retrying(&cl.url(via, "/v1/inventory/S000/A1"));
        assert_eq!(st, 200, "{v}");
        (
            v["on_hand"].as_i64().unwrap_or(-1),
            v.get("incoming").and_then(Value::as_i64).unwrap_or(0),
        )
    };
    assert_eq!(
        supply(&cl, f2),
        (13, 5),
        "two shipped by the transfer, five delivered"
    );

    // The leader killed while the units are on their way.
    cl.wait_copies_equal();
    cl.kill(leader);
    let next = cl.wait_leader();
    assert_ne!(next, leader);
    let survivor = if next == f1 { f2 } else { f1 };
    assert_eq!(record(&cl, next, "S000"), (6, 0), "the shipment held");
    assert_eq!(record(&cl, next, "S001"), (0, 4));
    // A retried request and shipment answer the transfer as it is.
    let (st, v) = send(&cl, survivor, "POST", "/v1/transfers", ask);
    assert_eq!((st, v["status"].as_str()), (200, Some("shipped")), "{v}");
    let (st, v) = send(&cl, survivor, "POST", "/v1/transfers/T-1/ship", json!({}));
    assert_eq!((st, v["status"].as_str()), (200, Some("shipped")), "{v}");
    assert_eq!(record(&cl, next, "S000"), (6, 0), "shipped once");
    // Received through the surviving follower: three of four arrived.
    let got = json!({"lines": [{"sku": "A0", "qty": 3}, {"sku": "A1", "qty": 2}]});
    let (st, v) = send(&cl, survivor, "POST", "/v1/transfers/T-1/receive", got);
    assert_eq!((st, v["discrepancy"].as_i64()), (200, Some(1)), "{v}");
    assert_eq!(record(&cl, next, "S001"), (3, 0));
    let (st, v) = get_retrying(&cl.url(survivor, "/v1/transfers?status=received"));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["transfers"][0]["id"], "T-1", "{v}");

    // The supply still to come held through the takeover; the rest
    // arrives through the survivor.
    assert_eq!(supply(&cl, next), (13, 5));
    let rest = json!({"lines": [{"sku": "A1", "qty": 5}]});
    let (st, v) = send(&cl, survivor, "POST", "/v1/supply/PO-1/receive", rest);
    assert_eq!((st, v["status"].as_str()), (200, Some("received")), "{v}");
    assert_eq!(supply(&cl, next), (18, 0));
}

/// Backorders held through followers, read from a follower's copy, and
/// the leader killed (-9) before the supply arrives: the new leader's
/// book still knows who waits, in order, and converts them as the
/// delivery comes through the survivor.
#[test]
fn backorders_wait_through_a_takeover_and_convert_in_order() {
    let redis = Redis::start();
    let mut cl = Cluster::start(redis.port, "durability = \"replicated\"", 1500, "");
    let leader = cl.wait_leader();
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    cl.seed(f1, 1, 10);
    let sku = json!({"name": "x", "backorder": {"max_units": 10}});
    assert_eq!(send(&cl, f1, "PUT", "/v1/skus/A0", sku).0, 200);
    let po = json!({"id": "PO-1", "location": "S000", "expected_at": rfc3339(now_ms() + 86_400_000), "lines": [{"sku": "A0", "qty": 6}]});
    assert_eq!(send(&cl, f1, "POST", "/v1/supply", po).0, 201);
    let hold = |via: usize, qty: u32| {
        let line = json!({"sku": "A0", "location": "S000", "qty": qty, "allow_backorder": true});
        let (st, v) = send(
            &cl,
            via,
            "POST",
            "/v1/reservations",
            json!({ "lines": [line] }),
        );
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().expect("an id").to_string()
    };
    let first = hold(f2, 12);
    let second = hold(f1, 3);
    // (backordered units of a reservation, of the record), via `via`.
    let waiting = |cl: &Cluster, via: usize, id: &str| {
        let (st, r) = get_retrying(&cl.url(via, &format!("/v1/reservations/{id}")));
        assert_eq!(st, 200, "{r}");
        let (st, v) = get_retrying(&cl.url(via, "/v1/inventory/S000/A0"));
        assert_eq!(st, 200, "{v}");
        let n = |v: &Value| v.get("backordered").and_then(Value::as_i64).unwrap_or(0);
        (n(&r["lines"][0]), n(&v))
    };
    cl.wait_copies_equal();
    assert_eq!(waiting(&cl, f2, &first), (2, 5));
    assert_eq!(waiting(&cl, f1, &second), (3, 5));

    cl.kill(leader);
    let next = cl.wait_leader();
    let survivor = if next == f1 { f2 } else { f1 };
    assert_eq!(waiting(&cl, next, &second), (3, 5), "held through it");
    let four = json!({"lines": [{"sku": "A0", "qty": 4}]});
    let (st, v) = send(&cl, survivor, "POST", "/v1/supply/PO-1/receive", four);
    assert_eq!(st, 200, "{v}");
    assert_eq!(waiting(&cl, next, &first), (0, 1), "the first waited first");
    assert_eq!(waiting(&cl, next, &second), (1, 1));
    for step in ["confirm", "fulfil"] {
        let path = format!("/v1/reservations/{first}/{step}");
        let (st, v) = send(&cl, survivor, "POST", &path, json!({}));
        assert_eq!(st, 200, "{step}: {v}");
    }
    let path = format!("/v1/reservations/{second}/fulfil");
    let (st, v) = send(&cl, survivor, "POST", &path, json!({}));
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("reservation_not_held")),
        "{v}"
    );
}
