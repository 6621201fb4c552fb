//! Starts the real `holdfast` binary on a free port with its own data dir.
#![allow(dead_code)]

pub mod adyen;
pub mod amazonpay;
pub mod browser;
pub mod cluster;
pub mod correos;
pub mod dhl;
pub mod dhl_express;
pub mod fedex;
pub mod gestpay;
pub mod redis;
pub mod scalapay;
pub mod serve;
pub mod sim;
pub mod spec;
pub mod tnt;
pub mod ws;

use reqwest::blocking::{Client, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Server {
    pub child: Child,
    pub base: String,
    pub port: u16,
    pub data_dir: PathBuf,
    config: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// A server with `extra_toml` appended to its `[server]` config.
    pub fn start(extra_toml: &str) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut s = Self::start_on(&data_dir, free_port(), extra_toml);
        s._tmp = Some(tmp);
        s
    }

    pub fn start_on(data_dir: &Path, port: u16, extra_toml: &str) -> Server {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let config = data_dir.with_extension("toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{extra_toml}\n",
                data_dir.display()
            ),
        )
        .expect("config");
        let args = [
            "serve".into(),
            "--config".into(),
            config.clone().into_os_string(),
        ];
        Self::launch(&args, data_dir, port, config)
    }

    /// Node `node` of the cluster `cluster_file` (its data dir and port are
    /// the file's), with `config` as its `--config`.
    /// A cluster node, with `config` (holdfast.toml's text) beside it.
    pub fn start_node(
        cluster_file: &Path,
        node: &str,
        port: u16,
        data_dir: &Path,
        config_text: &str,
    ) -> Server {
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, config_text).expect("config");
        let args = [
            "serve".into(),
            "--config".into(),
            config.clone().into_os_string(),
            "--cluster".into(),
            cluster_file.as_os_str().to_owned(),
            "--node".into(),
            node.into(),
        ];
        Self::launch(&args, data_dir, port, config)
    }

    /// Runs the binary with `args` and waits for its "ready".
    fn launch(args: &[std::ffi::OsString], data_dir: &Path, port: u16, config: PathBuf) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start holdfast");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                if std::env::var("HOLDFAST_TEST_LOG").is_ok() {
                    eprintln!("[server] {line}");
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the server logs ready");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            data_dir: data_dir.to_path_buf(),
            config,
            _tmp: None,
        }
    }

    /// SIGKILL, then start again on the same data dir and port.
    pub fn kill_and_restart(&mut self, extra_toml: &str) {
        self.kill_and_restart_after(extra_toml, |_| {});
    }

    /// SIGKILL, `between` on the data dir, then start again.
    pub fn kill_and_restart_after(&mut self, extra_toml: &str, between: impl FnOnce(&Path)) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
        between(&self.data_dir);
        let tmp = self._tmp.take();
        let mut s = Self::start_on(&self.data_dir.clone(), self.port, extra_toml);
        s._tmp = tmp;
        std::mem::swap(self, &mut s);
        std::mem::forget(s); // its child is dead and waited for
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// Sends a JSON request; returns the status and the parsed body.
pub fn call(
    c: &Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, _, v) = call_full(c, method, url, token, body, &[]);
    (status, v)
}

