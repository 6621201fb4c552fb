//! Event-stream clients during a run (`--sse-clients N`, holdfast only):
//! N clients of `GET /v1/events` as Server-Sent Events, each asking the
//! types `--sse-types` from the newest event on, reading while the
//! scenario's load runs. Measured: the events delivered, how far each
//! client is behind the newest event when the run ends, the server's
//! memory per client, and the latency. An SSE message carries the event's
//! data, not its time, so the latency is in two parts: from an event's
//! time (`at`, read afterwards from the page API) to its first client,
//! and the fan-out's spread, from its first client to each other one.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Method;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::client::{parse_base, Conn};
use crate::fanout::rss_kb;
use crate::report::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct SseResult {
    pub clients: usize,
    pub types: String,
    pub connect_s: f64,
    pub server_rss_before_kb: u64,
    pub server_rss_after_kb: u64,
    /// (after - before) / clients.
    pub bytes_per_client: u64,
    /// Events delivered to all clients during the run.
    pub deliveries: u64,
    /// Events of those types published during the run (each client's
    /// share of `deliveries` when none falls behind).
    pub published: u64,
    /// The clients' distance from the newest event when the run ended
    /// (and their streams had half a second more): events not yet
    /// delivered, the largest over the clients.
    pub behind_max: u64,
    /// From an event's time to its first client.
    pub first_latency: Latency,
    /// From an event's first client to each of the others.
    pub spread: Latency,
}

/// Arrivals by event number: the first one's wall-clock time (µs).
type Firsts = Arc<Mutex<ahash::AHashMap<u64, i128>>>;

pub struct SseClients {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<u64>>,
    firsts: Firsts,
    spread: Arc<Mutex<Histogram<u64>>>,
    delivered: Arc<AtomicU64>,
    connect_s: f64,
    rss: (u64, u64),
    start_after: u64,
    base: String,
    token: Option<String>,
    types: String,
}

fn now_us() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// The newest event's number.
async fn latest(base: &str, token: &Option<String>) -> Result<u64, String> {
    let mut conn = Conn::new(base, token.clone(), Duration::from_secs(10))?;
    let (status, v) = conn.json(Method::GET, "/v1/events?limit=1", None).await?;
    match v["latest"].as_u64() {
        Some(n) if status == 200 => Ok(n),
        _ => Err(format!("GET /v1/events: {status} {v}")),
    }
}

/// The events of `types` after `after` with their times (µs), read
/// through the page API.
async fn events(
    base: &str,
    token: &Option<String>,
    after: u64,
    types: &str,
) -> Result<Vec<(u64, i128)>, String> {
    let mut conn = Conn::new(base, token.clone(), Duration::from_secs(10))?;
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let path = format!("/v1/events?after={after}&limit=1000&types={types}");
        let (status, v) = conn.json(Method::GET, &path, None).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {v}"));
        }
        for e in v["events"].as_array().into_iter().flatten() {
            let at = e["at"].as_str().and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            });
            if let (Some(id), Some(at)) = (e["id"].as_u64(), at) {
                out.push((id, at.unix_timestamp_nanos() / 1_000));
            }
        }
        let next = v["next_after"].as_u64().unwrap_or(after);
        if next == after {
            return Ok(out);
        }
        after = next;
    }
}

/// One stream, open (its answer's head read): its body.
async fn open(
    base: &str,
    token: &Option<String>,
    after: u64,
    types: &str,
) -> Result<hyper::body::Incoming, String> {
    let (addr, host) = parse_base(base)?;
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/events?after={after}&types={types}"))
        .header(hyper::header::HOST, host)
        .header(hyper::header::ACCEPT, "text/event-stream");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("event stream: {}", resp.status()));
    }
    Ok(resp.into_body())
}

