//! The HTTP API of api.md over warp.
//!
//! One filter takes every request, reads its body under the 1 MiB bound
//! (before any parsing), and `dispatch` routes it by method and path to one
//! handler per endpoint; every error leaves through the one table in `error`.
//!
//! - `auth`: tokens, roles, rate limits.
//! - `input`: field-by-field validation with paths.
//! - `idempotency`: the Idempotency-Key table.
//! - `catalog`, `inventory`, `reservations`, `sourcing`, `ops`: the endpoints.

pub mod auth;
pub mod board;
pub mod catalog;
pub mod error;
pub mod feed;
pub mod idempotency;
pub mod input;
pub mod inventory;
pub mod openapi;
pub mod ops;
pub mod order_stock;
pub mod orders;
pub mod payments;
pub mod reservations;
pub mod sourcing;
pub mod tracking;
pub mod webhooks;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use warp::http::{HeaderMap, Method, Response};
use warp::hyper::Body;
use warp::Filter;

use crate::actors::Engine;
use crate::limits::{
    CONNECTIONS_MAX, REQUEST_BODY_BYTES_MAX, REQUEST_BODY_DRAIN_BYTES_MAX, REQUEST_BODY_READ_S,
    REQUEST_HEAD_READ_S,
};
use crate::metrics::Route;
use auth::{Auth, Principal};
use error::{ApiError, ApiResult, Code};
use idempotency::IdemTable;
use tokio::sync::Semaphore;

/// What every handler may use.
pub struct AppState {
    pub engine: Engine,
    pub auth: Auth,
    pub idem: IdemTable,
    /// Payment providers by the name an order gives (`sandbox` for now;
    /// the real adapters come with issue 7).
    pub payments: Vec<(String, Arc<dyn crate::payments::PaymentProvider>)>,
    /// Scalapay's own side (the checkouts its shoppers approve), when
    /// configured.
    pub scalapay: Option<Arc<crate::payments::scalapay::Scalapay>>,
    /// How an order naming no provider gets one.
    pub payment_routing: crate::payments::Routing,
    /// Adyen's webhook HMAC key, when Adyen is configured.
    pub adyen_hmac: Option<Vec<u8>>,
    /// The carriers that label and track shipments.
    pub shipping: crate::carriers::Shipping,
    /// The stock feed's sessions (a cluster node's shards leave theirs
    /// unused: the node's front has one for all of them).
    pub feed: Arc<feed::FeedHost>,
    /// Since when its orders' holds may not be what the orders say
    /// (`orders::reconcile`, by the retry loop; `i64::MAX`: they are): a
    /// cluster shard's since a while before a node took it over, any
    /// engine's since a stock operation of an order failed after the
    /// order recorded it.
    pub unsettled_since: orders::Unsettled,
}

/// A request as the handlers see it.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub body: Bytes,
    pub principal: Principal,
}

/// What serves the API: one node's engine, or a cluster node's front.
#[derive(Clone)]
pub enum Api {
    Node(Arc<AppState>),
    Cluster(Arc<crate::cluster::front::Front>),
}

impl Api {
    fn metrics(&self) -> &crate::metrics::Metrics {
        match self {
            Api::Node(s) => s.engine.metrics(),
            Api::Cluster(f) => &f.node.metrics,
        }
    }
}

