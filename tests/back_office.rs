//! The back office's reads through HTTP against the real binary: the order
//! search (`GET /v1/orders?...`, api.md "Finding orders") and the stock
//! export (`GET /v1/inventory/export`, api.md "Exporting stock"), with
//! `holdfast import` reading an export back.

mod common;

use common::{auth_with, call, client, holdfast_import, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const ADMIN: Option<&str> = Some("admin-secret");
const STORES: &str = "[[auth.tokens]]\ntoken = \"store-mi\"\nrole = \"store\"\nlocation = \"S_MI\"\n[[auth.tokens]]\ntoken = \"store-rm\"\nrole = \"store\"\nlocation = \"S_RM\"\n";

/// Two stores, each with 50 of A and B.
fn network(c: &Client, s: &Server) {
    for sku in ["A", "B"] {
        let (st, v) = call(
            c,
            "PUT",
            &s.url(&format!("/v1/skus/{sku}")),
            ADMIN,
            Some(&json!({"name": sku}).to_string()),
        );
        assert_eq!(st, 200, "{v}");
    }
    for (id, lat, lon) in [("S_MI", 45.46, 9.19), ("S_RM", 41.90, 12.50)] {
        let body = json!({"name": id, "kind": "store", "lat": lat, "lon": lon, "priority": 1, "ship": true, "pickup": true});
        let (st, v) = call(
            c,
            "PUT",
            &s.url(&format!("/v1/locations/{id}")),
            ADMIN,
            Some(&body.to_string()),
        );
        assert_eq!(st, 200, "{v}");
    }
    let items: Vec<Value> = ["S_MI", "S_RM"]
        .iter()
        .flat_map(|l| ["A", "B"].map(|k| json!({"location": l, "sku": k, "on_hand": 50})))
        .collect();
    let (st, v) = call(
        c,
        "POST",
        &s.url("/v1/inventory/batch"),
        ADMIN,
        Some(&json!({ "items": items }).to_string()),
    );
    assert_eq!(st, 200, "{v}");
}

/// Places order `id` collected at `store`, with a customer.
fn place(c: &Client, s: &Server, id: &str, store: &str, customer: Value) -> Value {
    let body = json!({"id": id, "lines": [{"sku": "A", "qty": 1, "unit_price": "10.00"}],
        "delivery": {"type": "pickup", "location": store}, "payment": {"provider": "sandbox"},
        "customer": customer});
    let (st, v) = call(
        c,
        "POST",
        &s.url("/v1/orders"),
        ADMIN,
        Some(&body.to_string()),
    );
    assert_eq!(st, 201, "{v}");
    v
}

fn search(c: &Client, s: &Server, token: Option<&str>, query: &str) -> (u16, Value) {
    call(
        c,
        "GET",
        &s.url(&format!("/v1/orders?{query}")),
        token,
        None,
    )
}

fn ids(page: &Value) -> Vec<String> {
    page["orders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every page of `query`, `limit` at a time: the ids in order.
fn all_ids(c: &Client, s: &Server, token: Option<&str>, query: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let q = match &cursor {
            None => format!("{query}&limit={limit}"),
            Some(k) => format!("{query}&limit={limit}&cursor={k}"),
        };
        let (st, page) = search(c, s, token, &q);
        assert_eq!(st, 200, "{page}");
        let got = ids(&page);
        assert!(got.len() <= limit, "{page}");
        out.extend(got);
        match page["next_cursor"].as_str() {
            Some(k) => cursor = Some(k.to_string()),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

#[test]
fn orders_are_found_by_customer_status_location_and_time_a_page_at_a_time() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    network(&c, &s);
    let mut placed = Vec::new();
    for i in 0..12 {
        let store = if i % 3 == 0 { "S_RM" } else { "S_MI" };
        let customer = match i % 4 {
            0 => json!({"email": "Anna.Rossi@Example.com", "phone": "+39 02 1234 5678"}),
            1 => json!({"email": "bob@example.com"}),
            2 => json!({"phone": "(0039) 06-9988.7766"}),
            _ => Value::Null,
        };
        placed.push(place(&c, &s, &format!("WEB-{i:02}"), store, customer));
        // Placed in distinct milliseconds: newest first is one order.
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    assert_eq!(
        placed[0]["customer"],
        json!({"email": "Anna.Rossi@Example.com", "phone": "+39 02 1234 5678"})
    );
    assert_eq!(placed[3]["customer"], json!({"email": null, "phone": null}));
    let newest_first: Vec<String> = (0..12).rev().map(|i| format!("WEB-{i:02}")).collect();

    // Everything, newest first, in pages of 5: no order twice, none missed.
    assert_eq!(all_ids(&c, &s, ADMIN, "", 5), newest_first);
    assert_eq!(all_ids(&c, &s, Some("web-checkout"), "", 100), newest_first);
    // The email in any case; the phone by the digits it ends with, written
    // any way; the delivery's or the customer's.
    let want = |is: &[usize]| -> Vec<String> {
        let mut v: Vec<String> = is.iter().map(|i| format!("WEB-{i:02}")).collect();
        v.reverse();
        v
    };
    assert_eq!(
        all_ids(&c, &s, ADMIN, "email=anna.rossi%40example.COM", 2),
        want(&[0, 4, 8])
    );
    assert_eq!(
        all_ids(&c, &s, ADMIN, "phone=1234-5678", 10),
        want(&[0, 4, 8])
    );
    assert_eq!(
        all_ids(&c, &s, ADMIN, "phone=99887766", 10),
        want(&[2, 6, 10])
    );
    assert_eq!(all_ids(&c, &s, ADMIN, "id=WEB-1", 10), want(&[10, 11]));
    assert_eq!(
        all_ids(&c, &s, ADMIN, "location=S_RM", 10),
        want(&[0, 3, 6, 9])
    );
    // Every part must hold.
    assert_eq!(
        all_ids(
            &c,
            &s,
            ADMIN,
            "location=S_RM&email=anna.rossi%40example.com",
            10
        ),
        want(&[0])
    );

    // A status: cancel two, find them.
    for id in ["WEB-05", "WEB-07"] {
        let (st, v) = call(
            &c,
            "POST",
            &s.url(&format!("/v1/orders/{id}/cancel")),
            ADMIN,
            None,
        );
        assert_eq!(st, 200, "{v}");
    }
    assert_eq!(
        all_ids(&c, &s, ADMIN, "status=cancelled", 10),
        want(&[5, 7])
    );
    // Its timeline, named as its events are.
    let (_, o) = call(&c, "GET", &s.url("/v1/orders/WEB-05"), ADMIN, None);
    let steps: Vec<&str> = o["timeline"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        steps,
        ["order.placed", "order.paid", "order.cancelled"],
        "{o}"
    );
    assert_eq!(
        all_ids(&c, &s, ADMIN, "status=confirmed", 100).len(),
        10,
        "the others are confirmed"
    );

    // A time range: from (inclusive) to (exclusive), by when placed.
    let at = |i: usize| placed[i]["created_at"].as_str().unwrap_or("").to_string();
    let range = format!("from={}&to={}", enc(&at(3)), enc(&at(6)));
    assert_eq!(all_ids(&c, &s, ADMIN, &range, 10), want(&[3, 4, 5]));
    let later = format!("from={}", enc(&at(10)));
    assert_eq!(all_ids(&c, &s, ADMIN, &later, 10), want(&[10, 11]));

    // A store token: its own store's, its location the default; another
    // store's is 403 before anything else is read.
    assert_eq!(
        all_ids(&c, &s, Some("store-rm"), "", 3),
        want(&[0, 3, 6, 9])
    );
    assert_eq!(
        all_ids(
            &c,
            &s,
            Some("store-rm"),
            "location=S_RM&status=confirmed",
            3
        ),
        want(&[0, 3, 6, 9])
    );
    let (st, v) = search(&c, &s, Some("store-rm"), "location=S_MI&limit=0");
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");

    // No token: 401 whatever the query.
    let (st, _) = search(&c, &s, None, "limit=0");
    assert_eq!(st, 401);
    // Bad input: 422, each named.
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=lost", "status"),
        ("email=not-an-email", "email"),
        ("phone=12", "phone"),
        ("phone=%2B39%20abc", "phone"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("id=a%20b", "id"),
        ("location=a%2Fb", "location"),
        ("cursor=abc", "cursor"),
        ("cursor=-5.WEB-01", "cursor"),
        ("cursor=1234567890123456.WEB-01", "cursor"),
    ] {
        let (st, v) = search(&c, &s, ADMIN, q);
        assert_eq!(st, 422, "{q}: {v}");
        let named: Vec<&str> = v["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(named, vec![field], "{q}: {v}");
    }
    // A customer that is not one is refused with the order, nothing held.
    for (customer, field) in [
        (json!("anna"), "customer"),
        (json!({"email": "anna@"}), "customer.email"),
        (json!({"phone": "call me"}), "customer.phone"),
        (json!({"email": 5}), "customer.email"),
    ] {
        let body = json!({"id": "BAD-1", "lines": [{"sku": "A", "qty": 1, "unit_price": "1.00"}],
            "delivery": {"type": "pickup", "location": "S_MI"}, "payment": {"provider": "sandbox"},
            "customer": customer});
        let (st, v) = call(
            &c,
            "POST",
            &s.url("/v1/orders"),
            ADMIN,
            Some(&body.to_string()),
        );
        assert_eq!(st, 422, "{v}");
        assert_eq!(v["errors"][0]["field"].as_str(), Some(field), "{v}");
    }
    let (st, _) = call(&c, "GET", &s.url("/v1/orders/BAD-1"), ADMIN, None);
    assert_eq!(st, 404);
}

/// Percent-encodes a date-time for a query (`+` and `:`).
fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// The export's lines, header first.
fn export(c: &Client, s: &Server, token: Option<&str>, query: &str) -> (u16, String) {
    let mut r = c.get(s.url(&format!("/v1/inventory/export?{query}")));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().expect("export");
    let st = resp.status().as_u16();
    if st == 200 {
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/csv"), "{ct}");
    }
    (st, resp.text().unwrap_or_default())
}

#[test]
fn an_export_lists_the_records_and_imports_back_unchanged() {
    let s = Server::start(&auth_with(STORES));
    let c = client();
    network(&c, &s);
    // Make the records differ: a hold, an adjustment, a safety stock.
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/reservations"),
        Some("web-checkout"),
        Some(&json!({"lines": [{"sku": "A", "qty": 3, "location": "S_MI"}]}).to_string()),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/inventory/S_RM/B"),
        ADMIN,
        Some(&json!({"on_hand": 7, "safety_stock": 2}).to_string()),
    );
    assert_eq!(st, 200, "{v}");

    let (st, all) = export(&c, &s, ADMIN, "");
    assert_eq!(st, 200, "{all}");
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(
        lines[0],
        "location,sku,on_hand,safety_stock,reserved,available,unsellable,in_transit,incoming,incoming_eta,backordered,version"
    );
    assert_eq!(lines.len(), 5, "{all}");
    // Each line is the record as the API reads it.
    for line in &lines[1..] {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 12, "{line}");
        let (_, r) = call(
            &c,
            "GET",
            &s.url(&format!("/v1/inventory/{}/{}", f[0], f[1])),
            ADMIN,
            None,
        );
        let n = |i: usize| f[i].parse::<i64>().expect("number");
        assert_eq!(
            (n(2), n(3), n(4), n(5), n(11)),
            (
                r["on_hand"].as_i64().unwrap_or(-1),
                r["safety_stock"].as_i64().unwrap_or(-1),
                r["reserved"].as_i64().unwrap_or(-1),
                r["available"].as_i64().unwrap_or(-1),
                r["version"].as_i64().unwrap_or(-1)
            ),
            "{line}: {r}"
        );
    }
    assert!(all.contains("\nS_MI,A,50,0,3,47,"), "{all}");
    assert!(all.contains("\nS_RM,B,7,2,0,5,"), "{all}");

    // One location; a store token its own (named), not another's nor the
    // network's; a channel token none.
    let (st, mi) = export(&c, &s, ADMIN, "location=S_MI&format=csv");
    assert_eq!(st, 200);
    assert_eq!(mi.lines().count(), 3, "{mi}");
    assert!(mi.lines().skip(1).all(|l| l.starts_with("S_MI,")), "{mi}");
    let (st, own) = export(&c, &s, Some("store-mi"), "location=S_MI");
    assert_eq!((st, own), (200, mi));
    for (token, q, want) in [
        (Some("store-mi"), "location=S_RM", 403),
        (Some("store-mi"), "", 403),
        (Some("web-checkout"), "location=S_MI", 403),
        (None, "", 401),
        (ADMIN, "location=NOWHERE", 404),
        (ADMIN, "location=a%20b", 422),
        (ADMIN, "format=xlsx", 422),
    ] {
        let (st, body) = export(&c, &s, token, q);
        assert_eq!(st, want, "{q}: {body}");
    }

    // Imported back: every figure as it was (a count equal to on_hand is
    // a count all the same; what it sets is what it found).
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("export.csv");
    std::fs::write(&file, &all).expect("write");
    let out = holdfast_import(
        &s.base,
        "admin-secret",
        &[file.to_str().expect("path")],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("imported 4 stock records"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, again) = export(&c, &s, ADMIN, "");
    let without_version = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_string())
            .collect()
    };
    assert_eq!(without_version(&again), without_version(&all));
}
