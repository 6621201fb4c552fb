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

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use warp::hyper::upgrade::Upgraded;
use warp::hyper::Body;

use super::error::{ApiError, Code};
use super::AppState;
use crate::actors::FeedView;
use crate::config::Role;
use crate::domain::catalog::SkuIdx;
use crate::domain::stock::StockRecord;
use crate::feed::{Change, Scope, Sink};
use crate::metrics::Route;

/// Changes queued for one session at most (about 100 bytes each).
pub const SESSION_QUEUE: usize = 128;

/// A snapshot goes out in frames of this size (one text message, api.md),
/// so that no connection's write buffer grows past a few of them: a
/// snapshot of 1,000 records is ~150 KB, and the buffer would keep that
/// capacity for the life of the connection.
const SNAPSHOT_PART: usize = 8 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig {
        // Written to the socket once this much is buffered (and on flush).
        write_buffer_size: SNAPSHOT_PART,
        // Clients send pongs and closes only.
        max_message_size: Some(64 * 1024),
        max_frame_size: Some(64 * 1024),
        ..WebSocketConfig::default()
    }
}

type Socket = WebSocketStream<Upgraded>;

/// A session's bounded queue, as the feed's sink: the change (for its
/// shard order) and its text, encoded once for every session.
struct Queue(mpsc::Sender<(Change, Arc<str>)>);

impl Sink for Queue {
    fn offer(&self, c: &Change, text: &Arc<str>) -> bool {
        self.0.try_send((*c, text.clone())).is_ok()
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
/// largest message sent, a snapshot).
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
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => {
                let ws =
                    WebSocketStream::from_raw_socket(up, WsRole::Server, Some(ws_config())).await;
                session(ws, state, scope, closing).await;
            }
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

fn record(state: &AppState, sku: SkuIdx, r: &StockRecord) -> Option<Value> {
    let c = state.engine.catalog();
    let (sku, _) = c.sku(sku)?;
    let (loc, _) = c.location(r.location)?;
    Some(crate::feed::record_json(sku.as_str(), loc.as_str(), r))
}

fn snapshot_text(state: &AppState, view: &FeedView) -> String {
    let records: Vec<Value> = view
        .records
        .iter()
        .filter_map(|(s, r)| record(state, *s, r))
        .collect();
    json!({"type": "snapshot", "records": records}).to_string()
}

/// Sends the snapshot as one text message in `SNAPSHOT_PART` frames.
async fn send_snapshot<S>(tx: &mut S, text: String) -> Result<(), ()>
where
    S: futures::Sink<Message> + Unpin,
{
    let bytes = text.into_bytes();
    let parts = bytes.len().div_ceil(SNAPSHOT_PART).max(1);
    for (i, part) in bytes.chunks(SNAPSHOT_PART).enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.to_vec(), opcode, i + 1 == parts);
        tx.feed(Message::Frame(frame)).await.map_err(|_| ())?;
        // Out before the next parts pile up in the buffer.
        tx.flush().await.map_err(|_| ())?;
    }
    Ok(())
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

async fn session(
    socket: Socket,
    state: Arc<AppState>,
    scope: Scope,
    mut closing: watch::Receiver<bool>,
) {
    let (mut tx, mut rx) = socket.split();
    let (queue, mut changes) = mpsc::channel(SESSION_QUEUE);
    let (sub, view) = match state
        .engine
        .feed_subscribe(scope, Box::new(Queue(queue)))
        .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "feed: no snapshot, closing");
            let _ = tx.send(close(1011, "unavailable")).await;
            return;
        }
    };
    if send_snapshot(&mut tx, snapshot_text(&state, &view))
        .await
        .is_err()
    {
        return;
    }
    // Only the shards' counts are kept: the records went out.
    let mut seen = view.seen;
    let idle = state.feed_idle;
    let mut ping = tokio::time::interval(idle / 3);
    ping.tick().await;
    // A lagging session's queue is no longer fed: look at the flag often.
    let mut lag_check = tokio::time::interval(Duration::from_millis(100));
    let mut last_heard = tokio::time::Instant::now();
    loop {
        if sub.lagging.load(Ordering::Acquire) {
            // Fell behind: a fresh snapshot instead of the backlog.
            sub.lagging.store(false, Ordering::Release);
            while changes.try_recv().is_ok() {}
            let view = match state.engine.feed_view(scope).await {
                Ok(v) => v,
                Err(_) => break,
            };
            if send_snapshot(&mut tx, snapshot_text(&state, &view))
                .await
                .is_err()
            {
                break;
            }
            seen = view.seen;
            continue;
        }
        tokio::select! {
            c = changes.recv() => {
                let Some(first) = c else { break };
                // Everything queued goes out with one flush (one write for
                // many changes when the feed is busy).
                // At most a queue's worth, so that pings, closes and the
                // lag check still get their turn under a steady stream.
                let mut failed = false;
                let mut next = Some(first);
                let mut batch = 0;
                while let Some((c, text)) = next.take() {
                    // Already in the snapshot.
                    let had = seen.get(c.shard as usize).copied().unwrap_or(0);
                    if c.shard_seq > had && tx.feed(Message::Text(text.to_string())).await.is_err() {
                        failed = true;
                        break;
                    }
                    batch += 1;
                    if batch < SESSION_QUEUE {
                        next = changes.try_recv().ok();
                    }
                }
                if failed || tx.flush().await.is_err() {
                    break;
                }
            }
            m = rx.next() => {
                match m {
                    Some(Ok(m)) if m.is_close() => break,
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                    _ => break,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > idle {
                    let _ = tx.send(close(1000, "idle")).await;
                    break;
                }
                if tx.send(Message::Ping(Vec::new())).await.is_err() {
                    break;
                }
            }
            _ = lag_check.tick() => {}
            _ = closing.changed() => {
                let _ = tx.send(close(1001, "server shutting down")).await;
                break;
            }
        }
    }
    let _ = tx.close().await;
}
