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
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use warp::http::{HeaderMap, Response};
use warp::hyper::Body;
use warp::ws::{Message, WebSocket, Ws};

use super::error::{ApiError, Code};
use super::inventory::record_json;
use super::AppState;
use crate::actors::stock_shard::RecordView;
use crate::actors::FeedView;
use crate::config::Role;
use crate::domain::catalog::SkuIdx;
use crate::domain::stock::StockRecord;
use crate::feed::{Change, Scope, Sink};

/// Changes queued for one session at most (about 100 bytes each).
pub const SESSION_QUEUE: usize = 128;

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

/// Checks the request and answers the upgrade, or the refusal.
pub fn upgrade(
    state: Arc<AppState>,
    ws: Ws,
    query: &str,
    headers: &HeaderMap,
    closing: watch::Receiver<bool>,
) -> Result<Response<Body>, ApiError> {
    let token = query_param(query, "token");
    let principal = state.auth.authenticate(headers, token)?;
    let scope = match (query_param(query, "location"), query_param(query, "sku")) {
        (Some(l), None) if !l.is_empty() => {
            principal.require_location(l)?;
            let idx = state
                .engine
                .catalog()
                .location_idx(l)
                .ok_or_else(|| ApiError::new(Code::NotFound, format!("no location {l}")))?;
            Scope::Location(idx)
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
            Scope::Sku(idx)
        }
        _ => {
            return Err(ApiError::validation(vec![super::error::FieldError {
                field: "location".into(),
                message: "exactly one of ?location= or ?sku= is required".into(),
            }]))
        }
    };
    let reply = ws.on_upgrade(move |socket| session(socket, state, scope, closing));
    Ok(warp::reply::Reply::into_response(reply))
}

fn record(state: &AppState, sku: SkuIdx, r: &StockRecord) -> Option<Value> {
    let c = state.engine.catalog();
    let (sku, _) = c.sku(sku)?;
    let (loc, _) = c.location(r.location)?;
    // The feed carries no rotation figure: it is a daily one.
    let mut v = record_json(
        sku.as_str(),
        loc.as_str(),
        &RecordView {
            record: *r,
            rotation: 0.0,
        },
    );
    if let Some(o) = v.as_object_mut() {
        o.remove("rotation");
    }
    Some(v)
}

fn snapshot_message(state: &AppState, view: &FeedView) -> Message {
    let records: Vec<Value> = view
        .records
        .iter()
        .filter_map(|(s, r)| record(state, *s, r))
        .collect();
    Message::text(json!({"type": "snapshot", "records": records}).to_string())
}

async fn session(
    socket: WebSocket,
    state: Arc<AppState>,
    scope: Scope,
    mut closing: watch::Receiver<bool>,
) {
    let (mut tx, mut rx) = socket.split();
    let (queue, mut changes) = mpsc::channel(SESSION_QUEUE);
    let (sub, mut view) = match state
        .engine
        .feed_subscribe(scope, Box::new(Queue(queue)))
        .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "feed: no snapshot, closing");
            let _ = tx.send(Message::close_with(1011u16, "unavailable")).await;
            return;
        }
    };
    if tx.send(snapshot_message(&state, &view)).await.is_err() {
        return;
    }
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
            match state.engine.feed_view(scope).await {
                Ok(v) => view = v,
                Err(_) => break,
            }
            if tx.send(snapshot_message(&state, &view)).await.is_err() {
                break;
            }
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
                    let seen = view.seen.get(c.shard as usize).copied().unwrap_or(0);
                    if c.shard_seq > seen && tx.feed(Message::text(&*text)).await.is_err() {
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
                    let _ = tx.send(Message::close_with(1000u16, "idle")).await;
                    break;
                }
                if tx.send(Message::ping(Vec::new())).await.is_err() {
                    break;
                }
            }
            _ = lag_check.tick() => {}
            _ = closing.changed() => {
                let _ = tx.send(Message::close_with(1001u16, "server shutting down")).await;
                break;
            }
        }
    }
    let _ = tx.close().await;
}
