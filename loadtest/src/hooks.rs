//! Webhook subscriptions during a run (`--webhooks N`): N subscriptions to
//! `--webhook-types` (every type by default), each delivering to a receiver of this harness that
//! answers 204 at once. What they cost checkout (the run's throughput
//! against one without), and how long an event takes to reach a receiver:
//! from its fact's time (`at`, the server's clock, on this machine) to its
//! arrival.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::Method;
use parking_lot::Mutex;
use serde::Serialize;
use warp::Filter;

use crate::client::Conn;
use crate::report::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct HooksResult {
    pub subscriptions: usize,
    /// Events the receiver took during the run (all subscriptions).
    pub deliveries: u64,
    /// From an event's `at` to its arrival (a batch's oldest event's).
    pub latency: Latency,
}

pub struct Hooks {
    n: usize,
    taken: Arc<AtomicU64>,
    hist: Arc<Mutex<Histogram<u64>>>,
    server: tokio::task::JoinHandle<()>,
    ids: Vec<String>,
    base: String,
    token: Option<String>,
}

fn now_us() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000
}

/// Starts the receiver and makes `n` subscriptions to it, of `batch`
/// events a request at most.
pub async fn start(
    base: &str,
    token: &Option<String>,
    (n, batch): (usize, u32),
    types: &[&str],
) -> Result<Hooks, String> {
    let taken = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let (t, h) = (taken.clone(), hist.clone());
    let route = warp::post()
        .and(warp::body::bytes())
        .map(move |body: bytes::Bytes| {
            // One event, or a batch `{"events":[...]}`: each counted by
            // its `"at":"` (the envelope's; no key of the events' data is
            // `at`), the request timed by its first (oldest) event's: an
            // upper bound of its events' latency. No full parse: on the
            // client's CPUs it would cost this harness more than the
            // server spends sending, and slow the load it drives.
            let text = String::from_utf8_lossy(&body);
            let mut parts = text.split("\"at\":\"").skip(1);
            if let Some(first) = parts.next() {
                t.fetch_add(1 + parts.count() as u64, Ordering::Relaxed);
                let at = first.split('"').next().and_then(|s| {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
                if let Some(at) = at {
                    let us = now_us() - at.unix_timestamp_nanos() / 1_000;
                    let _ = h.lock().record(us.clamp(1, 600_000_000) as u64);
                }
            }
            warp::reply::with_status("", warp::http::StatusCode::NO_CONTENT)
        });
    let (addr, serving) = warp::serve(route).bind_ephemeral(([127, 0, 0, 1], 0));
    let server = tokio::spawn(serving);
    let mut conn = Conn::new(base, token.clone(), Duration::from_secs(10))?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let mut body = serde_json::json!({"url": format!("http://{addr}/hook"), "types": types});
        if batch != 1 {
            body["batch"] = batch.into();
        }
        let (status, v) = conn.json(Method::POST, "/v1/webhooks", Some(body)).await?;
        if status != 201 {
            return Err(format!("POST /v1/webhooks: {status} {v}"));
        }
        ids.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    Ok(Hooks {
        n,
        taken,
        hist,
        server,
        ids,
        base: base.to_string(),
        token: token.clone(),
    })
}

impl Hooks {
    /// Deletes the subscriptions, stops the receiver, and says what it took.
    pub async fn finish(self) -> HooksResult {
        if let Ok(mut conn) = Conn::new(&self.base, self.token.clone(), Duration::from_secs(10)) {
            for id in &self.ids {
                let _ = conn
                    .call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
                    .await;
            }
        }
        self.server.abort();
        let latency = Latency::of(&self.hist.lock());
        HooksResult {
            subscriptions: self.n,
            deliveries: self.taken.load(Ordering::Relaxed),
            latency,
        }
    }
}