pub fn call_full(
    c: &Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = c.request(m, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp: Response = r.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

/// A catalog of `skus` SKUs and `locs` stores, each record with `on_hand`.
pub fn seed(c: &Client, s: &Server, token: Option<&str>, skus: usize, locs: usize, on_hand: i64) {
    for i in 0..skus {
        let (st, b) = call(
            c,
            "PUT",
            &s.url(&format!("/v1/skus/A{i}")),
            token,
            Some(&format!(r#"{{"name":"sku {i}"}}"#)),
        );
        assert_eq!(st, 200, "{b}");
    }
    for j in 0..locs {
        let (st, b) = call(
            c,
            "PUT",
            &s.url(&format!("/v1/locations/S{j:03}")),
            token,
            Some(&format!(
                r#"{{"name":"store {j}","kind":"store","lat":45.4,"lon":9.1,"priority":1}}"#
            )),
        );
        assert_eq!(st, 200, "{b}");
    }
    let items: Vec<Value> = (0..skus)
        .flat_map(|i| (0..locs).map(move |j| serde_json::json!({"location": format!("S{j:03}"), "sku": format!("A{i}"), "on_hand": on_hand})))
        .collect();
    let (st, b) = call(
        c,
        "POST",
        &s.url("/v1/inventory/batch"),
        token,
        Some(&serde_json::json!({ "items": items }).to_string()),
    );
    assert_eq!(st, 200, "{b}");
}

/// Like `call`, but a failed connection is `None` instead of a panic (the
/// server may be killed under the load).
pub fn try_call(c: &Client, method: &str, url: &str, body: Option<&str>) -> Option<(u16, Value)> {
    let m = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
    let mut r = c.request(m, url);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// `GET path` without a token.
pub fn get(c: &Client, s: &Server, path: &str) -> (u16, Value) {
    call(c, "GET", &s.url(path), None, None)
}

/// `POST path` without a token.
pub fn post(c: &Client, s: &Server, path: &str, body: Option<&str>) -> (u16, Value) {
    call(c, "POST", &s.url(path), None, body)
}

/// An `[auth]` section: `admin-secret` (admin), `web-checkout` (channel),
/// then `extra` (more `[[auth.tokens]]` entries).
pub fn auth_with(extra: &str) -> String {
    format!(
        "[[auth.tokens]]\ntoken = \"admin-secret\"\nrole = \"admin\"\n[[auth.tokens]]\ntoken = \"web-checkout\"\nrole = \"channel\"\n{extra}"
    )
}

/// `PUT path` without a token, which must answer 200.
pub fn put_ok(c: &Client, s: &Server, path: &str, body: Value) {
    let (st, v) = call(c, "PUT", &s.url(path), None, Some(&body.to_string()));
    assert_eq!(st, 200, "{path}: {v}");
}

/// (on_hand, reserved) of a stock record; -1 where the answer has none.
pub fn stock(c: &Client, s: &Server, loc: &str, sku: &str) -> (i64, i64) {
    let (_, v) = get(c, s, &format!("/v1/inventory/{loc}/{sku}"));
    (
        v["on_hand"].as_i64().unwrap_or(-1),
        v["reserved"].as_i64().unwrap_or(-1),
    )
}

/// The kinds of a movement history's movements (GET .../history), in order.
pub fn movement_kinds(moves: &[Value]) -> Vec<&str> {
    moves
        .iter()
        .map(|m| m["kind"].as_str().unwrap_or("?"))
        .collect()
}

/// Milliseconds since the Unix epoch, as the server's clock reads them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Asserts that `/metrics` holds each of `lines`, whole.
pub fn assert_metrics(c: &Client, s: &Server, lines: &[&str]) {
    let (_, text) = get(c, s, "/metrics");
    let text = text.as_str().unwrap_or_default();
    for line in lines {
        assert!(text.lines().any(|l| l == *line), "{line} in\n{text}");
    }
}

/// Every entry of a listing paged by `next_cursor` (`key`: its member),
/// 200 a page, from `path` (which has no query).
pub fn all_pages(c: &Client, s: &Server, path: &str, key: &str) -> Vec<Value> {
    let mut kept: Vec<Value> = Vec::new();
    let mut cursor = String::new();
    loop {
        let (st, v) = get(c, s, &format!("{path}?limit=200{cursor}"));
        assert_eq!(st, 200, "{v}");
        kept.extend(v[key].as_array().expect("a listing").iter().cloned());
        match v["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return kept,
        }
    }
}

/// Holds `qty` of `sku` at `loc` for 10 minutes with the channel token
/// (`auth_with`'s `web-checkout`): the reservation's id.
pub fn hold(c: &Client, s: &Server, sku: &str, loc: &str, qty: u32) -> String {
    let body =
        serde_json::json!({"lines": [{"sku": sku, "qty": qty, "location": loc}], "ttl_s": 600});
    let (st, v) = call(
        c,
        "POST",
        &s.url("/v1/reservations"),
        Some("web-checkout"),
        Some(&body.to_string()),
    );
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

/// A reservation's step (`confirm`, `release`, `fulfil`) with the channel
/// token, which must answer 200.
pub fn step(c: &Client, s: &Server, id: &str, action: &str) {
    let url = s.url(&format!("/v1/reservations/{id}/{action}"));
    let (st, v) = call(c, "POST", &url, Some("web-checkout"), None);
    assert_eq!(st, 200, "{action}: {v}");
}

/// Runs `holdfast import` against `base` with `token`, `args` before
/// them (the file, `--catalog file`, ...) and `extra` after: its output,
/// once it ends.
pub fn holdfast_import(
    base: &str,
    token: &str,
    args: &[&str],
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .arg("import")
        .args(args)
        .args(["--url", base, "--token", token])
        .args(extra)
        .output()
        .expect("holdfast import")
}
