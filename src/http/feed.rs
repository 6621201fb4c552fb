//! `GET /v1/feed?location=..` or `?sku=..`, upgraded to a WebSocket (api.md,
//! Stock feed). Everything that can be refused is refused before the
//! upgrade, as problem+json: a bad scope, a missing or wrong token, a store
//! token following another store.
//!
//! A session: subscribe, send the scope's snapshot, then every committed
//! change after it (`{"type":"stock", <record>, "ts"}`), in each record's
//! version order. Its queue is bounded (`FEED_SESSION_QUEUE`): a reader that
//! falls behind is sent a fresh snapshot instead of the backlog. A client
//! silent for `[feed] idle_timeout_s` (60 s) is closed, and pinged every
//! third of it; on SIGTERM every session is closed with 1001 (going away).

use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use warp::hyper::upgrade::Upgraded;
use warp::hyper::Body;

use super::auth::Auth;
use super::error::{ApiError, Code};
use crate::actors::{Engine, EngineError};
use crate::config::Role;
use crate::feed::ws::{self, Incoming, ReadError, Reader};
use crate::feed::{Batch, Scope, Sink, Subscription};
use crate::limits::FEED_FOLLOW_PATIENCE;
use crate::limits::FEED_SESSION_BYTES;
use crate::limits::FEED_SESSION_QUEUE;
use crate::limits::FEED_SNAPSHOTS_AT_ONCE;
use crate::metrics::{Metrics, Route};

/// What a session follows, by name: each part of a cluster node's feed
/// (a shard) names it in its own catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Location(String),
    Sku(String),
}

impl Wanted {
    /// The scope in `catalog`, if it names it.
    pub fn scope(&self, catalog: &crate::domain::catalog::Catalog) -> Option<Scope> {
        match self {
            Wanted::Location(l) => catalog.location_idx(l).map(Scope::Location),
            Wanted::Sku(s) => catalog.sku_idx(s).map(Scope::Sku),
        }
    }

    /// 404: the catalog names no such location or SKU.
    pub fn missing(&self) -> ApiError {
        match self {
            Wanted::Location(l) => ApiError::new(Code::NotFound, format!("no location {l}")),
            Wanted::Sku(s) => ApiError::new(Code::NotFound, format!("no SKU {s}")),
        }
    }
}

/// One part of what a session follows (a single node's engine is one;
/// a cluster node has one per shard): its subscription, and per stock
/// shard of the part the count of changes its snapshot holds (a change
/// at or before it is dropped: `Change::shard_seq`).
pub struct Part {
    pub sub: Subscription,
    pub seen: Vec<u64>,
}

/// A session's subscriptions and the snapshot message they start from
/// (`{"type":"snapshot","records":[...]}`, every part's records).
pub struct Following {
    pub parts: Vec<Part>,
    pub text: Vec<u8>,
}

/// Where a session's changes come from.
pub trait Feeds: Send + Sync + 'static {
    /// 404 unless the scope exists.
    fn check(&self, want: &Wanted) -> Result<(), ApiError>;
    /// Subscribes `sink(part)` to each part, then reads the snapshot
    /// (subscribed first: a change after the snapshot reaches the sink).
    fn follow<'a>(
        &'a self,
        want: &'a Wanted,
        sink: &'a (dyn Fn(usize) -> Box<dyn Sink> + Send + Sync),
    ) -> BoxFuture<'a, Result<Following, EngineError>>;
    /// Changes when what serves `want` changes (a cluster shard taken or
    /// given up on this node): the session follows again, from a fresh
    /// snapshot.
    fn moves(&self, want: &Wanted) -> u64;
}

/// A single node's feed: its engine, one part.
pub struct EngineFeeds(pub Engine);

impl Feeds for EngineFeeds {
    fn check(&self, want: &Wanted) -> Result<(), ApiError> {
        want.scope(&self.0.catalog())
            .map(|_| ())
            .ok_or_else(|| want.missing())
    }

