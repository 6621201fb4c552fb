//! HTTP as its RFCs say it, against the real binary (issue 17: found by
//! outside probes): percent-encoded paths, 405 with `Allow`, authorization
//! before validation, the bearer scheme's case, and clients that trickle.

mod common;

use common::{auth_with, call, call_full, client, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const STORE: &str =
    "[[auth.tokens]]\ntoken = \"store-s001\"\nrole = \"store\"\nlocation = \"S001\"\n";

fn secured() -> Server {
    Server::start(&format!("[auth]\n{}", auth_with(STORE)))
}

#[test]
fn percent_encoded_segments_name_the_same_resource() {
    let s = Server::start("");
    let c = client();
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/skus/FZ:P1"),
        None,
        Some(r#"{"name":"x"}"#),
    );
    assert_eq!(st, 200, "{v}");
    // encodeURIComponent("FZ:P1"), either case of hex.
    for path in ["/v1/skus/FZ%3AP1", "/v1/skus/FZ%3aP1", "/v1/skus/%46Z:P1"] {
        let (st, v) = call(&c, "GET", &s.url(path), None, None);
        assert_eq!((st, &v["sku"]), (200, &json!("FZ:P1")), "{path}: {v}");
    }
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/locations/S%3A1"),
        None,
        Some(r#"{"name":"s","kind":"store","lat":45.0,"lon":9.0,"priority":1}"#),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/inventory/S%3A1/FZ%3AP1"),
        None,
        Some(r#"{"on_hand":4}"#),
    );
    assert_eq!(
        (st, &v["sku"], &v["location"]),
        (200, &json!("FZ:P1"), &json!("S:1")),
        "{v}"
    );
    let (st, v) = call(&c, "GET", &s.url("/v1/inventory/S:1/FZ:P1"), None, None);
    assert_eq!((st, &v["on_hand"]), (200, &json!(4)), "{v}");
    let (st, v) = call(&c, "GET", &s.url("/v1/availability/FZ%3AP1"), None, None);
    assert_eq!((st, &v["available"]), (200, &json!(4)), "{v}");
    // What decodes to something that is no identifier, or does not
    // decode, is refused as an identifier: 422, never 5xx.
    for path in [
        "/v1/skus/FZ%2FP1",
        "/v1/skus/FZ%ZZ",
        "/v1/skus/%FF",
        "/v1/skus/a%20b",
    ] {
        let (st, v) = call(&c, "GET", &s.url(path), None, None);
        assert_eq!(
            (st, &v["code"]),
            (422, &json!("validation_failed")),
            "{path}: {v}"
        );
    }
}

#[test]
fn a_405_names_the_allowed_methods() {
    let s = Server::start("");
    let c = client();
    for (method, path, allow) in [
        ("DELETE", "/v1/skus/A1", "GET, HEAD, PUT"),
        ("POST", "/v1/inventory/S1/A1", "GET, HEAD, PUT"),
        ("GET", "/v1/inventory/batch", "POST"),
        ("PUT", "/v1/reservations", "POST"),
        ("TRACE", "/v1/feed", "GET, HEAD"),
        ("POST", "/v1/feed", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/v1/openapi.json", "GET, HEAD"),
        ("PATCH", "/v1/orders/O-1", "GET, HEAD"),
    ] {
        let (st, h, v) = call_full(&c, method, &s.url(path), None, None, &[]);
        assert_eq!(st, 405, "{method} {path}: {v}");
        assert_eq!(
            h.get("allow").and_then(|a| a.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        assert_eq!(v["code"], "method_not_allowed", "{method} {path}: {v}");
    }
    // HEAD is GET without a body.
    let r = c.head(s.url("/healthz")).send().expect("head");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().expect("body"), "");
    // The feed over plain GET still asks for the upgrade.
    assert_eq!(call(&c, "GET", &s.url("/v1/feed"), None, None).0, 426);
}

/// The served document and the server agree: every documented operation
/// reaches a handler (never "no such endpoint", never 405), and every
/// other method on a documented path is 405 naming exactly the documented
/// ones (HEAD beside GET).
#[test]
fn every_documented_operation_is_served_and_no_other() {
    let s = Server::start("");
    let c = client();
    let (st, doc) = call(&c, "GET", &s.url("/v1/openapi.json"), None, None);
    assert_eq!(st, 200);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 30, "{}", paths.len());
    for (template, ops) in paths {
        let path = template.replace("{shipment}", "1").replace(['{', '}'], "");
        let mut documented: Vec<String> = ops
            .as_object()
            .expect("operations")
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for method in &documented {
            let (st, v) = call(&c, method, &s.url(&path), None, Some("{}"));
            let unrouted = st == 405
                || v["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("no such endpoint"));
            assert!(!unrouted, "{method} {path}: {st} {v}");
        }
        // A method no path answers.
        let (st, h, v) = call_full(&c, "PATCH", &s.url(&path), None, None, &[]);
        assert_eq!(st, 405, "PATCH {path}: {v}");
        let order = ["GET", "HEAD", "PUT", "POST", "DELETE"];
        if documented.iter().any(|m| m == "GET") {
            documented.push("HEAD".into());
        }
        documented.sort_by_key(|m| order.iter().position(|o| o == m));
        assert_eq!(
            h.get("allow").and_then(|a| a.to_str().ok()),
            Some(documented.join(", ").as_str()),
            "{path}"
        );
    }
}

#[test]
fn authorization_comes_before_validation() {
    let s = secured();
    let c = client();
    let bad = Some("{not json");
    let invalid = Some(r#"{"items":[{"location":"S001","sku":"A 1","on_hand":-1}]}"#);
    for (token, method, path, body) in [
        // A channel token and an admin-only batch, whatever the body.
        ("web-checkout", "POST", "/v1/inventory/batch", bad),
        ("web-checkout", "POST", "/v1/inventory/batch", invalid),
        ("web-checkout", "POST", "/v1/inventory/batch", None),
        ("web-checkout", "PUT", "/v1/skus/A%201", bad),
        ("web-checkout", "PUT", "/v1/locations/S001", invalid),
        // A store token's batch naming another location.
        (
            "store-s001",
            "POST",
            "/v1/inventory/batch",
            Some(r#"{"items":[{"location":"S002","sku":"A 1","on_hand":"x"}]}"#),
        ),
        // Inventory of another (or no valid) location, bad bodies.
        ("store-s001", "PUT", "/v1/inventory/S002/A%201", bad),
        ("store-s001", "PUT", "/v1/inventory/S%20002/A1", bad),
        ("web-checkout", "PUT", "/v1/inventory/S001/A1", invalid),
        (
            "store-s001",
            "POST",
            "/v1/inventory/S002/A1/adjustments",
            bad,
        ),
        ("store-s001", "GET", "/v1/inventory/S002/A%201", None),
        // Channel-only reads and writes with a store token.
        ("store-s001", "GET", "/v1/availability/A%201", None),
        ("store-s001", "POST", "/v1/reservations", bad),
        ("store-s001", "POST", "/v1/sourcing/plan", bad),
        ("store-s001", "GET", "/v1/reservations/bad%20id", None),
        ("store-s001", "POST", "/v1/orders", bad),
    ] {
        let (st, v) = call(&c, method, &s.url(path), Some(token), body);
        assert_eq!(
            (st, v["code"].as_str()),
            (403, Some("forbidden")),
            "{token} {method} {path} {body:?}: {v}"
        );
    }
    // An admin with the same bad inputs is told what is wrong.
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/inventory/batch"),
        Some("admin-secret"),
        invalid,
    );
    assert_eq!(st, 422, "{v}");
    // No token at all comes first of everything.
    let (st, _) = call(&c, "POST", &s.url("/v1/inventory/batch"), None, bad);
    assert_eq!(st, 401);
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let s = secured();
    let c = client();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (st, _, v) = call_full(
            &c,
            "GET",
            &s.url("/v1/locations"),
            None,
            None,
            &[("Authorization", &format!("{scheme} admin-secret"))],
        );
        assert_eq!(st, 200, "{scheme}: {v}");
    }
    for value in [
        "Basic admin-secret",
        "Bearer",
        "admin-secret",
        "Bearer wrong",
    ] {
        let (st, _, v) = call_full(
            &c,
            "GET",
            &s.url("/v1/locations"),
            None,
            None,
            &[("Authorization", value)],
        );
        assert_eq!(st, 401, "{value}: {v}");
    }
}

/// Waits until the server closes `conn` (EOF or reset), writing `trickle`
/// a byte a second meanwhile; returns how long it took, or `None` if it is
/// still open after `within`.
fn closed_within(mut conn: TcpStream, trickle: &[u8], within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let mut answer = Vec::new();
    let mut next = trickle.iter();
    while t0.elapsed() < within {
        if let Some(b) = next.next() {
            if conn.write_all(&[*b]).is_err() {
                return Some(t0.elapsed());
            }
        }
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            match conn.read(&mut buf) {
                Ok(0) => return Some(t0.elapsed()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(t0.elapsed()),
            }
        }
    }
    None
}

#[test]
fn clients_that_trickle_are_cut_off() {
    let s = Server::start("");
    let bound = Duration::from_secs(holdfast::limits::REQUEST_HEAD_READ_S + 4);
    let open = || TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    let endless = vec![b'a'; 64];
    let threads: Vec<_> = [
        // Headers that never end.
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        // A body that never comes whole.
        "POST /v1/inventory/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        // Nothing at all after connecting.
        "",
    ]
    .into_iter()
    .enumerate()
    .map(|(i, head)| {
        let mut conn = open();
        conn.write_all(head.as_bytes()).expect("write");
        let trickle = if head.is_empty() { Vec::new() } else { endless.clone() };
        std::thread::spawn(move || (i, closed_within(conn, &trickle, bound)))
    })
    .collect();
    for t in threads {
        let (i, closed) = t.join().expect("thread");
        assert!(
            closed.is_some(),
            "connection {i} still open after {bound:?}"
        );
    }
    // The server still serves.
    let (st, _) = call(&client(), "GET", &s.url("/healthz"), None, None);
    assert_eq!(st, 200);
}

#[test]
fn the_bulk_import_s_path_allows_the_methods_of_both_its_resources() {
    // `/v1/skus/batch` is the bulk import (POST) and SKU `batch` (GET,
    // PUT): a 405 there names all of them (schemathesis: an OPTIONS
    // answered `Allow: GET, HEAD, PUT`, the document says POST).
    let s = Server::start("");
    let c = client();
    for method in ["OPTIONS", "DELETE", "PATCH"] {
        let (st, h, v) = call_full(&c, method, &s.url("/v1/skus/batch"), None, None, &[]);
        assert_eq!(st, 405, "{method}: {v}");
        assert_eq!(
            h.get("allow").and_then(|a| a.to_str().ok()),
            Some("GET, HEAD, PUT, POST"),
            "{method}"
        );
    }
    // Each of them still does what it did.
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/skus/batch"),
        None,
        Some(r#"{"name":"b"}"#),
    );
    assert_eq!((st, &v["sku"]), (200, &json!("batch")), "{v}");
    let (st, v) = call(&c, "GET", &s.url("/v1/skus/batch"), None, None);
    assert_eq!((st, &v["name"]), (200, &json!("b")), "{v}");
    let body = r#"{"items":[{"sku":"A1","name":"a"}]}"#;
    let (st, v) = call(&c, "POST", &s.url("/v1/skus/batch"), None, Some(body));
    assert_eq!((st, &v["applied"]), (200, &json!(1)), "{v}");
}

#[test]
fn a_single_node_s_cluster_view_is_404_to_get_and_405_to_the_rest() {
    // The document lists GET /v1/cluster (a single node answers 404): any
    // other method is 405, as everywhere (schemathesis: TRACE got 404).
    let s = secured();
    let c = client();
    let (st, v) = call(&c, "GET", &s.url("/v1/cluster"), Some("admin-secret"), None);
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")), "{v}");
    assert_eq!(call(&c, "GET", &s.url("/v1/cluster"), None, None).0, 401);
    for method in ["TRACE", "POST", "DELETE", "OPTIONS"] {
        let (st, h, v) = call_full(
            &c,
            method,
            &s.url("/v1/cluster"),
            Some("admin-secret"),
            None,
            &[],
        );
        assert_eq!(st, 405, "{method}: {v}");
        assert_eq!(
            h.get("allow").and_then(|a| a.to_str().ok()),
            Some("GET, HEAD"),
            "{method}"
        );
    }
}

#[test]
fn an_integer_may_be_written_with_a_zero_fraction() {
    // JSON has numbers: 850.0 and 8.5e2 are the integer 850, as JSON
    // Schema's `integer` reads them (schemathesis sent `"ttl_s": 29239.0`
    // and got 422).
    let s = Server::start("");
    let c = client();
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/skus/A1"),
        None,
        Some(r#"{"name":"x","weight_g":850.0,"max_qty_per_reservation":8.5e2}"#),
    );
    assert_eq!(
        (st, &v["weight_g"], &v["max_qty_per_reservation"]),
        (200, &json!(850), &json!(850)),
        "{v}"
    );
    let loc = r#"{"name":"s","kind":"store","lat":45,"lon":9,"priority":1.0,"daily_capacity":2e2}"#;
    let (st, v) = call(&c, "PUT", &s.url("/v1/locations/S1"), None, Some(loc));
    assert_eq!((st, &v["daily_capacity"]), (200, &json!(200)), "{v}");
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/inventory/S1/A1"),
        None,
        Some(r#"{"on_hand":1e1,"safety_stock":0.0}"#),
    );
    assert_eq!((st, &v["on_hand"]), (200, &json!(10)), "{v}");
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/reservations"),
        None,
        Some(r#"{"lines":[{"sku":"A1","qty":2.0,"location":"S1"}],"ttl_s":6e2}"#),
    );
    assert_eq!((st, &v["lines"][0]["qty"]), (201, &json!(2)), "{v}");
    // A fraction is not an integer; a number past the range is past it.
    for body in [
        r#"{"on_hand":1.5}"#,
        r#"{"on_hand":1e10}"#,
        r#"{"on_hand":-1.0}"#,
    ] {
        let (st, v) = call(&c, "PUT", &s.url("/v1/inventory/S1/A1"), None, Some(body));
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some("on_hand")),
            "{body}: {v}"
        );
    }
}

#[test]
fn an_address_field_is_counted_in_characters() {
    // "at most 100 characters": 60 accented letters are 120 bytes, and
    // were refused as "longer than 100 characters".
    let s = Server::start("");
    let c = client();
    let location = |name: &str| {
        json!({"name": "s", "kind": "store", "lat": 45.0, "lon": 9.0, "address": {"name": name,
            "street": "Via Dante 1", "city": "Milano", "postal_code": "20121", "country": "IT",
            "phone": "+39021234567"}})
        .to_string()
    };
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/locations/S1"),
        None,
        Some(&location(&"é".repeat(100))),
    );
    assert_eq!(
        (st, v["address"]["name"].as_str().map(|n| n.chars().count())),
        (200, Some(100)),
        "{v}"
    );
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/locations/S1"),
        None,
        Some(&location(&"é".repeat(101))),
    );
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("address.name")),
        "{v}"
    );
}

#[test]
fn the_feed_s_query_is_percent_decoded() {
    // `?location=S%3A1` is `S:1` (encodeURIComponent), as in a path: it
    // was looked up as `S%3A1` and answered 404. The token too.
    let s = secured();
    let c = client();
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/locations/S:1"),
        Some("admin-secret"),
        Some(r#"{"name":"s","kind":"store","lat":45.0,"lon":9.0}"#),
    );
    assert_eq!(st, 200, "{v}");
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    for query in [
        "location=S:1&token=admin-secret",
        "location=S%3A1&token=admin-secret",
        "location=S%3a1&token=admin%2Dsecret",
    ] {
        let (st, _, v) = call_full(
            &c,
            "GET",
            &s.url(&format!("/v1/feed?{query}")),
            None,
            None,
            &upgrade,
        );
        assert_eq!(st, 101, "{query}: {v}");
    }
    let (st, _, v) = call_full(
        &c,
        "GET",
        &s.url("/v1/feed?location=S%3A2&token=admin-secret"),
        None,
        None,
        &upgrade,
    );
    assert_eq!(st, 404, "{v}");
}
