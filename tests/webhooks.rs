//! Webhook subscriptions (`/v1/webhooks`, api.md Webhooks) of a real
//! server delivering to a receiver this test runs: signed as Standard
//! Webhooks says (checked here with its reference library, and against
//! our own reading of the specification), in order, retried while the
//! receiver fails and caught up once it is back, sent again from the
//! journaled mark after kill -9 (at least once, in order), replayed on
//! demand, silent once deleted; each role's reach and bad input.

mod common;

use common::{auth_with, call, client, hold, seed, step, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STORE: &str =
    "[[auth.tokens]]\ntoken = \"store-s001\"\nrole = \"store\"\nlocation = \"S001\"\n";
const ADMIN: Option<&str> = Some("admin-secret");
const CHANNEL: Option<&str> = Some("web-checkout");

/// One request the receiver took: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Taken {
    headers: Vec<(String, String)>,
    body: String,
}

impl Taken {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn event(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// The events of a batch's body `{"events":[...]}`.
    fn batch(&self) -> Vec<Value> {
        self.event()["events"]
            .as_array()
            .expect("a batch: {\"events\":[...]}")
            .clone()
    }
}

/// The events' numbers of what a receiver took, in the order taken.
fn numbers(taken: &[Taken]) -> Vec<u64> {
    taken
        .iter()
        .map(|t| t.event()["id"].as_u64().expect("id"))
        .collect()
}

/// A receiver on a port of its own: it answers `status` (200 while it is
/// up) and keeps what it took.
struct Receiver {
    port: u16,
    status: Arc<AtomicU16>,
    taken: Arc<Mutex<Vec<Taken>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let status = Arc::new(AtomicU16::new(200));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let (st, tk) = (status.clone(), taken.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (st, tk) = (st.clone(), tk.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().expect("clone"));
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() || line.is_empty() {
                        return;
                    }
                    let mut headers = Vec::new();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.trim().split_once(':') {
                            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                            if k == "content-length" {
                                len = v.parse().unwrap_or(0);
                            }
                            headers.push((k, v));
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    // Where a 301 sends its client: taken, whatever came.
                    let moved = line.contains(" /moved ");
                    let status = if moved {
                        200
                    } else {
                        st.load(Ordering::SeqCst)
                    };
                    if status == 200 {
                        let body = String::from_utf8(body).expect("utf-8");
                        headers.push(("request-line".into(), line.trim().to_string()));
                        tk.lock().expect("lock").push(Taken { headers, body });
                    }
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nlocation: /moved\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                });
            }
        });
        Receiver {
            port,
            status,
            taken,
        }
    }

    fn url(&self) -> String {
        format!("http://localhost:{}/hooks/holdfast", self.port)
    }

    fn taken(&self) -> Vec<Taken> {
        self.taken.lock().expect("lock").clone()
    }

    /// Waits (up to 60 s) until it has taken the events `ids`.
    fn wait_for(&self, ids: &[u64]) -> Vec<Taken> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.taken();
            let seen: Vec<u64> = got
                .iter()
                .map(|t| t.event()["id"].as_u64().unwrap_or(0))
                .collect();
            if ids.iter().all(|i| seen.contains(i)) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {ids:?}, took {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The numbers of the events of `types` after `after`, as the API reads them.
fn published(c: &reqwest::blocking::Client, s: &Server, after: u64, types: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let q = format!("/v1/events?after={after}&types={types}&limit=1000");
        let (st, v) = call(c, "GET", &s.url(&q), ADMIN, None);
        assert_eq!(st, 200, "{v}");
        let next = v["next_after"].as_u64().expect("next_after");
        out.extend(
            v["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["id"].as_u64().expect("id")),
        );
        if next == after {
            return out;
        }
        after = next;
    }
}

fn subscribe(c: &reqwest::blocking::Client, s: &Server, url: &str, types: &[&str]) -> Value {
    let body = json!({"url": url, "types": types});
    let (st, v) = call(
        c,
        "POST",
        &s.url("/v1/webhooks"),
        ADMIN,
        Some(&body.to_string()),
    );
    assert_eq!(st, 201, "{v}");
    v
}

/// A subscription's `GET .../deliveries`, which must answer 200.
fn deliveries(c: &reqwest::blocking::Client, s: &Server, id: &str) -> Value {
    let (st, v) = call(
        c,
        "GET",
        &s.url(&format!("/v1/webhooks/{id}/deliveries")),
        ADMIN,
        None,
    );
    assert_eq!(st, 200, "{v}");
    v
}

/// Checks a delivery's signature as the specification reads: `v1,` and
/// the base64 HMAC-SHA256 of `id.timestamp.body` keyed with the secret's
/// base64 after `whsec_`.
fn assert_signed(t: &Taken, secret: &str) {
    use base64::Engine as _;
    use hmac::Mac;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_"))
        .expect("base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    let signed = format!(
        "{}.{}.{}",
        t.header("webhook-id"),
        t.header("webhook-timestamp"),
        t.body
    );
    mac.update(signed.as_bytes());
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(t.header("webhook-signature"), want);
    let ts: i64 = t.header("webhook-timestamp").parse().expect("seconds");
    assert!(
        (ts - common::now_ms() / 1000).abs() < 300,
        "a timestamp of now: {ts}"
    );
}

/// The Standard Webhooks reference library (`standardwebhooks` on PyPI,
/// installed by .ci/run beside schemathesis) verifies `t`: its verdict.
/// `None` where it is not installed (never under CI).
fn reference_verifies(t: &Taken, secret: &str) -> Option<bool> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/ci-venv/bin/python3");
    let python = if std::path::Path::new(venv).exists() {
        venv
    } else {
        "python3"
    };
    let script = "import json,sys\nfrom standardwebhooks.webhooks import Webhook\nd=json.load(sys.stdin)\nWebhook(d['secret']).verify(d['body'], d['headers'])\nprint('verified')\n";
    let has = std::process::Command::new(python)
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            std::env::var("CI").is_err(),
            "CI installs standardwebhooks (.ci/run)"
        );
        return None;
    }
    let headers: serde_json::Map<String, Value> = t
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let input = json!({"secret": secret, "body": t.body, "headers": headers}).to_string();
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python ran");
    Some(String::from_utf8_lossy(&out.stdout).contains("verified"))
}

