//! The rivals: what a team would build instead of holdfast, each a thin warp
//! service answering the same endpoints of api.md that the scenarios use,
//! with the same JSON in and out, so the HTTP cost is identical and only the
//! engine behind it differs.
//!
//! - `ceiling`: an in-memory conditional decrement behind one mutex, no
//!   durability: the limit of this HTTP stack on this machine.
//! - `redis`: the same semantics as Lua scripts (EVALSHA) on a redis-server.
//! - `postgres`: conditional UPDATEs in transactions on PostgreSQL.
//!
//! Served endpoints: `PUT /v1/skus/{id}`, `PUT /v1/locations/{id}` (accepted,
//! nothing to keep), `POST /v1/inventory/batch`, `GET /v1/inventory/{l}/{s}`,
//! `POST /v1/inventory/{l}/{s}/adjustments`, `GET /v1/availability/{s}`,
//! `POST /v1/reservations`, `GET /v1/reservations/{id}`,
//! `POST /v1/reservations/{id}/{confirm|release|fulfil}`, `GET /healthz`.
//! They trust the harness's input more than holdfast trusts a client's: a
//! rival is a baseline, not a product. A cart names each (sku, location)
//! once (duplicates: 422), as the harness's carts do.

pub mod ceiling;
pub mod postgres;
pub mod redis;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use warp::http::{Method, Response, StatusCode};
use warp::hyper::Body;
use warp::Filter;

/// Request bodies over this are refused before parsing (api.md: 1 MiB).
const BODY_BYTES_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub qty: i64,
    pub location: String,
    #[serde(default)]
    pub requested: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub location: String,
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
    pub available: i64,
    pub version: i64,
}

