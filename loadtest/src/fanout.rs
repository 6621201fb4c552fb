//! Feed clients during a run (`--feed-clients N`, holdfast only): N
//! WebSocket clients on the stock feed, spread over the network's
//! locations, reading while the scenario's load runs. Measured: each
//! change's delivery latency (its arrival minus its `ts`, the moment the
//! engine made it: so commit, fan-out and transport; `ts` has millisecond
//! resolution, so a figure may read up to 1 ms high) and the server's
//! memory per connected client: its RSS before and after connecting them,
//! and, because the allocator first reuses what the setup freed (which
//! can make the first figure read low, even negative), the growth from
//! the second half of the clients alone (the marginal figure).

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::report::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct FeedResult {
    pub clients: usize,
    pub connect_s: f64,
    pub server_rss_before_kb: u64,
    pub server_rss_after_kb: u64,
    /// (after - before) / clients.
    pub bytes_per_client: u64,
    /// RSS once half the clients were connected, and (after - half) /
    /// (the clients of the second half).
    pub server_rss_half_kb: u64,
    pub marginal_bytes_per_client: u64,
    /// Changes delivered to all clients during the run, and their latency.
    pub deliveries: u64,
    pub resyncs: u64,
    pub latency: Latency,
}

pub struct FeedClients {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<(Histogram<u64>, u64)>>,
    connect_s: f64,
    /// Before, at half, after.
    rss: (u64, u64, u64),
}

/// The resident memory of process `pid`, in kB (0 if unknown).
pub fn rss_kb(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn ts_ms(ts: &str) -> Option<i128> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() / 1_000_000)
}

/// The value of `"ts":"..."` in a feed message.
fn ts_of(text: &str) -> Option<&str> {
    let rest = &text[text.find("\"ts\":\"")? + 6..];
    Some(&rest[..rest.find('"')?])
}

fn now_ms() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects clients `range` (at most 256 handshakes at a time), each
/// following one of `locations` in turn, and waits for every snapshot.
async fn connect_some(
    ws_base: &str,
    token: &Option<String>,
    locations: &[String],
    range: std::ops::Range<usize>,
) -> Result<Vec<Client>, String> {
    let gate = Arc::new(Semaphore::new(256));
    let mut pending = Vec::with_capacity(range.len());
    for k in range {
        let mut url = format!(
            "{ws_base}/v1/feed?location={}",
            locations[k % locations.len()]
        );
        if let Some(t) = token {
            url.push_str(&format!("&token={t}"));
        }
        let gate = gate.clone();
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(|e| format!("feed client {k}: {e}"))?;
            // The snapshot first.
            loop {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("\"snapshot\"") => break,
                    Ok(Some(Ok(_))) => continue,
                    _ => return Err(format!("feed client {k}: no snapshot")),
                }
            }
            Ok::<_, String>(ws)
        }));
        if (k + 1) % 2000 == 0 {
            eprintln!("  feed clients: {} connecting", k + 1);
        }
    }
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(p.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

/// Connects `n` clients, spread over `locations`, in two halves (the
/// server's RSS read before, between and after, each once it settled).
pub async fn connect(
    base: &str,
    token: &Option<String>,
    locations: &[String],
    n: usize,
    server_pid: Option<u32>,
) -> Result<FeedClients, String> {
    let settle = Duration::from_millis(500);
    let rss_before = rss_kb(server_pid);
    let ws_base = base.replacen("http://", "ws://", 1);
    let (stop, stopped) = watch::channel(false);
    let t0 = Instant::now();
    let mut clients = connect_some(&ws_base, token, locations, 0..n / 2).await?;
    tokio::time::sleep(settle).await;
    let rss_half = rss_kb(server_pid);
    clients.extend(connect_some(&ws_base, token, locations, n / 2..n).await?);
    let connect_s = t0.elapsed().as_secs_f64() - settle.as_secs_f64();
    let mut tasks = Vec::with_capacity(n);
    for ws in clients {
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let mut h =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut resyncs = 0;
            let mut ws = ws;
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if t.contains("\"type\":\"snapshot\"") {
                                resyncs += 1;
                                continue;
                            }
                            // The `ts` field only: a full parse of every
                            // message would cost this harness more than
                            // the server spends sending it.
                            if let Some(at) = ts_of(&t).and_then(ts_ms) {
                                let us = ((now_ms() - at).max(0) * 1000) as u64;
                                let _ = h.record(us.max(1));
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = stopped.changed() => break,
                }
            }
            let _ = ws.close(None).await;
            (h, resyncs)
        }));
    }
    // Let the server settle its buffers before reading its memory.
    tokio::time::sleep(settle).await;
    let rss_after = rss_kb(server_pid);
    eprintln!(
        "  feed clients: {n} connected in {connect_s:.1} s; server RSS {rss_before} kB -> {rss_half} kB (half) -> {rss_after} kB"
    );
    Ok(FeedClients {
        stop,
        tasks,
        connect_s,
        rss: (rss_before, rss_half, rss_after),
    })
}

impl FeedClients {
    /// Stops the clients (after the changes in flight arrived) and sums up.
    pub async fn finish(self) -> FeedResult {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = self.stop.send(true);
        let clients = self.tasks.len();
        let mut all =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
        let mut resyncs = 0;
        for t in self.tasks {
            if let Ok((h, r)) = t.await {
                let _ = all.add(&h);
                resyncs += r;
            }
        }
        let (before, half, after) = self.rss;
        let second_half = (clients - clients / 2).max(1) as u64;
        FeedResult {
            clients,
            connect_s: self.connect_s,
            server_rss_before_kb: before,
            server_rss_after_kb: after,
            bytes_per_client: after.saturating_sub(before) * 1024 / clients.max(1) as u64,
            server_rss_half_kb: half,
            marginal_bytes_per_client: after.saturating_sub(half) * 1024 / second_half,
            deliveries: all.len(),
            resyncs,
            latency: Latency::of(&all),
        }
    }
}