#[test]
fn deliveries_are_signed_in_order_retried_and_caught_up() {
    let s = Server::start(&auth_with(STORE));
    let c = client();
    seed(&c, &s, ADMIN, 1, 1, 100);
    let r = Receiver::start();
    let w = subscribe(&c, &s, &r.url(), &["reservation.*", "stock.out"]);
    let (id, secret) = (
        w["id"].as_str().expect("id").to_string(),
        w["secret"].as_str().expect("secret").to_string(),
    );
    assert!(secret.starts_with("whsec_"), "{w}");
    assert_eq!(w["status"], "active");
    let start = w["delivered"].as_u64().expect("delivered");
    assert!(start > 0, "the seed's events are before it: {w}");

    // Deliveries in order, each signed.
    for _ in 0..3 {
        let id = hold(&c, &s, "A0", "S000", 1);
        step(&c, &s, &id, "release");
    }
    let want = published(&c, &s, start, "reservation.*,stock.out");
    assert_eq!(want.len(), 6);
    let got = r.wait_for(&want);
    let ids = numbers(&got);
    assert_eq!(ids, want, "in order, once each while nothing failed");
    for t in &got {
        assert_signed(t, &secret);
        assert_eq!(t.header("webhook-id"), format!("evt_{}", t.event()["id"]));
        assert_eq!(t.header("content-type"), "application/json");
    }
    assert_eq!(got[0].event()["type"], "reservation.held");
    assert_eq!(got[1].event()["type"], "reservation.released");
    assert_eq!(got[0].event()["data"]["lines"][0]["qty"], 1);
    if let Some(ok) = reference_verifies(&got[0], &secret) {
        assert!(ok, "the reference library verifies our signature");
        let mut forged = got[0].clone();
        forged.body = forged.body.replace("\"qty\":1", "\"qty\":9");
        assert_eq!(
            reference_verifies(&forged, &secret),
            Some(false),
            "and refuses a forged body"
        );
    }

    // The receiver fails: the same event is tried again, later ones wait.
    r.status.store(500, Ordering::SeqCst);
    let before = r.taken().len();
    let held = hold(&c, &s, "A0", "S000", 100); // out of stock: reservation.held, stock.out
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempts = loop {
        let v = deliveries(&c, &s, &id);
        let failed: Vec<Value> = v["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .filter(|a| a["status"] == 500)
            .cloned()
            .collect();
        if failed.len() >= 2 {
            break failed;
        }
        assert!(Instant::now() < deadline, "no retries seen: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        attempts[0]["event"], attempts[1]["event"],
        "the same event again: {attempts:?}"
    );
    assert!(
        attempts[0]["attempt"].as_u64() > attempts[1]["attempt"].as_u64(),
        "newest first"
    );
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(r.taken().len(), before, "nothing taken while it fails");
    // Back up: everything caught up, in order.
    r.status.store(200, Ordering::SeqCst);
    step(&c, &s, &held, "release");
    let want = published(&c, &s, start, "reservation.*,stock.out");
    let got = r.wait_for(&want);
    let ids = numbers(&got);
    assert_eq!(ids, want);
    let types: Vec<String> = got[6..]
        .iter()
        .map(|t| t.event()["type"].as_str().unwrap_or("?").to_string())
        .collect();
    // Out at its location, then network-wide (its only one).
    assert_eq!(
        types,
        [
            "reservation.held",
            "stock.out",
            "stock.out",
            "reservation.released"
        ]
    );

    // Listing, reading, the metrics.
    let (st, v) = call(&c, "GET", &s.url("/v1/webhooks"), ADMIN, None);
    assert_eq!(
        (st, v["webhooks"][0]["id"].as_str()),
        (200, Some(id.as_str())),
        "{v}"
    );
    let (_, m) = call(&c, "GET", &s.url("/metrics"), None, None);
    let m = m.as_str().unwrap_or_default().to_string();
    let delivered = format!(
        "holdfast_webhook_deliveries_total{{webhook=\"{id}\",outcome=\"delivered\"}} {}",
        want.len()
    );
    assert!(m.contains(&delivered), "{delivered} in {m}");
    assert!(m.contains(&format!(
        "holdfast_webhook_deliveries_total{{webhook=\"{id}\",outcome=\"failed\"}}"
    )));

    // A replay sends again what came after the number named, in order.
    let (st, v) = call(
        &c,
        "POST",
        &s.url(&format!("/v1/webhooks/{id}/replay")),
        ADMIN,
        Some(&json!({"after": want[6]}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.taken().len() < want.len() + want[7..].len() {
        assert!(Instant::now() < deadline, "no replay");
        std::thread::sleep(Duration::from_millis(50));
    }
    let again: Vec<u64> = r.taken()[want.len()..]
        .iter()
        .map(|t| t.event()["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(again, want[7..].to_vec());

    // Deleted: nothing more.
    let (st, _) = call(
        &c,
        "DELETE",
        &s.url(&format!("/v1/webhooks/{id}")),
        ADMIN,
        None,
    );
    assert_eq!(st, 204);
    let (st, _) = call(
        &c,
        "GET",
        &s.url(&format!("/v1/webhooks/{id}")),
        ADMIN,
        None,
    );
    assert_eq!(st, 404);
    let n = r.taken().len();
    hold(&c, &s, "A0", "S000", 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.taken().len(), n, "a deleted subscription hears nothing");
}

#[test]
fn only_an_admin_subscribes_and_bad_input_is_named() {
    let s = Server::start(&auth_with(STORE));
    let c = client();
    let ok = json!({"url": "https://erp.example.com/hooks", "types": ["order.*"]});
    for token in [CHANNEL, Some("store-s001")] {
        let (st, _) = call(
            &c,
            "POST",
            &s.url("/v1/webhooks"),
            token,
            Some(&ok.to_string()),
        );
        assert_eq!(st, 403);
        let (st, _) = call(&c, "GET", &s.url("/v1/webhooks"), token, None);
        assert_eq!(st, 403);
    }
    let (st, _) = call(&c, "POST", &s.url("/v1/webhooks"), None, Some("{"));
    assert_eq!(st, 401, "authorization before validation");
    for (body, field) in [
        (json!({"url": "ftp://x.example.com", "types": ["*"]}), "url"),
        (json!({"url": "http://", "types": ["*"]}), "url"),
        (
            json!({"url": "http://a.example.com:70000/", "types": ["*"]}),
            "url",
        ),
        (json!({"url": "http://a.example.com", "types": []}), "types"),
        (
            json!({"url": "http://a.example.com", "types": ["nope"]}),
            "types[0]",
        ),
        (
            json!({"url": "http://a.example.com", "types": ["*"], "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": "http://a.example.com", "types": ["*"], "secret": "whsec_AAAA"}),
            "secret",
        ),
        (
            json!({"url": "http://a.example.com", "types": ["*"], "batch": 0}),
            "batch",
        ),
        (
            json!({"url": "http://a.example.com", "types": ["*"], "batch": 101}),
            "batch",
        ),
        (
            json!({"url": "http://a.example.com", "types": ["*"], "batch": 2.5}),
            "batch",
        ),
        (
            json!({"url": "http://a.example.com", "types": ["*"], "batch": "10"}),
            "batch",
        ),
    ] {
        let (st, v) = call(
            &c,
            "POST",
            &s.url("/v1/webhooks"),
            ADMIN,
            Some(&body.to_string()),
        );
        assert_eq!(st, 422, "{body}: {v}");
        assert_eq!(v["errors"][0]["field"], field, "{body}: {v}");
    }
    let (_, v) = call(&c, "GET", &s.url("/v1/webhooks"), ADMIN, None);
    assert_eq!(v["webhooks"], json!([]), "nothing half made");
    // A secret of one's own is kept; the bound on subscriptions.
    let mine = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G";
    let body = json!({"url": "http://10.0.0.1:9/x?a=1", "types": ["stock.*", "order.placed"], "secret": mine});
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/webhooks"),
        ADMIN,
        Some(&body.to_string()),
    );
    assert_eq!((st, v["secret"].as_str()), (201, Some(mine)), "{v}");
    assert_eq!(v["batch"], 1, "one event a request unless asked: {v}");
    for _ in 1..64 {
        let (st, v) = call(
            &c,
            "POST",
            &s.url("/v1/webhooks"),
            ADMIN,
            Some(&ok.to_string()),
        );
        assert_eq!(st, 201, "{v}");
    }
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/webhooks"),
        ADMIN,
        Some(&ok.to_string()),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("too_many_webhooks")),
        "{v}"
    );
    let (st, _) = call(
        &c,
        "GET",
        &s.url("/v1/webhooks/wh_nope/deliveries"),
        ADMIN,
        None,
    );
    assert_eq!(st, 404);
    let (st, _) = call(
        &c,
        "POST",
        &s.url("/v1/webhooks/wh_nope/replay"),
        ADMIN,
        Some("{\"after\":1}"),
    );
    assert_eq!(st, 404);
}

#[test]
fn kill_9_sends_again_from_the_mark_in_order_at_least_once() {
    let mut s = Server::start(&auth_with(STORE));
    let c = client();
    seed(&c, &s, ADMIN, 1, 1, 1_000);
    let r = Receiver::start();
    let w = subscribe(&c, &s, &r.url(), &["reservation.held"]);
    let start = w["delivered"].as_u64().expect("delivered");
    for _ in 0..20 {
        hold(&c, &s, "A0", "S000", 1);
    }
    // Killed while delivering (some taken, the mark a second behind).
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.taken().len() < 5 {
        assert!(Instant::now() < deadline, "nothing delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill_and_restart(&auth_with(STORE));
    for _ in 0..10 {
        hold(&c, &s, "A0", "S000", 1);
    }
    let want = published(&c, &s, start, "reservation.held");
    assert_eq!(want.len(), 30);
    let got = r.wait_for(&want);
    let ids = numbers(&got);
    // Every one at least once; each run of deliveries in order (a restart
    // goes back to the mark, never past an event not acknowledged).
    let mut firsts: Vec<u64> = Vec::new();
    for i in &ids {
        if !firsts.contains(i) {
            firsts.push(*i);
        }
    }
    assert_eq!(firsts, want, "first deliveries in order: {ids:?}");
    for (i, pair) in ids.windows(2).enumerate() {
        if pair[1] <= pair[0] {
            // Back to the mark: to an event taken already, never one ahead.
            assert!(ids[..=i].contains(&pair[1]), "{ids:?}");
        }
    }
    let (st, v) = call(&c, "GET", &s.url("/v1/webhooks"), ADMIN, None);
    assert_eq!(st, 200);
    assert_eq!(
        v["webhooks"][0]["url"],
        r.url(),
        "the subscription survives kill -9"
    );
}

#[test]
fn a_redirect_is_a_failure_never_an_acknowledgement() {
    // Followed, a 301 made the POST a GET of /moved, whose 200 counted as
    // the event delivered: it never was.
    let s = Server::start(&auth_with(STORE));
    let c = client();
    seed(&c, &s, ADMIN, 1, 1, 10);
    let r = Receiver::start();
    r.status.store(301, Ordering::SeqCst);
    let w = subscribe(&c, &s, &r.url(), &["reservation.held"]);
    let id = w["id"].as_str().expect("id").to_string();
    hold(&c, &s, "A0", "S000", 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = deliveries(&c, &s, &id);
        let attempts = v["deliveries"].as_array().expect("deliveries").clone();
        if attempts.len() >= 2 {
            assert!(
                attempts
                    .iter()
                    .all(|a| a["status"] == 301 && a["ok"] == false),
                "{v}"
            );
            assert_eq!(v["delivered"], w["delivered"], "nothing acknowledged: {v}");
            break;
        }
        assert!(Instant::now() < deadline, "no attempts: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        r.taken().is_empty(),
        "the redirect was not followed: {:?}",
        r.taken()
    );
    // The receiver back: delivered, by POST, to where it was sent.
    r.status.store(200, Ordering::SeqCst);
    let want = published(
        &c,
        &s,
        w["delivered"].as_u64().expect("n"),
        "reservation.held",
    );
    let got = r.wait_for(&want);
    assert_eq!(
        got[0].header("request-line"),
        "POST /hooks/holdfast HTTP/1.1"
    );
}

#[test]
fn a_batch_subscription_takes_its_events_many_a_request_in_order() {
    let s = Server::start(&auth_with(STORE));
    let c = client();
    seed(&c, &s, ADMIN, 1, 1, 1_000);
    let r = Receiver::start();
    let body = json!({"url": r.url(), "types": ["reservation.*"], "batch": 4});
    let (st, w) = call(
        &c,
        "POST",
        &s.url("/v1/webhooks"),
        ADMIN,
        Some(&body.to_string()),
    );
    assert_eq!((st, w["batch"].as_u64()), (201, Some(4)), "{w}");
    let (id, secret) = (
        w["id"].as_str().expect("id").to_string(),
        w["secret"].as_str().expect("secret").to_string(),
    );
    let start = w["delivered"].as_u64().expect("delivered");
    // The receiver is down while they are published: they wait, then go
    // four a request at most.
    r.status.store(503, Ordering::SeqCst);
    for _ in 0..5 {
        let h = hold(&c, &s, "A0", "S000", 1);
        step(&c, &s, &h, "release");
    }
    let want = published(&c, &s, start, "reservation.*");
    assert_eq!(want.len(), 10);
    // Up once it was refused (the events wait meanwhile).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !deliveries(&c, &s, &id)["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .any(|a| a["status"] == 503)
    {
        assert!(Instant::now() < deadline, "no attempt refused");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    r.status.store(200, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = r.taken();
        if got.iter().map(|t| t.batch().len()).sum::<usize>() >= want.len() {
            break got;
        }
        assert!(Instant::now() < deadline, "took {got:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let ids: Vec<u64> = got
        .iter()
        .flat_map(|t| t.batch())
        .map(|e| e["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, want, "every event once, in order");
    assert!(
        got.len() >= 3,
        "ten events, four a request at most: {got:?}"
    );
    assert!(
        got.iter().any(|t| t.batch().len() > 1),
        "the backlog went several a request: {got:?}"
    );
    for t in &got {
        let batch = t.batch();
        assert!((1..=4).contains(&batch.len()), "{}", t.body);
        let (first, last) = (&batch[0]["id"], &batch[batch.len() - 1]["id"]);
        let msg = if batch.len() == 1 {
            format!("evt_{first}")
        } else {
            format!("evt_{first}-{last}")
        };
        assert_eq!(t.header("webhook-id"), msg);
        assert_signed(t, &secret);
        assert!(batch.iter().all(|e| e["type"]
            .as_str()
            .is_some_and(|k| k.starts_with("reservation."))
            && e["at"].is_string()
            && e["data"].is_object()));
    }
    if let Some(ok) = reference_verifies(&got[0], &secret) {
        assert!(ok, "the reference library verifies a batch's signature");
    }
    // Its deliveries say how many each request carried.
    let v = deliveries(&c, &s, &id);
    let attempts = v["deliveries"].as_array().expect("deliveries");
    let carried: u64 = attempts
        .iter()
        .filter(|a| a["ok"] == true)
        .map(|a| a["events"].as_u64().expect("events"))
        .sum();
    assert_eq!(carried, want.len() as u64, "{v}");
    assert!(
        attempts
            .iter()
            .any(|a| a["status"] == 503 && a["events"].as_u64() >= Some(1)),
        "the failed attempts are shown too: {v}"
    );
}

/// The niceness of each of process `pid`'s threads named `name`
/// (/proc/PID/task/TID/stat: the 19th field, counted past the name).
fn niceness(pid: u32, name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = t.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let nice = after_name.split_whitespace().nth(16).expect("nice field");
        out.push(nice.parse().expect("a number"));
    }
    out
}

#[test]
fn deliveries_run_below_the_requests_cpu_priority() {
    let s = Server::start(&auth_with(STORE));
    let pid = s.child.id();
    let background = niceness(pid, "background");
    let http = niceness(pid, "http");
    assert!(
        !background.is_empty() && !http.is_empty(),
        "both runtimes run"
    );
    // Niceness 10, below the requests' (a test run itself under a
    // niceness past 10 leaves both where they began).
    let requests = *http.iter().max().expect("http");
    assert!(
        background.iter().all(|n| *n >= 10 && *n >= requests),
        "background {background:?} against requests {http:?}"
    );
    assert!(
        requests >= 10 || background.iter().all(|n| *n > requests),
        "background {background:?} below requests {http:?}"
    );
}
