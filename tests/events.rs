//! The published events (`GET /v1/events`, api.md Events) of a real
//! server: every committed change that matters outside, numbered in
//! commit order with no gap; types and pages; a store token's reach;
//! availability crossing zero and a SKU's thresholds, per location and
//! network-wide; bad queries; kill -9 (through the journal and through
//! snapshots): the same numbers for the same events, then on with no gap
//! and nothing twice; a number dropped is 410; the Server-Sent Events
//! stream resumes after Last-Event-ID.

mod common;

use common::{auth_with, call, call_full, client, hold, seed, step, Server};
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

const STORES: &str =
    "[[auth.tokens]]\ntoken = \"store-s001\"\nrole = \"store\"\nlocation = \"S001\"\n";
const ADMIN: Option<&str> = Some("admin-secret");
const CHANNEL: Option<&str> = Some("web-checkout");

fn config(extra: &str) -> String {
    format!("{}\n{extra}", auth_with(STORES))
}

/// One page of events.
fn page(
    c: &reqwest::blocking::Client,
    s: &Server,
    token: Option<&str>,
    query: &str,
) -> (u16, Value) {
    call(c, "GET", &s.url(&format!("/v1/events{query}")), token, None)
}

/// Every event after `after` (`extra`: more query), page by page.
fn all_after(
    c: &reqwest::blocking::Client,
    s: &Server,
    token: Option<&str>,
    mut after: u64,
    extra: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let (st, v) = page(c, s, token, &format!("?after={after}&limit=7{extra}"));
        assert_eq!(st, 200, "{v}");
        let events = v["events"].as_array().expect("events").clone();
        let next = v["next_after"].as_u64().expect("next_after");
        assert!(next >= after, "{v}");
        if next == after {
            assert!(events.is_empty());
            return out;
        }
        after = next;
        out.extend(events);
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

fn ids(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["id"].as_u64().expect("id"))
        .collect()
}

#[test]
fn events_are_numbered_in_commit_order_paged_filtered_and_scoped() {
    let s = Server::start(&config(""));
    let c = client();
    seed(&c, &s, ADMIN, 2, 2, 10);
    let id = hold(&c, &s, "A0", "S000", 2);
    step(&c, &s, &id, "confirm");
    step(&c, &s, &id, "fulfil");
    let other = hold(&c, &s, "A1", "S001", 1);
    step(&c, &s, &other, "release");

    // Read your writes: everything answered is there, numbered 1.. with no gap.
    let all = all_after(&c, &s, ADMIN, 0, "");
    assert_eq!(ids(&all), (1..=all.len() as u64).collect::<Vec<_>>());
    let t = types(&all);
    // The seed's four counts, then the cart's story in order.
    assert_eq!(
        t.iter().filter(|k| **k == "stock.changed").count(),
        4 + 2 + 2,
        "{t:?}"
    );
    let story: Vec<&str> = t
        .iter()
        .copied()
        .filter(|k| k.starts_with("reservation."))
        .collect();
    assert_eq!(
        story,
        [
            "reservation.held",
            "reservation.confirmed",
            "reservation.fulfilled",
            "reservation.held",
            "reservation.released"
        ]
    );
    let held = &all[t
        .iter()
        .position(|k| *k == "reservation.held")
        .expect("as asked")];
    assert_eq!(held["data"]["id"], json!(id));
    assert_eq!(
        held["data"]["lines"][0],
        json!({"sku": "A0", "location": "S000", "qty": 2})
    );
    assert!(
        held["at"].as_str().expect("as asked").ends_with('Z'),
        "{held}"
    );
    // The hold's stock.changed follows it, with the record after it.
    let after_hold = &all[t
        .iter()
        .position(|k| *k == "reservation.held")
        .expect("as asked")
        + 1];
    assert_eq!(after_hold["type"], "stock.changed");
    assert_eq!(after_hold["data"]["reserved"], 2);
    assert_eq!(after_hold["data"]["available"], 8);
    let fulfilled_at = t
        .iter()
        .position(|k| *k == "reservation.fulfilled")
        .expect("as asked");
    assert_eq!(
        all[fulfilled_at + 1]["data"]["on_hand"],
        8,
        "{}",
        all[fulfilled_at + 1]
    );

    // Types: a family, a type; the same events as the whole filtered.
    let reservations = all_after(&c, &s, ADMIN, 0, "&types=reservation.*");
    assert_eq!(types(&reservations), story);
    let both = all_after(&c, &s, CHANNEL, 0, "&types=reservation.held,stock.changed");
    let expect: Vec<&Value> = all
        .iter()
        .filter(|e| e["type"] == "reservation.held" || e["type"] == "stock.changed")
        .collect();
    assert_eq!(both.iter().collect::<Vec<_>>(), expect);

    // A store token: only its own location's events.
    let mine = all_after(&c, &s, Some("store-s001"), 0, "");
    assert!(!mine.is_empty());
    for e in &mine {
        let d = &e["data"];
        let names = d["location"] == "S001"
            || d["lines"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x["location"] == "S001"));
        assert!(names, "a store sees only its own: {e}");
    }
    assert_eq!(
        types(&mine)
            .iter()
            .filter(|k| k.starts_with("reservation."))
            .count(),
        2
    );

    // A page's figures.
    let (st, v) = page(&c, &s, ADMIN, "?after=2&limit=3");
    assert_eq!(st, 200);
    assert_eq!(
        ids(v["events"].as_array().expect("as asked")),
        vec![3, 4, 5]
    );
    assert_eq!(v["next_after"], 5);
    assert_eq!(v["latest"], all.len() as u64);
    assert_eq!(v["oldest"], 1);

    // Bad input named, a missing token refused first.
    for (q, field) in [
        ("?after=x", "after"),
        ("?after=-1", "after"),
        ("?types=nope", "types"),
        ("?types=stock.,x.*", "types"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
    ] {
        let (st, v) = page(&c, &s, ADMIN, q);
        assert_eq!(st, 422, "{q}: {v}");
        assert_eq!(v["errors"][0]["field"], field, "{q}: {v}");
    }
    let (st, _) = page(&c, &s, None, "?after=x");
    assert_eq!(st, 401);
}

