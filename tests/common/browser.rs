//! Headless Chromium for the page tests: Debian's package, driven through
//! its DevTools protocol over a WebSocket. CI installs it (`.ci/run`).

use futures::{SinkExt, StreamExt};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Chromium's path; without it, `None` and a line saying the page test
/// did not run (a failure under `CI`, which must have it).
pub fn chromium() -> Option<String> {
    let candidates = [
        std::env::var("CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    let found = candidates
        .into_iter()
        .find(|p| !p.is_empty() && std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have chromium (.ci/run installs it)"
        );
        eprintln!("chromium not installed: the browser test did not run");
    }
    found
}

/// Standard base64 (the screenshot), padding allowed.
pub fn base64_decode(s: &str) -> Vec<u8> {
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

pub type Cdp =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one DevTools command and waits for its answer (events skipped).
pub async fn cdp(ws: &mut Cdp, id: u64, method: &str, params: Value) -> Value {
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
pub async fn wait_for(ws: &mut Cdp, next_id: &mut u64, expr: &str, want: &str) -> String {
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

/// A running headless Chromium and its first page.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    /// The page target's DevTools WebSocket.
    pub page_ws: String,
    /// The browser's DevTools WebSocket.
    pub browser_url: String,
}

impl Browser {
    /// Starts `browser` (a path from `chromium`) at `width`x`height`.
    pub fn start(browser: &str, c: &Client, (width, height): (u32, u32)) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut chrome = Command::new(browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
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
        Browser {
            child: chrome,
            _profile: profile,
            page_ws,
            browser_url,
        }
    }

    /// Closes it through DevTools, so that no renderer is left behind.
    pub fn close(mut self) {
        let rt = tokio::runtime::Runtime::new().expect("rt");
        rt.block_on(async {
            if let Ok((mut b, _)) =
                tokio_tungstenite::connect_async(self.browser_url.as_str()).await
            {
                let close = json!({"id": 1, "method": "Browser.close"}).to_string();
                let _ = b.send(Message::Text(close)).await;
            }
        });
        let t0 = Instant::now();
        while self.child.try_wait().ok().flatten().is_none()
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page as a PNG, kept as `name` in the tests' output folder; its path.
pub async fn screenshot(ws: &mut Cdp, id: &mut u64, name: &str) -> std::path::PathBuf {
    *id += 1;
    let shot = cdp(ws, *id, "Page.captureScreenshot", json!({"format": "png"})).await;
    let png = base64_decode(shot["result"]["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, &png).expect("keep the screenshot");
    println!("screenshot: {}", path.display());
    path
}
