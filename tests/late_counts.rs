//! Counts as of a time, through the HTTP API of a real server: a count
//! taken before sales that reached the engine first does not bring the
//! sold units back; a count older than the record's last count is refused
//! (409 `stale_count`; in a batch, per item, the rest applied); a count
//! reaching back too far, or ahead, is 422; and after kill -9 (from the
//! journal, and from a snapshot) the movements and the last count are
//! still known.

mod common;

use common::{call, client, now_ms, put_ok, seed, stock, Server};
use holdfast::clock::rfc3339;
use serde_json::{json, Value};
use std::time::Duration;

/// A moment strictly between what came before and what comes after.
fn instant() -> i64 {
    std::thread::sleep(Duration::from_millis(15));
    let t = now_ms();
    std::thread::sleep(Duration::from_millis(15));
    t
}

fn count(
    c: &reqwest::blocking::Client,
    s: &Server,
    rec: &str,
    on_hand: i64,
    at: Option<i64>,
) -> (u16, Value) {
    let mut body = json!({ "on_hand": on_hand });
    if let Some(t) = at {
        body["counted_at"] = json!(rfc3339(t));
    }
    call(
        c,
        "PUT",
        &s.url(&format!("/v1/inventory/{rec}")),
        None,
        Some(&body.to_string()),
    )
}

fn sell(c: &reqwest::blocking::Client, s: &Server, rec: &str, n: i64) {
    let (st, v) = call(
        c,
        "POST",
        &s.url(&format!("/v1/inventory/{rec}/adjustments")),
        None,
        Some(&json!({"delta": -n, "reason": "sale"}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn a_late_count_keeps_the_sales_made_after_it() {
    let mut s = Server::start("[snapshot]\nevery_records = 1000000\n");
    let c = client();
    seed(&c, &s, None, 2, 1, 10);
    let at_0900 = instant();
    sell(&c, &s, "S000/A0", 3);
    // Counted 9 at "09:00", before the sale of 3 reached the engine: 6.
    let (st, v) = count(&c, &s, "S000/A0", 9, Some(at_0900));
    assert_eq!((st, v["on_hand"].as_i64()), (200, Some(6)), "{v}");
    // The same figure taken now is taken as is.
    assert_eq!(count(&c, &s, "S000/A0", 9, None).1["on_hand"], 9);

    // Older than the last count: refused, the record untouched.
    let (st, v) = count(&c, &s, "S000/A0", 50, Some(at_0900));
    assert_eq!((st, v["code"].as_str()), (409, Some("stale_count")), "{v}");
    assert!(v["last_counted_at"].is_string(), "{v}");
    assert_eq!(stock(&c, &s, "S000", "A0").0, 9);

    // Out of reach, ahead of the clock, not a date: 422 on the field.
    for bad in [
        json!(rfc3339(now_ms() - 49 * 3600 * 1000)),
        json!(rfc3339(now_ms() + 3600 * 1000)),
        json!("yesterday"),
        json!(1700000000),
    ] {
        let (st, v) = call(
            &c,
            "PUT",
            &s.url("/v1/inventory/S000/A1"),
            None,
            Some(&json!({"on_hand": 1, "counted_at": bad}).to_string()),
        );
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some("counted_at")),
            "{bad}: {v}"
        );
    }
    assert_eq!(stock(&c, &s, "S000", "A1").0, 10, "nothing applied");

    // A batch: the stale item is reported, the others applied.
    let at_1000 = instant();
    sell(&c, &s, "S000/A1", 4);
    let items = json!({"items": [
        {"location": "S000", "sku": "A0", "on_hand": 1, "counted_at": rfc3339(at_0900)},
        {"location": "S000", "sku": "A1", "on_hand": 8, "counted_at": rfc3339(at_1000)},
    ]});
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/inventory/batch"),
        None,
        Some(&items.to_string()),
    );
    assert_eq!((st, v["applied"].as_i64()), (200, Some(1)), "{v}");
    let refused = &v["refused"][0];
    assert_eq!(
        (
            refused["index"].as_i64(),
            refused["code"].as_str(),
            refused["sku"].as_str()
        ),
        (Some(0), Some("stale_count"), Some("A0")),
        "{v}"
    );
    assert_eq!(stock(&c, &s, "S000", "A0").0, 9);
    assert_eq!(stock(&c, &s, "S000", "A1").0, 4, "8 counted, 4 sold since");
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    for line in [
        "holdfast_late_counts_total{outcome=\"placed\"} 2",
        "holdfast_late_counts_total{outcome=\"stale\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // After kill -9, replayed from the journal: the movements and the last
    // counts are known again.
    let at_1100 = instant();
    sell(&c, &s, "S000/A1", 1);
    s.kill_and_restart("[snapshot]\nevery_records = 1000000\n");
    let (st, v) = count(&c, &s, "S000/A1", 5, Some(at_1100));
    assert_eq!((st, v["on_hand"].as_i64()), (200, Some(4)), "{v}");
    assert_eq!(count(&c, &s, "S000/A0", 1, Some(at_0900)).0, 409);

    // And from a snapshot (one after every record): the same.
    s.kill_and_restart("[snapshot]\nevery_records = 1\nevery_s = 1\n");
    let at_1200 = instant();
    sell(&c, &s, "S000/A1", 2);
    put_ok(
        &c,
        &s,
        "/v1/locations/S001",
        json!({"name": "more", "kind": "store", "lat": 45.0, "lon": 9.0}),
    );
    // Let the snapshotter take the sale in, then lose the journal's copy
    // of it by restarting from the snapshot.
    std::thread::sleep(Duration::from_millis(2500));
    s.kill_and_restart("[snapshot]\nevery_records = 1000000\n");
    let (st, v) = count(&c, &s, "S000/A1", 7, Some(at_1200));
    assert_eq!((st, v["on_hand"].as_i64()), (200, Some(5)), "{v}");
    assert_eq!(count(&c, &s, "S000/A1", 7, Some(at_1100)).0, 409);
}
