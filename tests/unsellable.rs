//! Unsellable stock through a real server: units set apart in a bucket
//! (`POST /v1/inventory/{loc}/{sku}/unsellable`) stay in on_hand and are
//! never held, shown or sourced as available; set back, written off or
//! received straight into a bucket (`adjustments` with a `bucket`); each
//! role's reach, bad input, an Idempotency-Key, the movement history, and
//! kill -9 before and after a snapshot losing nothing acknowledged.

mod common;

use common::{auth_with, call, call_full, client, seed, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const STORE: &str = "[[auth.tokens]]\ntoken = \"store-s000\"\nrole = \"store\"\nlocation = \"S000\"\n[[auth.tokens]]\ntoken = \"store-s001\"\nrole = \"store\"\nlocation = \"S001\"\n";
const ADMIN: Option<&str> = Some("admin-secret");
const CHANNEL: Option<&str> = Some("web-checkout");
const OWN: Option<&str> = Some("store-s000");

fn post(c: &Client, s: &Server, what: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(
        c,
        "POST",
        &s.url(&format!("/v1/inventory/S000/A0/{what}")),
        token,
        Some(&body.to_string()),
    )
}

fn record(c: &Client, s: &Server) -> Value {
    let (st, v) = call(c, "GET", &s.url("/v1/inventory/S000/A0"), ADMIN, None);
    assert_eq!(st, 200, "{v}");
    v
}

/// (on_hand, reserved, available, unsellable) of a record as answered.
fn figures(v: &Value) -> (i64, i64, i64, Value) {
    (
        v["on_hand"].as_i64().expect("on_hand"),
        v["reserved"].as_i64().expect("reserved"),
        v["available"].as_i64().expect("available"),
        // Left out when the record has none.
        v.get("unsellable").cloned().unwrap_or(Value::Null),
    )
}

fn reserve(c: &Client, s: &Server, qty: u32) -> (u16, Value) {
    let body = json!({"lines": [{"sku": "A0", "qty": qty, "location": "S000"}], "ttl_s": 600});
    call(
        c,
        "POST",
        &s.url("/v1/reservations"),
        CHANNEL,
        Some(&body.to_string()),
    )
}

#[test]
fn units_set_apart_stay_on_hand_and_are_never_sold() {
    let s = Server::start(&auth_with(STORE));
    let c = client();
    seed(&c, &s, ADMIN, 1, 2, 10);
    assert_eq!(figures(&record(&c, &s)).3, Value::Null, "no bucket yet");
    assert_eq!(reserve(&c, &s, 3).0, 201);

    // Five found damaged: on_hand stays, available drops.
    let damaged =
        json!({"bucket": "damaged", "delta": 5, "reason": "damage", "note": "water leak"});
    let (st, v) = post(&c, &s, "unsellable", OWN, damaged);
    assert_eq!(st, 200, "{v}");
    assert_eq!(figures(&v), (10, 3, 2, json!({"damaged": 5})));
    assert_eq!(figures(&record(&c, &s)), (10, 3, 2, json!({"damaged": 5})));

    // Only free units (neither reserved nor set apart) may be set apart.
    let (st, v) = post(
        &c,
        &s,
        "unsellable",
        OWN,
        json!({"bucket": "quarantine", "delta": 3, "reason": "return"}),
    );
    assert_eq!(
        (st, v["type"].as_str()),
        (
            409,
            Some("https://holdfast.dev/problems/insufficient_stock")
        ),
        "{v}"
    );
    assert_eq!(v["free"], 2, "{v}");

    // Never held nor offered: 3 is refused, 2 is held.
    let (st, v) = reserve(&c, &s, 3);
    assert_eq!(st, 409, "{v}");
    assert_eq!(reserve(&c, &s, 2).0, 201);
    let (st, v) = call(&c, "GET", &s.url("/v1/availability/A0"), CHANNEL, None);
    assert_eq!(st, 200, "{v}");
    let here = v["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .find(|l| l["location"] == "S000")
        .cloned()
        .unwrap_or(json!({"available": 0}));
    assert_eq!(here["available"], 0, "{v}");

    // Back to sale: no more than the bucket holds.
    let (st, v) = post(
        &c,
        &s,
        "unsellable",
        OWN,
        json!({"bucket": "damaged", "delta": -6, "reason": "correction"}),
    );
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["unsellable"], json!({"damaged": 5}), "{v}");
    let (st, v) = post(
        &c,
        &s,
        "unsellable",
        OWN,
        json!({"bucket": "damaged", "delta": -2, "reason": "correction"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(figures(&v), (10, 5, 2, json!({"damaged": 3})));

    // A write-off: on_hand and the bucket alike, available unmoved.
    let write_off = json!({"delta": -3, "reason": "damage", "bucket": "damaged"});
    let (st, v) = post(&c, &s, "adjustments", OWN, write_off.clone());
    assert_eq!(st, 200, "{v}");
    assert_eq!(figures(&v), (7, 5, 2, Value::Null));
    let (st, v) = post(&c, &s, "adjustments", OWN, write_off);
    assert_eq!(st, 409, "the bucket is empty: {v}");
    // A receipt straight into quarantine.
    let (st, v) = post(
        &c,
        &s,
        "adjustments",
        ADMIN,
        json!({"delta": 4, "reason": "return", "bucket": "quarantine"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(figures(&v), (11, 5, 2, json!({"quarantine": 4})));

    // The history tells each step, with the buckets after it.
    let (st, v) = call(
        &c,
        "GET",
        &s.url("/v1/inventory/S000/A0/history?limit=5"),
        OWN,
        None,
    );
    assert_eq!(st, 200, "{v}");
    let moves = v["movements"].as_array().expect("movements");
    let kinds: Vec<&str> = moves
        .iter()
        .map(|m| m["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        [
            "adjustment",
            "adjustment",
            "unsellable",
            "hold",
            "unsellable"
        ]
    );
    assert_eq!(moves[0]["delta_unsellable"], json!({"quarantine": 4}));
    assert_eq!(moves[0]["unsellable"], json!({"quarantine": 4}));
    assert_eq!(moves[1]["delta_on_hand"], -3);
    assert_eq!(moves[1]["delta_unsellable"], json!({"damaged": -3}));
    let apart = &moves[4];
    assert_eq!(apart["delta_on_hand"], 0, "{apart}");
    assert_eq!(apart["delta_unsellable"], json!({"damaged": 5}), "{apart}");
    assert_eq!(apart["unsellable"], json!({"damaged": 5}), "{apart}");
    assert_eq!(apart["reason"], "damage");
    assert_eq!(apart["note"], "water leak");
    assert_eq!(apart["by"], json!({"role": "store", "location": "S000"}));
    assert_eq!(
        moves[3]["unsellable"],
        json!({"damaged": 5}),
        "a hold shows them too"
    );
    assert!(moves[3].get("delta_unsellable").is_none(), "{}", moves[3]);
    assert!(moves[0].get("delta_unsellable").is_some());

    // /metrics counts the units in and out of each bucket.
    let text = c
        .get(s.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    for line in [
        r#"holdfast_unsellable_units_total{bucket="damaged",direction="in"} 5"#,
        r#"holdfast_unsellable_units_total{bucket="damaged",direction="out"} 5"#,
        r#"holdfast_unsellable_units_total{bucket="quarantine",direction="in"} 4"#,
        r#"holdfast_unsellable_units_total{bucket="display",direction="in"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in /metrics");
    }
}

#[test]
fn each_role_reaches_its_own_and_bad_input_is_named() {
    let s = Server::start(&auth_with(STORE));
    let c = client();
    seed(&c, &s, ADMIN, 1, 2, 10);
    let ok = json!({"bucket": "display", "delta": 1, "reason": "correction"});
    for (token, want) in [
        (None, 401),
        (Some("store-s001"), 403),
        (CHANNEL, 403),
        (OWN, 200),
        (ADMIN, 200),
    ] {
        let (st, v) = post(&c, &s, "unsellable", token, ok.clone());
        assert_eq!(st, want, "{token:?}: {v}");
    }
    assert_eq!(figures(&record(&c, &s)).3, json!({"display": 2}));
    // Authorization before validation.
    let (st, v) = post(
        &c,
        &s,
        "unsellable",
        Some("store-s001"),
        json!({"bucket": 7}),
    );
    assert_eq!(st, 403, "{v}");

    let named = |body: Value| -> Vec<String> {
        let (st, v) = post(&c, &s, "unsellable", OWN, body);
        assert_eq!(st, 422, "{v}");
        let mut f: Vec<String> = v["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().unwrap_or("?").to_string())
            .collect();
        f.sort();
        f
    };
    assert_eq!(named(json!({})), ["bucket", "delta", "reason"]);
    assert_eq!(
        named(json!({"bucket": "broken", "delta": 1, "reason": "damage"})),
        ["bucket"]
    );
    assert_eq!(
        named(json!({"bucket": "damaged", "delta": 0, "reason": "damage"})),
        ["delta"]
    );
    assert_eq!(
        named(json!({"bucket": "damaged", "delta": 1.5, "reason": "stolen"})),
        ["delta", "reason"]
    );
    assert_eq!(
        named(
            json!({"bucket": "damaged", "delta": 1, "reason": "damage", "note": "x".repeat(257)})
        ),
        ["note"]
    );
    assert_eq!(
        named(json!({"delta": 1, "reason": "damage", "bucket": "Damaged"})),
        ["bucket"]
    );
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/inventory/S000/NOPE/unsellable"),
        ADMIN,
        Some(&ok.to_string()),
    );
    assert_eq!(
        (st, v["type"].as_str()),
        (422, Some("https://holdfast.dev/problems/unknown_sku")),
        "{v}"
    );
    let (st, v) = call(
        &c,
        "GET",
        &s.url("/v1/inventory/S000/A0/unsellable"),
        ADMIN,
        None,
    );
    assert_eq!(st, 405, "{v}");
    assert_eq!(
        figures(&record(&c, &s)).3,
        json!({"display": 2}),
        "nothing half-applied"
    );

    // Under an Idempotency-Key: once, and the key is the request's.
    let keyed = |body: &Value| {
        call_full(
            &c,
            "POST",
            &s.url("/v1/inventory/S000/A0/unsellable"),
            OWN,
            Some(&body.to_string()),
            &[("idempotency-key", "apart-1")],
        )
    };
    let apart = json!({"bucket": "expired", "delta": 2, "reason": "damage"});
    assert_eq!(keyed(&apart).0, 200);
    let (st, _, v) = keyed(&apart);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["unsellable"],
        json!({"display": 2, "expired": 2}),
        "applied once: {v}"
    );
    let (st, _, v) = keyed(&json!({"bucket": "expired", "delta": 3, "reason": "damage"}));
    assert_eq!(
        (st, v["type"].as_str()),
        (
            422,
            Some("https://holdfast.dev/problems/idempotency_key_reused")
        ),
        "{v}"
    );
}

#[test]
fn set_apart_units_survive_kill_9_before_and_after_a_snapshot() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 1, 1, 10);
    let apart = |s: &Server, bucket: &str, delta: i64| {
        let (st, v) = post(
            &c,
            s,
            "unsellable",
            None,
            json!({"bucket": bucket, "delta": delta, "reason": "damage"}),
        );
        assert_eq!(st, 200, "{v}");
        figures(&v)
    };
    let acknowledged = apart(&s, "damaged", 3);
    s.kill_and_restart(journal_only);
    assert_eq!(
        figures(&record(&c, &s)),
        acknowledged,
        "replayed from the journal"
    );

    // Snapshotted (the journal behind it trimmed), then more after it.
    s.kill_and_restart("[snapshot]\nevery_records = 1\nevery_s = 1\n");
    apart(&s, "recalled", 2);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let acknowledged = apart(&s, "damaged", -1);
    assert_eq!(
        acknowledged,
        (10, 0, 6, json!({"damaged": 2, "recalled": 2}))
    );
    s.kill_and_restart(journal_only);
    assert_eq!(
        figures(&record(&c, &s)),
        acknowledged,
        "from the snapshot and the journal after it"
    );
    let (st, v) = reserve(&c, &s, 7);
    assert_eq!(
        st, 409,
        "the set-apart units stay unsold after a restart: {v}"
    );
}
