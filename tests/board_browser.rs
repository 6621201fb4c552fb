//! The store board in a real browser: headless Chromium (Debian's package,
//! driven through its DevTools protocol over a WebSocket) opens
//! `/ui/stores/S000`, the stock changes through the API, and the number on
//! the page changes; a pay-and-collect order shows among its pickups. A
//! screenshot is kept as a test artifact (its path is
//! printed). CI installs chromium (`.ci/run`); elsewhere, without it, the
//! test says so and passes only if `CI` is not set.

mod common;

use common::{call, client, seed, Server};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<String> {
    let candidates = [
        std::env::var("CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    candidates
        .into_iter()
        .find(|p| !p.is_empty() && std::path::Path::new(p).exists())
}

/// Standard base64 (the screenshot), padding allowed.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

type Cdp =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one DevTools command and waits for its answer (events skipped).
async fn cdp(ws: &mut Cdp, id: u64, method: &str, params: Value) -> Value {
    let msg = json!({"id": id, "method": method, "params": params}).to_string();
    ws.send(Message::Text(msg)).await.expect("cdp send");
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("cdp answer in time")
            .expect("cdp open")
            .expect("cdp message");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).expect("cdp json");
            if v["id"] == id {
                return v;
            }
        }
    }
}

/// Evaluates `expr` in the page until it gives `want`, or 10 s.
async fn wait_for(ws: &mut Cdp, next_id: &mut u64, expr: &str, want: &str) -> String {
    let t0 = Instant::now();
    loop {
        *next_id += 1;
        let v = cdp(
            ws,
            *next_id,
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )
        .await;
        let got = v["result"]["result"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if got == want || t0.elapsed() > Duration::from_secs(10) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_store_board_shows_a_stock_change_as_it_happens() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have chromium (.ci/run installs it)"
        );
        eprintln!("chromium not installed: the browser test did not run");
        return;
    };
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 2, 1, 5);

    let profile = tempfile::tempdir().expect("profile dir");
    let mut chrome = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1024,768",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
    let stderr = chrome.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let browser_url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium's DevTools address");
    let port = browser_url
        .trim_start_matches("ws://127.0.0.1:")
        .split('/')
        .next()
        .expect("port")
        .to_string();
    // The page target opened with about:blank.
    let targets: Value = c
        .get(format!("http://127.0.0.1:{port}/json/list"))
        .send()
        .expect("targets")
        .json()
        .expect("targets json");
    let page_ws = targets
        .as_array()
        .and_then(|a| a.iter().find(|t| t["type"] == "page"))
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_string();

    // A pay-and-collect order waiting at this store's counter.
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/orders"),
        None,
        Some(
            r#"{"id":"P-1","lines":[{"sku":"A0","qty":1,"unit_price":"9.90"}],"delivery":{"type":"pickup","location":"S000"},"payment":{"provider":"sandbox"}}"#,
        ),
    );
    assert_eq!(st, 201, "{v}");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let board = s.url("/ui/stores/S000");
    let cell = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.available'); return td ? td.textContent : "" })()"#;
    let status = r#"document.getElementById("status-text").textContent"#;
    let png = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("cdp connect");
        let mut id = 1;
        cdp(&mut ws, id, "Page.navigate", json!({"url": board})).await;
        assert_eq!(wait_for(&mut ws, &mut id, status, "live").await, "live");
        assert_eq!(
            wait_for(&mut ws, &mut id, cell, "5").await,
            "5",
            "the snapshot"
        );
        let pickup = r#"(() => { const p = document.querySelector('[data-order="P-1"] .lines'); return p ? p.textContent : "" })()"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, pickup, "1 × A0").await,
            "1 × A0",
            "the pickup at the counter"
        );
        // Two sold at the till, through the API.
        // (The blocking client keeps a runtime of its own.)
        let (st, v) = tokio::task::block_in_place(|| {
            call(
                &c,
                "POST",
                &s.url("/v1/inventory/S000/A1/adjustments"),
                None,
                Some(r#"{"delta":-2,"reason":"sale"}"#),
            )
        });
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            wait_for(&mut ws, &mut id, cell, "3").await,
            "3",
            "the change"
        );
        // One found damaged: set apart, no longer available.
        let (st, v) = tokio::task::block_in_place(|| {
            call(
                &c,
                "POST",
                &s.url("/v1/inventory/S000/A1/unsellable"),
                None,
                Some(r#"{"bucket":"damaged","delta":1,"reason":"damage"}"#),
            )
        });
        assert_eq!(st, 200, "{v}");
        let apart = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.unsellable'); return td ? td.textContent + " " + td.title : "" })()"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, apart, "1 damaged 1").await,
            "1 damaged 1",
            "the unsellable column"
        );
        assert_eq!(wait_for(&mut ws, &mut id, cell, "2").await, "2");
        // Supply announced: the Incoming column, its time on hover.
        let (st, v) = tokio::task::block_in_place(|| {
            call(
                &c,
                "POST",
                &s.url("/v1/supply"),
                None,
                Some(r#"{"id":"PO-1","location":"S000","expected_at":"2027-01-15T08:00:00Z","lines":[{"sku":"A1","qty":40}]}"#),
            )
        });
        assert_eq!(st, 201, "{v}");
        let incoming = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.incoming'); return td ? td.textContent + " " + td.title : "" })()"#;
        let want = "40 expected from 2027-01-15T08:00:00.000Z";
        assert_eq!(
            wait_for(&mut ws, &mut id, incoming, want).await,
            want,
            "the incoming column"
        );
        // Sold ahead against it: 2 on hand, 3 backordered.
        let (st, v) = tokio::task::block_in_place(|| {
            let sku = r#"{"name":"sku 1","backorder":{"max_units":10}}"#;
            assert_eq!(call(&c, "PUT", &s.url("/v1/skus/A1"), None, Some(sku)).0, 200);
            call(
                &c,
                "POST",
                &s.url("/v1/reservations"),
                None,
                Some(r#"{"lines":[{"sku":"A1","location":"S000","qty":5,"allow_backorder":true}]}"#),
            )
        });
        assert_eq!(st, 201, "{v}");
        let ahead = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.backordered'); return td ? td.textContent : "" })()"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, ahead, "3").await,
            "3",
            "the sold-ahead column"
        );
        assert_eq!(wait_for(&mut ws, &mut id, cell, "0").await, "0");
        let flashed =
            r#"String(document.querySelector('tr[data-sku="A1"]').classList.contains("flash"))"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, flashed, "true").await,
            "true",
            "highlighted"
        );
        id += 1;
        let shot = cdp(
            &mut ws,
            id,
            "Page.captureScreenshot",
            json!({"format": "png"}),
        )
        .await;
        base64_decode(shot["result"]["data"].as_str().expect("screenshot data"))
    });
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-board.png");
    std::fs::write(&path, &png).expect("keep the screenshot");
    println!("screenshot: {}", path.display());
    // Closed through DevTools, so that no renderer is left behind.
    rt.block_on(async {
        if let Ok((mut b, _)) = tokio_tungstenite::connect_async(browser_url.as_str()).await {
            let close = json!({"id": 1, "method": "Browser.close"}).to_string();
            let _ = b.send(Message::Text(close)).await;
        }
    });
    let t0 = Instant::now();
    while chrome.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = chrome.kill();
    let _ = chrome.wait();
}
