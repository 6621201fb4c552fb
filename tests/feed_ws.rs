//! The stock feed over a real WebSocket (tokio-tungstenite) against the real
//! binary: snapshot then every change of the scope in version order after a
//! burst of concurrent writes; the scope rule of store tokens, refused
//! before the upgrade; a plain GET told to upgrade; clients closed with
//! 1001 on SIGTERM.

mod common;

use common::ws::{connect, follow, next_json, records};
use common::{auth_with, call, client, seed, Server};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "admin-secret";

fn config() -> String {
    auth_with("[[auth.tokens]]\ntoken = \"store-s000\"\nrole = \"store\"\nlocation = \"S000\"\n")
}

#[test]
fn clients_get_their_scope_in_version_order_after_a_burst() {
    let s = Server::start(&config());
    let c = client();
    seed(&c, &s, Some(ADMIN), 3, 2, 1000);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (mut by_store, mut by_store_token, mut by_sku) = rt.block_on(async {
        (
            connect(s.port, "location=S000", ADMIN, true)
                .await
                .expect("admin, location"),
            connect(s.port, "location=S000", "store-s000", false)
                .await
                .expect("store token in the query"),
            connect(s.port, "sku=A1", ADMIN, false)
                .await
                .expect("admin, sku"),
        )
    });
    let mut snaps = rt.block_on(async {
        let mut v = Vec::new();
        for ws in [&mut by_store, &mut by_store_token, &mut by_sku] {
            let m = next_json(ws, Duration::from_secs(5))
                .await
                .expect("snapshot");
            assert_eq!(m["type"], "snapshot", "{m}");
            v.push(records(&m));
        }
        v
    });
    assert_eq!(snaps[0].len(), 3, "three SKUs at S000: {:?}", snaps[0]);
    assert_eq!(snaps[2].len(), 2, "A1 at two stores: {:?}", snaps[2]);
    assert_eq!(snaps[0].get("A1@S000"), Some(&(1000, 0, 1)));

    // A burst: reservations, releases and sales from 8 threads at once.
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (c, s) = (&c, &s);
            scope.spawn(move || {
                for i in 0..25 {
                    let sku = format!("A{}", (t + i) % 3);
                    let loc = format!("S00{}", i % 2);
                    let body =
                        format!(r#"{{"lines":[{{"sku":"{sku}","location":"{loc}","qty":1}}]}}"#);
                    let (st, r) = call(
                        c,
                        "POST",
                        &s.url("/v1/reservations"),
                        Some(ADMIN),
                        Some(&body),
                    );
                    assert_eq!(st, 201, "{r}");
                    if i % 3 == 0 {
                        let id = r["id"].as_str().unwrap_or("");
                        let (st, _) = call(
                            c,
                            "POST",
                            &s.url(&format!("/v1/reservations/{id}/release")),
                            Some(ADMIN),
                            None,
                        );
                        assert_eq!(st, 200);
                    }
                    if i % 5 == 0 {
                        let (st, _) = call(
                            c,
                            "POST",
                            &s.url(&format!("/v1/inventory/{loc}/{sku}/adjustments")),
                            Some(ADMIN),
                            Some(r#"{"delta":-1,"reason":"sale"}"#),
                        );
                        assert_eq!(st, 200);
                    }
                }
            });
        }
    });

    // What the API says now is what every client ends with.
    let now = |keys: Vec<String>| -> BTreeMap<String, (i64, i64)> {
        keys.into_iter()
            .map(|k| {
                let (sku, loc) = k.split_once('@').expect("key");
                let (_, v) = call(
                    &c,
                    "GET",
                    &s.url(&format!("/v1/inventory/{loc}/{sku}")),
                    Some(ADMIN),
                    None,
                );
                (
                    k,
                    (
                        v["on_hand"].as_i64().unwrap_or(-1),
                        v["reserved"].as_i64().unwrap_or(-1),
                    ),
                )
            })
            .collect()
    };
    let want: Vec<BTreeMap<String, (i64, i64)>> = snaps
        .iter()
        .map(|m| now(m.keys().cloned().collect()))
        .collect();
    assert!(
        want[0].values().any(|v| v.1 > 0),
        "the burst held something: {:?}",
        want[0]
    );
    let read = rt.block_on(async {
        let mut read = Vec::new();
        for (ws, (snap, want)) in [&mut by_store, &mut by_store_token, &mut by_sku]
            .into_iter()
            .zip(snaps.iter_mut().zip(&want))
        {
            read.push(follow(ws, snap, want).await);
        }
        read
    });
    assert!(read.iter().all(|&n| n > 0), "{read:?}");
    // Metrics and the OpenAPI description know the feed.
    let m = c
        .get(s.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(m.contains("holdfast_feed_subscribers 3"), "{m}");
    let released = m
        .lines()
        .find_map(|l| l.strip_prefix("holdfast_feed_released_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(released.is_some_and(|n| n > 0), "{released:?}");
    let (_, doc) = call(&c, "GET", &s.url("/v1/openapi.json"), None, None);
    assert!(doc["paths"]["/v1/feed"]["get"].is_object());
    // Nothing of other scopes: every record a client saw is in its scope.
    assert!(snaps[0].keys().all(|k| k.ends_with("@S000")));
    assert!(snaps[2].keys().all(|k| k.starts_with("A1@")));
}

#[test]
fn scope_rules_are_refused_before_the_upgrade_and_sigterm_closes_clients() {
    let mut s = Server::start(&config());
    let c = client();
    seed(&c, &s, Some(ADMIN), 1, 2, 5);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        assert_eq!(
            connect(s.port, "location=S001", "store-s000", true)
                .await
                .err(),
            Some(403),
            "another store"
        );
        assert_eq!(
            connect(s.port, "sku=A0", "store-s000", true).await.err(),
            Some(403),
            "a store follows its location"
        );
        assert_eq!(
            connect(s.port, "location=S000", "nope", true).await.err(),
            Some(401)
        );
        assert_eq!(
            connect(s.port, "location=S000", ADMIN, false)
                .await
                .ok()
                .map(|_| ()),
            Some(())
        );
        assert_eq!(
            connect(s.port, "location=S999", ADMIN, true).await.err(),
            Some(404)
        );
        assert_eq!(connect(s.port, "", ADMIN, true).await.err(), Some(422));
    });
    // Without an upgrade: told what is missing, as problem+json.
    let (st, v) = call(
        &c,
        "GET",
        &s.url("/v1/feed?location=S000"),
        Some(ADMIN),
        None,
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (426, Some("upgrade_required")),
        "{v}"
    );

    let mut ws = rt.block_on(async {
        let mut ws = connect(s.port, "location=S000", "store-s000", true)
            .await
            .expect("own store");
        let m = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("snapshot");
        assert_eq!(m["type"], "snapshot");
        ws
    });
    let status = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let code = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    });
    assert_eq!(code, Some(1001), "going away");
    let _ = rt.block_on(ws.close(None));
    let exit = s.child.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
}