#[test]
fn availability_crossing_zero_and_thresholds_is_published_per_location_and_network() {
    let s = Server::start(&config(""));
    let c = client();
    seed(&c, &s, ADMIN, 1, 2, 0);
    let sku = json!({"name": "hot", "low_stock": {"location": 3, "network": 5}});
    let (st, v) = call(
        &c,
        "PUT",
        &s.url("/v1/skus/A0"),
        ADMIN,
        Some(&sku.to_string()),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["low_stock"], json!({"location": 3, "network": 5}));
    let start = all_after(&c, &s, ADMIN, 0, "").len() as u64;
    let count = |loc: &str, n: i64| {
        let (st, v) = call(
            &c,
            "PUT",
            &s.url(&format!("/v1/inventory/{loc}/A0")),
            ADMIN,
            Some(&json!({"on_hand": n}).to_string()),
        );
        assert_eq!(st, 200, "{v}");
    };
    count("S000", 10);
    let a = hold(&c, &s, "A0", "S000", 6); // 4 left here: network 4 <= 5 is low
    let b = hold(&c, &s, "A0", "S000", 2); // 2 left: low here
    let d = hold(&c, &s, "A0", "S000", 2); // 0: out here and everywhere
    step(&c, &s, &d, "release"); // back
    let _ = (a, b);
    let crossings: Vec<(String, Value, i64)> = all_after(
        &c,
        &s,
        ADMIN,
        start,
        "&types=stock.out,stock.back,stock.low",
    )
    .into_iter()
    .map(|e| {
        (
            e["type"].as_str().expect("as asked").to_string(),
            e["data"]["location"].clone(),
            e["data"]["available"].as_i64().expect("as asked"),
        )
    })
    .collect();
    let want = vec![
        ("stock.back".to_string(), json!("S000"), 10),
        ("stock.back".to_string(), Value::Null, 10),
        ("stock.low".to_string(), Value::Null, 4),
        ("stock.low".to_string(), json!("S000"), 2),
        ("stock.out".to_string(), json!("S000"), 0),
        ("stock.out".to_string(), Value::Null, 0),
        ("stock.back".to_string(), json!("S000"), 2),
        ("stock.back".to_string(), Value::Null, 2),
    ];
    assert_eq!(crossings, want);
    // A store sees its own location's crossings, not the network's.
    let (_, v) = page(
        &c,
        &s,
        Some("store-s001"),
        &format!("?after={start}&types=stock.*"),
    );
    assert!(
        v["events"].as_array().expect("as asked").is_empty(),
        "S001 did not move: {v}"
    );
}