/// Reads a stream until stopped: the last event number it took.
async fn read(
    mut body: hyper::body::Incoming,
    mut stopped: watch::Receiver<bool>,
    firsts: Firsts,
    spread: Arc<Mutex<Histogram<u64>>>,
    delivered: Arc<AtomicU64>,
) -> u64 {
    let mut last = 0;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stopped.changed() => return last,
        };
        let Some(Ok(frame)) = frame else { return last };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        // Whole messages only (they end with an empty line).
        let Some(end) = buf.windows(2).rposition(|w| w == b"\n\n") else {
            continue;
        };
        let now = now_us();
        for line in buf[..end].split(|b| *b == b'\n') {
            let Some(id) = line
                .strip_prefix(b"id: ")
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok())
            else {
                continue;
            };
            last = id;
            delivered.fetch_add(1, Ordering::Relaxed);
            let first = *firsts.lock().entry(id).or_insert(now);
            let _ = spread
                .lock()
                .record((now - first).clamp(1, 600_000_000) as u64);
        }
        buf.drain(..end + 2);
    }
}

/// Connects `n` streams (at most 256 handshakes at a time) asking
/// `types` from the newest event on.
pub async fn connect(
    base: &str,
    token: &Option<String>,
    n: usize,
    types: &str,
    server_pid: Option<u32>,
) -> Result<SseClients, String> {
    let rss_before = rss_kb(server_pid);
    let start_after = latest(base, token).await?;
    let (stop, stopped) = watch::channel(false);
    let firsts: Firsts = Arc::default();
    let spread = Arc::new(Mutex::new(histogram()));
    let delivered = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(256));
    let t0 = std::time::Instant::now();
    let mut opening = Vec::with_capacity(n);
    for _ in 0..n {
        let (gate, base, types) = (gate.clone(), base.to_string(), types.to_string());
        let token = token.clone();
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            open(&base, &token, start_after, &types).await
        }));
    }
    let mut tasks = Vec::with_capacity(n);
    for o in opening {
        let body = o.await.map_err(|e| e.to_string())??;
        tasks.push(tokio::spawn(read(
            body,
            stopped.clone(),
            firsts.clone(),
            spread.clone(),
            delivered.clone(),
        )));
    }
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kb(server_pid);
    eprintln!(
        "  event streams: {n} open in {connect_s:.1} s; server RSS {rss_before} kB -> {rss_after} kB"
    );
    Ok(SseClients {
        stop,
        tasks,
        firsts,
        spread,
        delivered,
        connect_s,
        rss: (rss_before, rss_after),
        start_after,
        base: base.to_string(),
        token: token.clone(),
        types: types.to_string(),
    })
}

impl SseClients {
    /// Stops the streams (after half a second more for what is in
    /// flight) and sums up.
    pub async fn finish(self) -> Result<SseResult, String> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let published = events(&self.base, &self.token, self.start_after, &self.types).await?;
        let _ = self.stop.send(true);
        let clients = self.tasks.len();
        let mut behind_max = 0;
        for t in self.tasks {
            let last = t.await.unwrap_or(0).max(self.start_after);
            let left = published.iter().filter(|(id, _)| *id > last).count() as u64;
            behind_max = behind_max.max(left);
        }
        let mut first_latency = histogram();
        let firsts = self.firsts.lock();
        for (id, at) in &published {
            if let Some(first) = firsts.get(id) {
                let _ = first_latency.record((first - at).clamp(1, 600_000_000) as u64);
            }
        }
        let (before, after) = self.rss;
        Ok(SseResult {
            clients,
            types: self.types,
            connect_s: self.connect_s,
            server_rss_before_kb: before,
            server_rss_after_kb: after,
            bytes_per_client: after.saturating_sub(before) * 1024 / clients.max(1) as u64,
            deliveries: self.delivered.load(Ordering::Relaxed),
            published: published.len() as u64,
            behind_max,
            first_latency: Latency::of(&first_latency),
            spread: Latency::of(&self.spread.lock()),
        })
    }
}