/// A client that stops reading: its session's bounded queue fills, and when
/// it reads again it gets a fresh snapshot instead of the backlog, ending
/// at the same state as everyone else; the server's memory does not grow
/// with what it missed.
#[test]
fn a_slow_reader_is_resynced_instead_of_buffered() {
    const SKUS: usize = 10_000;
    let s = Server::start(&config());
    let c = client();
    seed(&c, &s, Some(ADMIN), 1, 1, 10);
    let skus: Vec<Value> = (0..SKUS)
        .map(|i| serde_json::json!({"sku": format!("B{i}"), "name": "b"}))
        .collect();
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/skus/batch"),
        Some(ADMIN),
        Some(&serde_json::json!({"items": skus}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    let counts = |n: i64| {
        let items: Vec<Value> = (0..SKUS)
            .map(|i| serde_json::json!({"location": "S000", "sku": format!("B{i}"), "on_hand": n}))
            .collect();
        let (st, v) = call(
            &c,
            "POST",
            &s.url("/v1/inventory/batch"),
            Some(ADMIN),
            Some(&serde_json::json!({"items": items}).to_string()),
        );
        assert_eq!(st, 200, "{v}");
    };
    counts(1);
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let mut slow = rt.block_on(async {
        let mut ws = connect(s.port, "location=S000", ADMIN, true)
            .await
            .expect("connect");
        let m = next_json(&mut ws, Duration::from_secs(10))
            .await
            .expect("snapshot");
        assert_eq!(m["type"], "snapshot");
        assert_eq!(m["records"].as_array().map(Vec::len), Some(SKUS + 1));
        ws
    });
    // It reads nothing while 100,000 changes happen at its store (some
    // 15 MB of messages: far more than its socket's buffers hold). The
    // memory is read after the first 50,000: the server's own buffers for
    // parsing and journaling 10,000-item batches have grown by then, and
    // what is measured is what the rest adds.
    for n in 2..7 {
        counts(n);
    }
    let before = rss(s.pid());
    for n in 7..12 {
        counts(n);
    }
    let after = rss(s.pid());
    // Now it reads: somewhere in what it gets, a fresh snapshot, and in
    // the end every record at the last count.
    let resyncs = rt.block_on(async {
        let mut resyncs = 0;
        let mut at_last: std::collections::BTreeSet<String> = Default::default();
        while at_last.len() < SKUS {
            let m = next_json(&mut slow, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| {
                    panic!("feed ended; {} of {SKUS} at the last count", at_last.len())
                });
            let recs: Vec<Value> = match m["type"].as_str() {
                Some("snapshot") => {
                    resyncs += 1;
                    m["records"].as_array().cloned().unwrap_or_default()
                }
                _ => vec![m],
            };
            for r in recs {
                let sku = r["sku"].as_str().unwrap_or("").to_string();
                if !sku.starts_with('B') {
                    continue;
                }
                if r["on_hand"] == 11 {
                    at_last.insert(sku);
                } else {
                    at_last.remove(&sku);
                }
            }
        }
        resyncs
    });
    assert!(resyncs >= 1, "the slow reader was never resynced");
    // What it missed is not kept for it.
    assert!(after < before + 64 * 1024, "RSS {before} kB -> {after} kB");
}

/// A client that answers nothing (not even the pings) is closed after
/// `[feed] idle_timeout_s`; one that keeps reading (and so answers the
/// pings) stays.
#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    let s = Server::start(&format!("[feed]\nidle_timeout_s = 3\n{}", config()));
    let c = client();
    seed(&c, &s, Some(ADMIN), 1, 1, 5);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (code, alive) = rt.block_on(async {
        let mut silent = connect(s.port, "location=S000", ADMIN, true)
            .await
            .expect("connect");
        let mut awake = connect(s.port, "location=S000", ADMIN, true)
            .await
            .expect("connect");
        for ws in [&mut silent, &mut awake] {
            assert_eq!(
                next_json(ws, Duration::from_secs(5))
                    .await
                    .expect("snapshot")["type"],
                "snapshot"
            );
        }
        // `awake` reads (answering pings) for 5 s; `silent` reads nothing.
        let t0 = tokio::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            let _ = tokio::time::timeout(Duration::from_millis(200), awake.next()).await;
        }
        // The server let the silent one go: one subscriber left.
        let metrics = tokio::task::block_in_place(|| {
            c.get(s.url("/metrics"))
                .send()
                .expect("metrics")
                .text()
                .expect("text")
        });
        assert!(
            metrics.contains("holdfast_feed_subscribers 1\n"),
            "{metrics}"
        );
        // It sent a close (1000) before letting go; reading it now, the
        // client may first fail to answer a ping on the closed socket.
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(5), silent.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => break f.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                // Closed under it: no frame to read.
                Ok(Some(Err(_)) | None) => break None,
                Err(_) => panic!("the silent client was never closed"),
            }
        };
        // The awake one still gets changes.
        let (st, _) = tokio::task::block_in_place(|| {
            call(
                &c,
                "POST",
                &s.url("/v1/inventory/S000/A0/adjustments"),
                Some(ADMIN),
                Some(r#"{"delta":-1,"reason":"sale"}"#),
            )
        });
        assert_eq!(st, 200);
        let m = next_json(&mut awake, Duration::from_secs(5)).await;
        (code, m.map(|m| m["on_hand"].clone()))
    });
    assert!(code.is_none_or(|c| c == 1000), "closed as idle: {code:?}");
    assert_eq!(
        alive,
        Some(serde_json::json!(4)),
        "the reading client stays"
    );
}