/// Some of everything: holds, confirms, releases, an adjustment.
fn traffic(c: &reqwest::blocking::Client, s: &Server, round: usize) {
    for i in 0..4 {
        let loc = format!("S00{}", i % 2);
        let id = hold(c, s, &format!("A{}", i % 2), &loc, 1);
        step(
            c,
            s,
            &id,
            if (i + round).is_multiple_of(2) {
                "confirm"
            } else {
                "release"
            },
        );
    }
    let body = json!({"delta": 1, "reason": "receipt"});
    let (st, v) = call(
        c,
        "POST",
        &s.url("/v1/inventory/S000/A0/adjustments"),
        ADMIN,
        Some(&body.to_string()),
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn kill_9_keeps_every_number_and_goes_on_with_no_gap_and_nothing_twice() {
    // Through the journal alone, then with a snapshot after every record
    // (the numbering carried in the snapshots), then the journal again.
    let journal_only = config("");
    let snapshots = config("[snapshot]\nevery_records = 1\nevery_s = 1\n");
    let mut s = Server::start(&journal_only);
    let c = client();
    seed(&c, &s, ADMIN, 2, 2, 50);
    let mut seen: Vec<Value> = Vec::new();
    for (round, next) in [&snapshots, &journal_only, &snapshots, &journal_only]
        .into_iter()
        .enumerate()
    {
        traffic(&c, &s, round);
        let all = all_after(&c, &s, ADMIN, 0, "");
        assert_eq!(
            ids(&all),
            (1..=all.len() as u64).collect::<Vec<_>>(),
            "round {round}"
        );
        assert_eq!(
            &all[..seen.len()],
            &seen[..],
            "round {round}: what was read before reads alike"
        );
        assert!(all.len() > seen.len());
        seen = all;
        s.kill_and_restart(next);
    }
    let all = all_after(&c, &s, ADMIN, 0, "");
    assert_eq!(all, seen, "a restart alone publishes nothing");
}

#[test]
fn a_number_dropped_is_410_with_the_oldest_kept() {
    // At most one event kept: the store keeps its newest block whole
    // (256 events), so 300 counts leave the first block to drop.
    let s = Server::start(&config("[events]\nevents_max = 1\n"));
    let c = client();
    seed(&c, &s, ADMIN, 30, 10, 5);
    let deadline = Instant::now() + Duration::from_secs(60);
    let oldest = loop {
        let (st, v) = page(&c, &s, ADMIN, "?after=0");
        if st == 410 {
            assert_eq!(v["code"], "events_gone", "{v}");
            break v["oldest"].as_u64().expect("oldest");
        }
        assert_eq!(st, 200, "{v}");
        assert!(Instant::now() < deadline, "nothing was dropped");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(oldest > 1);
    let (st, v) = page(&c, &s, ADMIN, &format!("?after={}", oldest - 1));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["events"][0]["id"], oldest);
    assert_eq!(v["oldest"], oldest);
    let (st, _) = call_full(
        &c,
        "GET",
        &s.url("/v1/events?after=0"),
        ADMIN,
        None,
        &[("accept", "text/event-stream")],
    )
    .into_status();
    assert_eq!(
        st, 410,
        "a stream asking for what is gone is refused before it starts"
    );
}

trait Status {
    fn into_status(self) -> (u16, Value);
}

impl Status for (u16, reqwest::header::HeaderMap, Value) {
    fn into_status(self) -> (u16, Value) {
        (self.0, self.2)
    }
}

/// Reads a stream's messages until `done` says so (or 20 s pass).
fn read_stream(
    resp: &mut reqwest::blocking::Response,
    mut done: impl FnMut(&[(u64, String, Value)]) -> bool,
) -> Vec<(u64, String, Value)> {
    let mut got = Vec::new();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&got) {
        assert!(Instant::now() < deadline, "stream stalled: {got:?}");
        let n = resp.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended: {got:?}");
        text.push_str(std::str::from_utf8(&buf[..n]).expect("utf-8"));
        while let Some(end) = text.find("\n\n") {
            let msg: String = text.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (0, String::new(), Value::Null);
            for line in msg.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().expect("id");
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).expect("data is JSON");
                }
            }
            if id > 0 {
                got.push((id, kind, data));
            }
        }
    }
    got
}

#[test]
fn the_stream_resumes_after_last_event_id_and_follows_new_events() {
    let s = Server::start(&config(""));
    let c = client();
    seed(&c, &s, ADMIN, 2, 2, 10);
    let before = all_after(&c, &s, ADMIN, 0, "");
    let n = before.len() as u64;
    let streaming = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("as asked");
    let mut resp = streaming
        .get(s.url("/v1/events?types=stock.*,reservation.*"))
        .bearer_auth("admin-secret")
        .header("accept", "text/event-stream")
        .header("last-event-id", (n - 2).to_string())
        .send()
        .expect("stream");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // The two last ones first, then what happens while it is open.
    let got = read_stream(&mut resp, |g| g.len() >= 2);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![n - 1, n]);
    assert_eq!(got[1].2, before[n as usize - 1]["data"]);
    let id = hold(&c, &s, "A1", "S001", 3);
    let got = read_stream(&mut resp, |g| g.iter().any(|x| x.1 == "reservation.held"));
    assert_eq!(got[0].0, n + 1, "on from where it was, no gap: {got:?}");
    let held = got
        .iter()
        .find(|x| x.1 == "reservation.held")
        .expect("as asked");
    assert_eq!(held.2["id"], json!(id));
    // As a page reads them.
    let page_read = all_after(&c, &s, ADMIN, n, "");
    for (i, (gid, kind, data)) in got.iter().enumerate() {
        assert_eq!(
            (
                page_read[i]["id"].as_u64().expect("as asked"),
                page_read[i]["type"].as_str().expect("as asked"),
                &page_read[i]["data"]
            ),
            (*gid, kind.as_str(), data)
        );
    }
    // A store's stream: its own location's only; bad input before it starts.
    let (st, v) = call_full(
        &c,
        "GET",
        &s.url("/v1/events"),
        ADMIN,
        None,
        &[("accept", "text/event-stream"), ("last-event-id", "x")],
    )
    .into_status();
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("Last-Event-ID")),
        "{v}"
    );
}