/// The warp filter serving the whole API.
pub fn routes(api: Api) -> impl Filter<Extract = (Response<Body>,), Error = Infallible> + Clone {
    let api = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(warp::any().map(move || api.clone()))
        .then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             body,
             api: Api| async move {
                let started = Instant::now();
                // HEAD is GET without the body (RFC 9110 §9.3.2: hyper
                // leaves the body of a HEAD's answer out).
                let method = if method == Method::HEAD {
                    Method::GET
                } else {
                    method
                };
                // The path is split once, each segment percent-decoded
                // (RFC 3986 §2.1: `FZ%3AP1` names `FZ:P1`), for the route
                // label and for dispatch.
                let decoded: Vec<std::borrow::Cow<'_, str>> = path
                    .as_str()
                    .trim_matches('/')
                    .split('/')
                    .map(input::decode_segment)
                    .collect();
                let seg: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
                let route = route_of(&method, &seg);
                let body = tokio::time::timeout(
                    std::time::Duration::from_secs(REQUEST_BODY_READ_S),
                    read_body(&headers, body),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        Code::RequestTimeout,
                        format!("the body must arrive within {REQUEST_BODY_READ_S} s"),
                    ))
                });
                let resp = match body {
                    Ok(body) => {
                        let query = (!query.is_empty()).then_some(query);
                        let p = path.as_str();
                        match &api {
                            Api::Node(state) => {
                                handle(state, method, p, &seg, query, headers, body).await
                            }
                            Api::Cluster(front) => {
                                front.handle(method, p, &seg, query, headers, body).await
                            }
                        }
                        .unwrap_or_else(ApiError::into_response)
                    }
                    Err(e) => e.into_response(),
                };
                api.metrics().observe_request(
                    route,
                    resp.status().as_u16(),
                    started.elapsed().as_micros() as u64,
                );
                resp
            },
        )
        .recover(|r: warp::Rejection| async move {
            // Only the extractors above can reject; none should, but a
            // rejection still leaves as problem+json, never as a 5xx.
            let e = if r.find::<warp::reject::MethodNotAllowed>().is_some() {
                ApiError::method_not_allowed("GET, HEAD, PUT, POST")
            } else {
                ApiError::new(Code::BadRequest, format!("unreadable request: {r:?}"))
            };
            Ok::<_, Infallible>(e.into_response())
        })
        .unify();
    api
}

/// Reads the body under the bound: a declared length over it is refused
/// before reading, a chunked body as soon as it passes it.
async fn read_body<S, B>(headers: &HeaderMap, mut stream: S) -> Result<Bytes, ApiError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("request bodies are limited to {REQUEST_BODY_BYTES_MAX} bytes"),
        )
    };
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > REQUEST_BODY_BYTES_MAX as u64) {
        if n <= REQUEST_BODY_DRAIN_BYTES_MAX as u64 {
            drain(&mut stream).await;
        }
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::new(Code::BadRequest, format!("reading the body: {e}")))?;
        if buf.len() + chunk.remaining() > REQUEST_BODY_BYTES_MAX {
            drain(&mut stream).await;
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            let n = c.len();
            buf.extend_from_slice(c);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards the rest of a body, up to the drain bound.
async fn drain<S, B>(stream: &mut S)
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.remaining();
        if seen > REQUEST_BODY_DRAIN_BYTES_MAX {
            break;
        }
    }
}

fn route_of(method: &Method, seg: &[&str]) -> Route {
    match (seg, method == Method::GET) {
        (["v1", "reservations"], _) => Route::ReservationsCreate,
        (["v1", "reservations", _, _], _) => Route::ReservationsTransition,
        (["v1", "reservations", _], _) => Route::ReservationsGet,
        (["v1", "inventory", "batch"], _) => Route::InventoryBatch,
        (["v1", "inventory", ..], false) => Route::InventoryWrite,
        (["v1", "inventory", ..], true) => Route::InventoryRead,
        (["v1", "availability", _], _) => Route::Availability,
        (["v1", "sourcing", "plan"], _) => Route::SourcingPlan,
        (["v1", "orders" | "webhooks" | "payments", ..] | ["v1", "locations", _, "pickups"], _) => {
            Route::Orders
        }
        (["v1", "skus" | "locations", ..], false) => Route::CatalogWrite,
        (["v1", "skus" | "locations", ..], true) => Route::CatalogRead,
        (["healthz"] | ["metrics"] | ["v1", "openapi.json"], _) => Route::Operations,
        (["v1", "feed"], _) => Route::Feed,
        _ => Route::Other,
    }
}

/// 405 naming the methods the resource allows (HEAD wherever GET is).
fn method_not_allowed(allowed: &str) -> ApiError {
    match allowed.strip_prefix("GET") {
        Some(rest) => ApiError::method_not_allowed(&format!("GET, HEAD{rest}")),
        None => ApiError::method_not_allowed(allowed),
    }
}