impl Record {
    pub fn new(location: &str, sku: &str, on_hand: i64, reserved: i64, version: i64) -> Record {
        Record {
            location: location.into(),
            sku: sku.into(),
            on_hand,
            reserved,
            safety_stock: 0,
            available: (on_hand - reserved).max(0),
            version,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReservationView {
    pub id: String,
    pub status: String,
    pub expires_at: Option<String>,
    pub lines: Vec<Line>,
}

impl ReservationView {
    /// As holdfast answers it: `expires_at` only while the reservation is
    /// held or once it has expired, null otherwise.
    pub fn new(id: &str, status: &str, expires_ms: u64, lines: Vec<Line>) -> ReservationView {
        ReservationView {
            id: id.into(),
            status: status.into(),
            expires_at: matches!(status, "held" | "expired").then(|| rfc3339_ms(expires_ms)),
            lines,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Shortage {
    pub sku: String,
    pub location: String,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Confirm,
    Release,
    Fulfil,
}

pub enum TransitionOutcome {
    Done(ReservationView),
    NotHeld(String),
    NotFound,
}

#[derive(Deserialize)]
pub struct CountItem {
    pub location: String,
    pub sku: String,
    pub on_hand: i64,
}

/// The engine behind a rival service.
pub trait Backend: Send + Sync + 'static {
    fn count(&self, items: Vec<CountItem>) -> impl Future<Output = Result<(), String>> + Send;
    fn record(
        &self,
        location: &str,
        sku: &str,
    ) -> impl Future<Output = Result<Record, String>> + Send;
    fn availability(
        &self,
        sku: &str,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, String>> + Send;
    /// `Ok(Err(record))`: the delta would take on_hand below zero.
    fn adjust(
        &self,
        location: &str,
        sku: &str,
        delta: i64,
    ) -> impl Future<Output = Result<Result<Record, Record>, String>> + Send;
    fn reserve(
        &self,
        lines: Vec<Line>,
        ttl_s: u64,
    ) -> impl Future<Output = Result<Result<ReservationView, Vec<Shortage>>, String>> + Send;
    fn transition(
        &self,
        id: &str,
        t: Transition,
    ) -> impl Future<Output = Result<TransitionOutcome, String>> + Send;
    fn get(&self, id: &str)
        -> impl Future<Output = Result<Option<ReservationView>, String>> + Send;
}

pub fn rfc3339_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Reservation ids of one rival process: a letter, a random nonce (ids of
/// two runs of the same rival never meet) and a counter.
pub struct Ids {
    letter: char,
    nonce: u32,
    next: std::sync::atomic::AtomicU64,
}

impl Ids {
    pub fn new(letter: char) -> Ids {
        Ids {
            letter,
            nonce: rand::random(),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}{:08x}{n}", self.letter, self.nonce)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn reply(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ct = if status >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    };
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static(ct),
    );
    r
}

fn problem(status: u16, code: &str, detail: &str) -> Response<Body> {
    reply(
        status,
        &json!({"type": "about:blank", "title": code, "status": status, "code": code, "detail": detail}),
    )
}

#[derive(Deserialize)]
struct ReserveBody {
    lines: Vec<Line>,
    #[serde(default = "ttl_default")]
    ttl_s: u64,
}
fn ttl_default() -> u64 {
    900
}

#[derive(Deserialize)]
struct AdjustBody {
    delta: i64,
}

#[derive(Deserialize)]
struct BatchBody {
    items: Vec<CountItem>,
}

#[derive(Deserialize)]
struct CountBody {
    on_hand: i64,
}

async fn dispatch<B: Backend>(
    b: &B,
    method: &Method,
    seg: &[&str],
    body: &Bytes,
) -> Result<Response<Body>, String> {
    macro_rules! parse {
        ($t:ty) => {
            match serde_json::from_slice::<$t>(body) {
                Ok(v) => v,
                Err(e) => return Ok(problem(400, "bad_request", &e.to_string())),
            }
        };
    }
    Ok(match (method, seg) {
        (&Method::GET, ["healthz"]) => reply(200, &json!({"status": "ok"})),
        (&Method::PUT, ["v1", "skus", id]) | (&Method::PUT, ["v1", "locations", id]) => {
            let mut v: Value = parse!(Value);
            v["id"] = json!(id);
            reply(200, &v)
        }
        (&Method::POST, ["v1", "inventory", "batch"]) => {
            let bb = parse!(BatchBody);
            let n = bb.items.len();
            b.count(bb.items).await?;
            reply(200, &json!({"applied": n}))
        }
        (&Method::PUT, ["v1", "inventory", loc, sku]) => {
            let c = parse!(CountBody);
            b.count(vec![CountItem {
                location: loc.to_string(),
                sku: sku.to_string(),
                on_hand: c.on_hand,
            }])
            .await?;
            reply(200, &json!(b.record(loc, sku).await?))
        }
        (&Method::GET, ["v1", "inventory", loc, sku]) => {
            reply(200, &json!(b.record(loc, sku).await?))
        }
        (&Method::POST, ["v1", "inventory", loc, sku, "adjustments"]) => {
            let a = parse!(AdjustBody);
            match b.adjust(loc, sku, a.delta).await? {
                Ok(r) => reply(200, &json!(r)),
                Err(_) => problem(409, "insufficient_stock", "on_hand would fall below 0"),
            }
        }
        (&Method::GET, ["v1", "availability", sku]) => {
            let locs = b.availability(sku).await?;
            let total: i64 = locs.iter().map(|l| l.1).sum();
            let locations: Vec<Value> = locs
                .into_iter()
                .map(|(l, a)| json!({"location": l, "available": a}))
                .collect();
            reply(
                200,
                &json!({"sku": sku, "available": total, "locations": locations}),
            )
        }
        (&Method::POST, ["v1", "reservations"]) => {
            let mut rb = parse!(ReserveBody);
            if rb.lines.is_empty() || rb.lines.iter().any(|l| l.qty < 1) {
                return Ok(problem(422, "validation_failed", "lines"));
            }
            // The rivals check every line before holding any, so a cart
            // must name each record once (the harness's carts do).
            let mut seen = std::collections::HashSet::new();
            if !rb.lines.iter().all(|l| seen.insert((&l.sku, &l.location))) {
                return Ok(problem(
                    422,
                    "validation_failed",
                    "a cart names each (sku, location) once",
                ));
            }
            for l in &mut rb.lines {
                l.requested = l.qty;
            }
            match b.reserve(rb.lines, rb.ttl_s.clamp(1, 86_400)).await? {
                Ok(r) => reply(201, &json!(r)),
                Err(short) => {
                    let mut p = json!({"type": "about:blank", "title": "insufficient_stock", "status": 409,
                                       "code": "insufficient_stock", "detail": "not enough stock"});
                    p["lines"] = json!(short);
                    reply(409, &p)
                }
            }
        }
        (&Method::GET, ["v1", "reservations", id]) => match b.get(id).await? {
            Some(r) => reply(200, &json!(r)),
            None => problem(404, "not_found", "no such reservation"),
        },
        (&Method::POST, ["v1", "reservations", id, op]) => {
            let t = match *op {
                "confirm" => Transition::Confirm,
                "release" => Transition::Release,
                "fulfil" => Transition::Fulfil,
                _ => return Ok(problem(404, "not_found", "no such endpoint")),
            };
            match b.transition(id, t).await? {
                TransitionOutcome::Done(r) => reply(200, &json!(r)),
                TransitionOutcome::NotHeld(st) => problem(
                    409,
                    "reservation_not_held",
                    &format!("the reservation is {st}"),
                ),
                TransitionOutcome::NotFound => problem(404, "not_found", "no such reservation"),
            }
        }
        _ => problem(404, "not_found", "no such endpoint"),
    })
}

/// Serves `backend` on `addr` until the process is stopped.
pub fn serve<B: Backend>(addr: SocketAddr, backend: Arc<B>) -> Result<(), String> {
    serve_with(addr, move || async move { Ok(backend) })
}

/// Serves the backend `make` builds on the serving runtime, which is built
/// like `holdfast serve`'s (multi-thread, one worker per core).
pub fn serve_with<B, F, Fut>(addr: SocketAddr, make: F) -> Result<(), String>
where
    B: Backend,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Arc<B>, String>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let backend = rt.block_on(make())?;
    let route = warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::bytes())
        .and(warp::any().map(move || backend.clone()))
        .then(
            |method: Method,
             path: warp::path::FullPath,
             length: Option<u64>,
             body: Bytes,
             b: Arc<B>| async move {
                // The harness always sends a length; a rival is not hardened
                // against chunked floods the way holdfast is.
                if length.unwrap_or(0) > BODY_BYTES_MAX {
                    return problem(413, "payload_too_large", "body over 1 MiB");
                }
                let seg: Vec<&str> = path.as_str().trim_matches('/').split('/').collect();
                match dispatch(b.as_ref(), &method, &seg, &body).await {
                    Ok(r) => r,
                    // The backend's answer is lost: whether the write
                    // happened is unknown, which a 500 says (not a 503).
                    Err(e) => {
                        tracing::warn!(error = %e, "backend failed");
                        problem(500, "internal", &e)
                    }
                }
            },
        )
        .recover(|_r: warp::Rejection| async move {
            Ok::<_, Infallible>(problem(400, "bad_request", "unreadable request"))
        });
    rt.block_on(async move {
        let (addr, server) = warp::serve(route)
            .try_bind_ephemeral(addr)
            .map_err(|e| e.to_string())?;
        tracing::info!(%addr, "ready");
        server.await;
        Ok(())
    })
}
