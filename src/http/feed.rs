//! `GET /v1/feed?location=..` or `?sku=..`, upgraded to a WebSocket (api.md,
//! Stock feed). Everything that can be refused is refused before the
//! upgrade, as problem+json: a bad scope, a missing or wrong token, a store
//! token following another store.
//!
//! A session: subscribe, send the scope's snapshot, then every committed
//! change after it (`{"type":"stock", <record>, "ts"}`), in each record's
//! version order. Its queue is bounded (`SESSION_QUEUE`): a reader that
//! falls behind is sent a fresh snapshot instead of the backlog. A client
//! silent for `[feed] idle_timeout_s` (60 s) is closed, and pinged every
//! third of it; on SIGTERM every session is closed with 1001 (going away).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use warp::hyper::upgrade::Upgraded;
use warp::hyper::Body;

use super::error::{ApiError, Code};
use super::AppState;
use crate::actors::{EngineError, FeedView};
use crate::config::Role;
use crate::feed::ws::{self, Incoming, ReadError, Reader};
use crate::feed::{Batch, Scope, Sink};
use crate::metrics::Route;

/// Batches queued for one session at most: a batch is what one window of
/// the feed (`[feed] window_ms`) changed in the session's scope, shared by
/// every session of the scope.
pub const SESSION_QUEUE: usize = 64;

/// The bytes of the batches a session holds (queued or being written) at
/// most, beyond one: what a reader that stopped reading can keep alive
/// before it is resynced instead. One batch is always taken, so the bound
/// is this or one window's changes of the scope (no more than a snapshot).
pub const SESSION_BYTES: usize = 128 * 1024;

/// Snapshots built at once at most (see `snapshot`).
pub const SNAPSHOTS_AT_ONCE: usize = 4;

/// A session's bounded queue, as the feed's sink.
struct Queue {
    tx: mpsc::Sender<Arc<Batch>>,
    /// Bytes of the batches the session holds; it subtracts what it wrote.
    held: Arc<AtomicUsize>,
}