/// Serves one request with one engine (a node's, or a cluster shard's).
pub async fn handle(
    state: &Arc<AppState>,
    method: Method,
    path: &str,
    seg: &[&str],
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    // Operations need no token.
    let get = method == Method::GET;
    match seg {
        ["healthz"] if get => return ops::healthz(state),
        ["metrics"] if get => return ops::metrics(state),
        ["v1", "openapi.json"] if get => return ops::openapi(),
        ["healthz"] | ["metrics"] | ["v1", "openapi.json"] => {
            return Err(method_not_allowed("GET"))
        }
        // The store board: a page, no token (its feed asks for one).
        ["ui", "stores", loc] if method == Method::GET => return board::page(state, loc),
        ["ui", "stores", _] => return Err(method_not_allowed("GET")),
        // Signed by the provider instead (`webhooks`).
        ["v1", "webhooks", "adyen"] if method == Method::POST => {
            return webhooks::adyen(state, &body).await
        }
        ["v1", "webhooks", "adyen"] => return Err(method_not_allowed("POST")),
        _ => {}
    }
    if seg.first() != Some(&"v1") {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no such endpoint: {path}"),
        ));
    }
    let principal = state.auth.authenticate(&headers, None)?;
    let req = Request {
        method,
        headers,
        query,
        body,
        principal,
    };
    let m = &req.method;
    match (&seg[1..], m) {
        (["feed"], &Method::GET) => Err(ApiError::new(
            Code::UpgradeRequired,
            "the stock feed is a WebSocket: GET with Connection: Upgrade, Upgrade: websocket",
        )),
        (["feed"], _) => Err(method_not_allowed("GET")),
        (["skus", "batch"], &Method::POST) => catalog::put_skus(state, &req).await,
        (["skus", sku], &Method::PUT) => catalog::put_sku(state, &req, sku).await,
        (["skus", sku], &Method::GET) => catalog::get_sku(state, &req, sku),
        // The bulk import's path is also SKU `batch`'s.
        (["skus", "batch"], _) => Err(method_not_allowed("GET, PUT, POST")),
        (["skus", _], _) => Err(method_not_allowed("GET, PUT")),
        (["locations"], &Method::GET) => catalog::list_locations(state, &req),
        (["locations"], _) => Err(method_not_allowed("GET")),
        (["locations", id], &Method::PUT) => catalog::put_location(state, &req, id).await,
        (["locations", id], &Method::GET) => catalog::get_location(state, &req, id),
        (["locations", id, "pickups"], &Method::GET) => orders::pickups(state, &req, id),
        (["locations", _, "pickups"], _) => Err(method_not_allowed("GET")),
        (["locations", _], _) => Err(method_not_allowed("GET, PUT")),
        (["inventory", "batch"], &Method::POST) => inventory::batch(state, &req).await,
        (["inventory", "batch"], _) => Err(method_not_allowed("POST")),
        (["inventory", loc, sku], &Method::PUT) => inventory::put(state, &req, loc, sku).await,
        (["inventory", loc, sku], &Method::GET) => inventory::get(state, &req, loc, sku).await,
        (["inventory", _, _], _) => Err(method_not_allowed("GET, PUT")),
        (["inventory", loc, sku, "adjustments"], &Method::POST) => {
            inventory::adjust(state, &req, loc, sku).await
        }
        (["inventory", _, _, "adjustments"], _) => Err(method_not_allowed("POST")),
        (["availability", sku], &Method::GET) => inventory::availability(state, &req, sku).await,
        (["availability", _], _) => Err(method_not_allowed("GET")),
        (["reservations"], &Method::POST) => reservations::create(state, &req).await,
        (["reservations"], _) => Err(method_not_allowed("POST")),
        (["reservations", id], &Method::GET) => reservations::get(state, &req, id).await,
        (["reservations", _], _) => Err(method_not_allowed("GET")),
        (["reservations", id, action], &Method::POST) => {
            reservations::transition(state, &req, id, action).await
        }
        (["reservations", _, _], _) => Err(method_not_allowed("POST")),
        (["payments", "scalapay", "checkouts"], &Method::POST) => {
            payments::scalapay_checkout(state, &req).await
        }
        (["payments", "scalapay", "checkouts"], _) => Err(method_not_allowed("POST")),
        (["orders"], &Method::POST) => orders::create(state, &req).await,
        (["orders"], _) => Err(method_not_allowed("POST")),
        (["orders", id], &Method::GET) => orders::get(state, &req, id),
        (["orders", _], _) => Err(method_not_allowed("GET")),
        (["orders", id, "cancel"], &Method::POST) => orders::cancel(state, &req, id).await,
        (["orders", id, "returns"], &Method::POST) => orders::returns(state, &req, id).await,
        (["orders", id, "refunds", "settle"], &Method::POST) => {
            orders::settle_refund(state, &req, id).await
        }
        (["orders", _, "refunds", "settle"], _) => Err(method_not_allowed("POST")),
        (["orders", id, "shipments", n, "label"], &Method::GET) => {
            orders::get_label(state, &req, id, n)
        }
        (["orders", _, "shipments", _, "label"], _) => Err(method_not_allowed("GET")),
        (["orders", id, "shipments", n, "events"], &Method::POST) => {
            orders::shipment_event(state, &req, id, n).await
        }
        (["orders", _, "cancel" | "returns"], _) | (["orders", _, "shipments", _, "events"], _) => {
            Err(method_not_allowed("POST"))
        }
        // A cluster node's view (`cluster::front`): a single node has none.
        (["cluster"], &Method::GET) => Err(ApiError::new(
            Code::NotFound,
            "not a cluster node: no cluster view",
        )),
        (["cluster"], _) => Err(method_not_allowed("GET")),
        (["sourcing", "plan"], &Method::POST) => sourcing::plan(state, &req).await,
        (["sourcing", "plan"], _) => Err(method_not_allowed("POST")),
        _ => Err(ApiError::new(
            Code::NotFound,
            format!("no such endpoint: {path}"),
        )),
    }
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
/// Calls `ready` with the bound address once listening.
pub async fn serve(
    api: Api,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    // Past CONNECTIONS_MAX open connections, new ones wait in the kernel's
    // accept queue until one closes.
    let incoming = futures::stream::unfold((listener, permits), |(listener, permits)| async move {
        let permit = permits.clone().acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Limited {
                        stream,
                        _permit: permit,
                    };
                    return Some((Ok::<_, std::io::Error>(conn), (listener, permits)));
                }
                Err(e) => {
                    // Out of file descriptors, say: never stop serving for it.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    ready(addr);
    let host = match &api {
        Api::Node(state) => state.feed.clone(),
        Api::Cluster(front) => front.feed.clone(),
    };
    let feeds = host.clone();
    let shutdown = async move {
        shutdown.await;
        // Feed sessions close with 1001; give them a moment to say so.
        feeds.close_all().await;
    };
    // hyper serves, warp routes; a feed upgrade is taken before warp (see
    // feed.rs: its sessions keep small buffers).
    let api = warp::service(routes(api));
    let make = warp::hyper::service::make_service_fn(move |_conn| {
        let (api, host) = (api.clone(), host.clone());
        async move {
            Ok::<_, Infallible>(warp::hyper::service::service_fn(move |req| {
                let (mut api, host) = (api.clone(), host.clone());
                async move {
                    if feed::is_upgrade(&req) {
                        return Ok::<_, Infallible>(feed::accept(host, req));
                    }
                    warp::hyper::service::Service::call(&mut api, req).await
                }
            }))
        }
    });
    warp::hyper::Server::builder(warp::hyper::server::accept::from_stream(incoming))
        // A client that trickles its request head is cut off (slowloris);
        // the clock also runs while a kept-alive connection waits for its
        // next request, so this is the idle bound too.
        .http1_header_read_timeout(std::time::Duration::from_secs(REQUEST_HEAD_READ_S))
        .serve(make)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("serving: {e}"))?;
    Ok(())
}

/// A connection holding one of the `CONNECTIONS_MAX` permits while open.
struct Limited {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