    fn follow<'a>(
        &'a self,
        want: &'a Wanted,
        sink: &'a (dyn Fn(usize) -> Box<dyn Sink> + Send + Sync),
    ) -> BoxFuture<'a, Result<Following, EngineError>> {
        Box::pin(async move {
            let scope = want.scope(&self.0.catalog()).ok_or(EngineError::Stopped)?;
            let (sub, view) = self.0.feed_subscribe(scope, sink(0)).await?;
            let mut text = crate::feed::SnapshotText::default();
            text.add(&self.0.catalog(), &view.records);
            Ok(Following {
                parts: vec![Part {
                    sub,
                    seen: view.seen,
                }],
                text: text.finish(),
            })
        })
    }

    fn moves(&self, _: &Wanted) -> u64 {
        0
    }
}

/// What the feed's sessions share on one server (a single node or a
/// cluster node).
pub struct FeedHost {
    pub feeds: Arc<dyn Feeds>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// Set when the server stops: sessions close with 1001.
    pub closing: watch::Sender<bool>,
    /// A client silent this long is closed (`[feed] idle_timeout_s`).
    pub idle: Duration,
    /// Snapshots built at once at most (`FEED_SNAPSHOTS_AT_ONCE`).
    pub snapshots: Semaphore,
    /// Where the sessions run (`[feed] threads`).
    pub rt: tokio::runtime::Handle,
    /// Sessions open now.
    pub sessions: AtomicU64,
    /// Server-Sent Events streams of the events (`http::events`): one
    /// permit each, `SSE_STREAMS_MAX` in all.
    pub streams: Arc<Semaphore>,
}

impl FeedHost {
    pub fn new(
        feeds: Arc<dyn Feeds>,
        auth: Auth,
        metrics: Arc<Metrics>,
        idle: Duration,
        rt: tokio::runtime::Handle,
    ) -> FeedHost {
        FeedHost {
            feeds,
            auth,
            metrics,
            closing: watch::channel(false).0,
            idle,
            snapshots: Semaphore::new(FEED_SNAPSHOTS_AT_ONCE),
            rt,
            sessions: AtomicU64::new(0),
            streams: Arc::new(Semaphore::new(crate::limits::SSE_STREAMS_MAX)),
        }
    }