impl Sink for Queue {
    fn offer(&self, b: &Arc<Batch>) -> bool {
        let n = b.wire.len();
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        if (before > 0 && before + n > SESSION_BYTES) || self.tx.try_send(b.clone()).is_err() {
            self.held.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// A WebSocket upgrade of `/v1/feed` (the server routes it here before
/// the rest of the API: warp's own WebSocket keeps buffers as large as the
/// largest message sent, a snapshot, and encodes every message per
/// connection; the feed's frames are encoded once, `feed::ws`).
pub fn is_upgrade(req: &Request<Body>) -> bool {
    req.uri().path() == "/v1/feed"
        && req.method() == Method::GET
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Checks the request and answers the upgrade (101), or the refusal as
/// problem+json before any upgrade.
pub fn accept(state: Arc<AppState>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let resp = handshake(state.clone(), req).unwrap_or_else(ApiError::into_response);
    state.engine.metrics().observe_request(
        Route::Feed,
        resp.status().as_u16(),
        started.elapsed().as_micros() as u64,
    );
    resp
}

fn handshake(state: Arc<AppState>, mut req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    let scope = check(&state, &query, req.headers())?;
    let bad = |m: &str| ApiError::new(Code::BadRequest, m.to_string());
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| bad("Sec-WebSocket-Key is required"))?;
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err(bad("Sec-WebSocket-Version must be 13"));
    }
    let accept_key = derive_accept_key(key.as_bytes());
    let upgrade = warp::hyper::upgrade::on(&mut req);
    // Taken now: the server waits for every session to close on SIGTERM.
    let closing = state.closing.subscribe();
    state.feed_rt.clone().spawn(async move {
        match upgrade.await {
            Ok(up) => session(up, state, scope, closing).await,
            Err(e) => tracing::debug!(error = %e, "feed: the upgrade did not complete"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
        .body(Body::empty())
        .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))
}

/// The scope asked for, if the token may follow it.
fn check(state: &AppState, query: &str, headers: &HeaderMap) -> Result<Scope, ApiError> {
    let token = query_param(query, "token");
    let principal = state.auth.authenticate(headers, token)?;
    match (query_param(query, "location"), query_param(query, "sku")) {
        (Some(l), None) if !l.is_empty() => {
            principal.require_location(l)?;
            let idx = state
                .engine
                .catalog()
                .location_idx(l)
                .ok_or_else(|| ApiError::new(Code::NotFound, format!("no location {l}")))?;
            Ok(Scope::Location(idx))
        }
        (None, Some(s)) if !s.is_empty() => {
            if let Role::Store(_) = principal.role {
                return Err(super::auth::forbidden(
                    "a store token may only follow its own location (?location=)",
                ));
            }
            let idx = state
                .engine
                .catalog()
                .sku_idx(s)
                .ok_or_else(|| ApiError::new(Code::NotFound, format!("no SKU {s}")))?;
            Ok(Scope::Sku(idx))
        }
        _ => Err(ApiError::validation(vec![super::error::FieldError {
            field: "location".into(),
            message: "exactly one of ?location= or ?sku= is required".into(),
        }])),
    }
}

/// The snapshot message of the view `view` gives (with what else it
/// gives), built under the snapshot gate: when thousands of store apps
/// reconnect at once (a restart, a network blip), the snapshots are built a
/// few at a time, so the memory and CPU of the burst stay those of a few
/// snapshots (~140 bytes a record).
async fn snapshot<T>(
    state: &AppState,
    view: impl std::future::Future<Output = Result<(T, FeedView), EngineError>>,
) -> Result<(T, Vec<u8>, Vec<u64>), EngineError> {
    let _permit = state
        .feed_snapshots
        .acquire()
        .await
        .map_err(|_| EngineError::Stopped)?;
    let (with, view) = view.await?;
    let text = crate::feed::snapshot_message(&state.engine.catalog(), &view.records);
    Ok((with, text, view.seen))
}

/// The write side of a session: every write bounded by `limit`, so that a
/// client that stopped reading cannot hold its session forever.
struct Writer {
    w: WriteHalf<Upgraded>,
    limit: Duration,
}

impl Writer {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ()> {
        match tokio::time::timeout(self.limit, self.w.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// The snapshot as one text message, written from the text itself (no
    /// copy of it is kept once it is out).
    async fn snapshot(&mut self, text: Vec<u8>) -> Result<(), ()> {
        self.write(&ws::header(ws::OP_TEXT, text.len())).await?;
        self.write(&text).await
    }

    /// A batch's messages, less those the snapshot already holds (a
    /// change at or before its shard's count in the snapshot).
    async fn batch(&mut self, b: &Batch, seen: &[u64]) -> Result<(), ()> {
        let old = |c: &crate::feed::Change| {
            c.shard_seq <= seen.get(c.shard as usize).copied().unwrap_or(0)
        };
        if !b.changes.iter().any(old) {
            return self.write(&b.wire).await;
        }
        let mut fresh = Vec::new();
        for (i, c) in b.changes.iter().enumerate() {
            if !old(c) {
                fresh.extend_from_slice(b.message(i));
            }
        }
        self.write(&fresh).await
    }

    /// Sends a close frame and ends the connection. The client's close
    /// is not awaited: the sessions that close are those of a client gone
    /// silent, one breaking the protocol, or the server stopping, and
    /// none of them should hold the session any longer.
    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self.write(&ws::close_frame(code, reason)).await;
        let _ = self.w.shutdown().await;
    }
}

async fn session(
    up: Upgraded,
    state: Arc<AppState>,
    scope: Scope,
    mut closing: watch::Receiver<bool>,
) {
    let (mut rd, w) = tokio::io::split(up);
    let idle = state.feed_idle;
    let mut tx = Writer { w, limit: idle };
    let mut reader = Reader::default();
    let (queue, mut batches) = mpsc::channel(SESSION_QUEUE);
    let held = Arc::new(AtomicUsize::new(0));
    let sink = Queue {
        tx: queue,
        held: held.clone(),
    };
    // Subscribed first: a change after the view then reaches the sink.
    let first = state.engine.feed_subscribe(scope, Box::new(sink));
    let (sub, text, mut seen) = match snapshot(&state, first).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "feed: no snapshot, closing");
            tx.close(1011, "unavailable").await;
            return;
        }
    };
    // Only the shards' counts are kept once the records went out.
    if tx.snapshot(text).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(idle / 3);
    ping.tick().await;
    // A lagging session's queue is no longer fed: look at the flag often.
    let mut lag_check = tokio::time::interval(Duration::from_millis(100));
    let mut last_heard = tokio::time::Instant::now();
    loop {
        if sub.lagging.load(Ordering::Acquire) {
            // Fell behind: a fresh snapshot instead of the backlog.
            sub.lagging.store(false, Ordering::Release);
            while let Ok(b) = batches.try_recv() {
                held.fetch_sub(b.wire.len(), Ordering::AcqRel);
            }
            let view = async { Ok(((), state.engine.feed_view(scope).await?)) };
            let Ok(((), text, now_seen)) = snapshot(&state, view).await else {
                break;
            };
            if tx.snapshot(text).await.is_err() {
                break;
            }
            seen = now_seen;
            continue;
        }
        tokio::select! {
            b = batches.recv() => {
                let Some(first) = b else { break };
                // What else is queued goes out now too; at most a queue's
                // worth, so that pings, closes and the lag check still get
                // their turn under a steady stream.
                let mut next = Some(first);
                let mut sent = 0;
                let mut failed = false;
                while let Some(b) = next.take() {
                    let wrote = tx.batch(&b, &seen).await;
                    held.fetch_sub(b.wire.len(), Ordering::AcqRel);
                    if wrote.is_err() {
                        failed = true;
                        break;
                    }
                    sent += 1;
                    if sent < SESSION_QUEUE {
                        next = batches.try_recv().ok();
                    }
                }
                if failed {
                    break;
                }
            }
            m = reader.next(&mut rd) => {
                last_heard = tokio::time::Instant::now();
                match m {
                    Ok(Incoming::Ping(p)) => {
                        let mut pong = Vec::with_capacity(p.len() + 2);
                        ws::frame_into(&mut pong, ws::OP_PONG, &p);
                        if tx.write(&pong).await.is_err() {
                            break;
                        }
                    }
                    Ok(Incoming::Pong | Incoming::Data) => {}
                    Ok(Incoming::Close(code)) => {
                        // The closing handshake: the client's code echoed.
                        tx.close(code.unwrap_or(1000), "").await;
                        break;
                    }
                    Err(ReadError::Gone) => break,
                    Err(ReadError::Protocol(code, why)) => {
                        tx.close(code, why).await;
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > idle {
                    tx.close(1000, "idle").await;
                    break;
                }
                if tx.write(&ws::header(ws::OP_PING, 0)).await.is_err() {
                    break;
                }
            }
            _ = lag_check.tick() => {}
            _ = closing.changed() => {
                tx.close(1001, "server shutting down").await;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(bytes: usize) -> Arc<Batch> {
        Arc::new(Batch {
            wire: vec![0; bytes],
            ..Batch::default()
        })
    }

    #[test]
    fn a_session_holds_one_batch_of_any_size_and_more_only_within_its_bytes() {
        let (tx, mut rx) = mpsc::channel(SESSION_QUEUE);
        let held = Arc::new(AtomicUsize::new(0));
        let q = Queue {
            tx,
            held: held.clone(),
        };
        assert!(q.offer(&batch(SESSION_BYTES * 4)), "one batch always goes");
        assert!(!q.offer(&batch(10)), "nothing more past the bound");
        assert_eq!(held.load(Ordering::Acquire), SESSION_BYTES * 4);
        // The session wrote it and gave its bytes back.
        let b = rx.try_recv().expect("queued");
        held.fetch_sub(b.wire.len(), Ordering::AcqRel);
        let small = SESSION_BYTES / 4;
        for _ in 0..4 {
            assert!(q.offer(&batch(small)));
        }
        assert!(!q.offer(&batch(1)), "the bound counts bytes");
        assert_eq!(held.load(Ordering::Acquire), SESSION_BYTES);
        // And the count: many small batches stop at SESSION_QUEUE.
        while rx.try_recv().is_ok() {}
        held.store(0, Ordering::Release);
        let taken = (0..SESSION_QUEUE * 2)
            .filter(|_| q.offer(&batch(1)))
            .count();
        assert_eq!(taken, SESSION_QUEUE);
        assert_eq!(held.load(Ordering::Acquire), SESSION_QUEUE);
    }
}