    /// Closes every session with 1001 (going away), giving them up to
    /// two seconds to say so.
    pub async fn close_all(&self) {
        let _ = self.closing.send(true);
        let t0 = Instant::now();
        while self.closing.receiver_count() > 0 && t0.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A batch for a session, with the round and part it came from: batches
/// of an earlier round (subscriptions dropped for a fresh snapshot) are
/// dropped.
struct Tagged {
    round: u64,
    part: usize,
    batch: Arc<Batch>,
}

/// A session's bounded queue, as one part's sink.
struct Queue {
    tx: mpsc::Sender<Tagged>,
    /// Bytes of the batches the session holds; it subtracts what it wrote.
    held: Arc<AtomicUsize>,
    round: u64,
    part: usize,
}

impl Sink for Queue {
    fn offer(&self, b: &Arc<Batch>) -> bool {
        let n = b.wire.len();
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        let tagged = Tagged {
            round: self.round,
            part: self.part,
            batch: b.clone(),
        };
        if (before > 0 && before + n > FEED_SESSION_BYTES) || self.tx.try_send(tagged).is_err() {
            self.held.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }
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
pub fn accept(host: Arc<FeedHost>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let resp = handshake(host.clone(), req).unwrap_or_else(ApiError::into_response);
    host.metrics.observe_request(
        Route::Feed,
        resp.status().as_u16(),
        started.elapsed().as_micros() as u64,
    );
    resp
}

fn handshake(host: Arc<FeedHost>, mut req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    let want = check(&host, &query, req.headers())?;
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
    let closing = host.closing.subscribe();
    host.rt.clone().spawn(async move {
        match upgrade.await {
            Ok(up) => {
                host.sessions.fetch_add(1, Ordering::Relaxed);
                session(up, &host, want, closing).await;
                host.sessions.fetch_sub(1, Ordering::Relaxed);
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
fn check(host: &FeedHost, query: &str, headers: &HeaderMap) -> Result<Wanted, ApiError> {
    let token = super::input::query_param(query, "token");
    let principal = host.auth.authenticate(headers, token.as_deref())?;
    let want = match (
        super::input::query_param(query, "location"),
        super::input::query_param(query, "sku"),
    ) {
        (Some(l), None) if !l.is_empty() => {
            principal.require_location(&l)?;
            Wanted::Location(l.into_owned())
        }
        (None, Some(s)) if !s.is_empty() => {
            if let Role::Store(_) = principal.role {
                return Err(super::auth::forbidden(
                    "a store token may only follow its own location (?location=)",
                ));
            }
            Wanted::Sku(s.into_owned())
        }
        _ => {
            return Err(ApiError::validation(vec![super::error::FieldError {
                field: "location".into(),
                message: "exactly one of ?location= or ?sku= is required".into(),
            }]))
        }
    };
    host.feeds.check(&want)?;
    Ok(want)
}

/// Follows `want` (round `round`, its batches into `queue`), building the
/// snapshot under the snapshot gate: when thousands of store apps
/// reconnect at once (a restart, a network blip), the snapshots are built
/// a few at a time, so the memory and CPU of the burst stay those of a
/// few snapshots (~140 bytes a record).
///
/// A part with nothing to feed it for a moment (a cluster shard being
/// taken over on this node: between its copy and its engine) is waited
/// for, up to `FEED_FOLLOW_PATIENCE`.
async fn follow(
    host: &FeedHost,
    want: &Wanted,
    round: u64,
    queue: &mpsc::Sender<Tagged>,
    held: &Arc<AtomicUsize>,
) -> Result<Following, EngineError> {
    let sink = |part: usize| -> Box<dyn Sink> {
        Box::new(Queue {
            tx: queue.clone(),
            held: held.clone(),
            round,
            part,
        })
    };
    let started = Instant::now();
    loop {
        let permit = host
            .snapshots
            .acquire()
            .await
            .map_err(|_| EngineError::Stopped)?;
        match host.feeds.follow(want, &sink).await {
            Ok(f) => return Ok(f),
            Err(e) if started.elapsed() >= FEED_FOLLOW_PATIENCE => return Err(e),
            Err(_) => {
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
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

async fn session(up: Upgraded, host: &FeedHost, want: Wanted, mut closing: watch::Receiver<bool>) {
    let (mut rd, w) = tokio::io::split(up);
    let idle = host.idle;
    let mut tx = Writer { w, limit: idle };
    let mut reader = Reader::default();
    let (queue, mut batches) = mpsc::channel::<Tagged>(FEED_SESSION_QUEUE);
    let held = Arc::new(AtomicUsize::new(0));
    // Each fresh snapshot starts a round: batches of an earlier one are
    // dropped (their subscriptions were). The first round starts at once.
    let mut round = 0;
    let mut moves = 0;
    let mut following: Option<Following> = None;
    let mut ping = tokio::time::interval(idle / 3);
    ping.tick().await;
    // A lagging session's queue is no longer fed: look at the flags often.
    let mut lag_check = tokio::time::interval(Duration::from_millis(100));
    let mut last_heard = tokio::time::Instant::now();
    // What feeds the scope is asked on the lag check's tick (and for a
    // fresh snapshot), not on every batch: on a cluster node it reads a
    // lock per shard.
    let mut look = true;
    loop {
        let lagging = following.as_ref().is_none_or(|f| {
            f.parts
                .iter()
                .any(|p| p.sub.lagging.load(Ordering::Acquire))
        });
        let now_moves = if look || lagging {
            host.feeds.moves(&want)
        } else {
            moves
        };
        look = false;
        if lagging || now_moves != moves {
            // The first snapshot; or fell behind, or what serves the scope
            // changed (a cluster shard changed hands here): a fresh
            // snapshot instead of the backlog, from subscriptions made
            // again.
            moves = now_moves;
            round += 1;
            while let Ok(t) = batches.try_recv() {
                held.fetch_sub(t.batch.wire.len(), Ordering::AcqRel);
            }
            let mut f = match follow(host, &want, round, &queue, &held).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "feed: no snapshot, closing");
                    tx.close(1011, "unavailable").await;
                    break;
                }
            };
            // Only the parts' counts are kept once the records went out.
            if tx.snapshot(std::mem::take(&mut f.text)).await.is_err() {
                break;
            }
            following = Some(f);
            continue;
        }
        let parts = following.as_ref().map_or(&[][..], |f| &f.parts[..]);
        tokio::select! {
            b = batches.recv() => {
                let Some(first) = b else { break };
                if send_queued(&mut tx, first, &mut batches, parts, round, &held).await.is_err() {
                    break;
                }
            }
            m = reader.next(&mut rd) => {
                last_heard = tokio::time::Instant::now();
                if !answer(&mut tx, m).await {
                    break;
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
            _ = lag_check.tick() => look = true,
            _ = closing.changed() => {
                tx.close(1001, "server shutting down").await;
                break;
            }
        }
    }
}

/// Writes `first` and what else is queued behind it: at most a queue's
/// worth, so that pings, closes and the lag check still get their turn
/// under a steady stream. A batch of an earlier round is dropped.
async fn send_queued(
    tx: &mut Writer,
    first: Tagged,
    batches: &mut mpsc::Receiver<Tagged>,
    parts: &[Part],
    round: u64,
    held: &AtomicUsize,
) -> Result<(), ()> {
    let mut next = Some(first);
    let mut sent = 0;
    while let Some(t) = next.take() {
        let seen = parts.get(t.part).map(|p| &p.seen[..]);
        let wrote = match seen {
            Some(seen) if t.round == round => tx.batch(&t.batch, seen).await,
            _ => Ok(()),
        };
        held.fetch_sub(t.batch.wire.len(), Ordering::AcqRel);
        wrote?;
        sent += 1;
        if sent < FEED_SESSION_QUEUE {
            next = batches.try_recv().ok();
        }
    }
    Ok(())
}

/// Answers what the client sent: a pong to its ping, the closing
/// handshake to its close (its code echoed), a close to a protocol
/// error. Whether the session goes on.
async fn answer(tx: &mut Writer, m: Result<Incoming, ReadError>) -> bool {
    match m {
        Ok(Incoming::Ping(p)) => {
            let mut pong = Vec::with_capacity(p.len() + 2);
            ws::frame_into(&mut pong, ws::OP_PONG, &p);
            tx.write(&pong).await.is_ok()
        }
        Ok(Incoming::Pong | Incoming::Data) => true,
        Ok(Incoming::Close(code)) => {
            tx.close(code.unwrap_or(1000), "").await;
            false
        }
        Err(ReadError::Gone) => false,
        Err(ReadError::Protocol(code, why)) => {
            tx.close(code, why).await;
            false
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
        let (tx, mut rx) = mpsc::channel(FEED_SESSION_QUEUE);
        let held = Arc::new(AtomicUsize::new(0));
        let q = Queue {
            tx,
            held: held.clone(),
            round: 0,
            part: 0,
        };
        assert!(
            q.offer(&batch(FEED_SESSION_BYTES * 4)),
            "one batch always goes"
        );
        assert!(!q.offer(&batch(10)), "nothing more past the bound");
        assert_eq!(held.load(Ordering::Acquire), FEED_SESSION_BYTES * 4);
        // The session wrote it and gave its bytes back.
        let b = rx.try_recv().expect("queued").batch;
        held.fetch_sub(b.wire.len(), Ordering::AcqRel);
        let small = FEED_SESSION_BYTES / 4;
        for _ in 0..4 {
            assert!(q.offer(&batch(small)));
        }
        assert!(!q.offer(&batch(1)), "the bound counts bytes");
        assert_eq!(held.load(Ordering::Acquire), FEED_SESSION_BYTES);
        // And the count: many small batches stop at FEED_SESSION_QUEUE.
        while rx.try_recv().is_ok() {}
        held.store(0, Ordering::Release);
        let taken = (0..FEED_SESSION_QUEUE * 2)
            .filter(|_| q.offer(&batch(1)))
            .count();
        assert_eq!(taken, FEED_SESSION_QUEUE);
        assert_eq!(held.load(Ordering::Acquire), FEED_SESSION_QUEUE);
    }
}
