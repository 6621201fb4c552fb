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
pub mod books;
pub mod catalog;
pub mod error;
pub mod events;
pub mod export;
pub mod feed;
pub mod idempotency;
pub mod input;
pub mod inventory;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod reservations;
pub mod route;
pub mod sourcing;
pub mod subscriptions;
pub mod supply;
pub mod transfers;
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
use crate::metrics::Route as Label;
use auth::{Auth, Principal};
use error::{ApiError, ApiResult, Code};
use idempotency::IdemTable;
pub use route::Route;
use tokio::sync::Semaphore;

/// What every handler may use.
pub struct AppState {
    pub engine: Engine,
    pub auth: Auth,
    pub idem: IdemTable,
    /// The order workflow over this engine (the same engine), its payment
    /// providers and carriers.
    pub orders: Arc<crate::orders::Orders>,
    /// Adyen's webhook HMAC key, when Adyen is configured.
    pub adyen_hmac: Option<Vec<u8>>,
    /// The stock feed's sessions (a cluster node's shards leave theirs
    /// unused: the node's front has one for all of them).
    pub feed: Arc<feed::FeedHost>,
    /// The webhook subscriptions' deliveries (their attempts, metrics).
    pub webhooks: Arc<crate::webhooks::Webhooking>,
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

/// A request as it came, its path parsed once (`route`).
pub struct Incoming<'a> {
    pub method: Method,
    /// The path as sent (for a forward, and "no such endpoint").
    pub path: &'a str,
    /// The path split at `/`, each segment percent-decoded.
    pub seg: &'a [&'a str],
    pub route: Option<Route>,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming<'_> {
    /// The same request again (a cluster front may serve it twice).
    pub fn again(&self) -> Incoming<'_> {
        Incoming {
            method: self.method.clone(),
            path: self.path,
            seg: self.seg,
            route: self.route,
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }
}

/// What answers the API's requests: one node's engine (`AppState`), or
/// a cluster node's front, which serves through `handle` in turn.
pub trait Serve: Send + Sync + 'static {
    /// The answer to one request.
    fn serve<'a>(&'a self, req: Incoming<'a>) -> futures::future::BoxFuture<'a, ApiResult>;
    /// Where requests are counted.
    fn metrics(&self) -> &crate::metrics::Metrics;
    /// The stock feed's sessions on this server.
    fn feed(&self) -> Arc<feed::FeedHost>;
}

/// One node serving with its engine.
pub struct Node(pub Arc<AppState>);

impl Serve for Node {
    fn serve<'a>(&'a self, req: Incoming<'a>) -> futures::future::BoxFuture<'a, ApiResult> {
        Box::pin(handle(&self.0, req))
    }
    fn metrics(&self) -> &crate::metrics::Metrics {
        self.0.engine.metrics()
    }
    fn feed(&self) -> Arc<feed::FeedHost> {
        self.0.feed.clone()
    }
}

/// The warp filter serving the whole API.
pub fn routes(
    api: Arc<dyn Serve>,
) -> impl Filter<Extract = (Response<Body>,), Error = Infallible> + Clone {
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
             api: Arc<dyn Serve>| async move {
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
                let route = Route::parse(&seg);
                let label = route.map_or(Label::Other, |r| r.label(&method));
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
                        let req = Incoming {
                            method,
                            path: path.as_str(),
                            seg: &seg,
                            route,
                            query: (!query.is_empty()).then_some(query),
                            headers,
                            body,
                        };
                        api.serve(req).await.unwrap_or_else(ApiError::into_response)
                    }
                    Err(e) => e.into_response(),
                };
                api.metrics().observe_request(
                    label,
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

/// Serves one request with this node's engine: the public routes
/// without a token, every other after authenticating it, then 405 for a
/// method the route does not answer, then its handler.
pub async fn handle(state: &Arc<AppState>, r: Incoming<'_>) -> ApiResult {
    let not_found = || ApiError::new(Code::NotFound, format!("no such endpoint: {}", r.path));
    if let Some(route) = r.route.filter(|route| route.public()) {
        if !route.allows(&r.method) {
            return Err(ApiError::method_not_allowed(&route.allow()));
        }
        return public(state, route, r.seg, &r.body).await;
    }
    if r.seg.first() != Some(&"v1") {
        return Err(not_found());
    }
    let principal = state.auth.authenticate(&r.headers, None)?;
    let Some(route) = r.route else {
        return Err(not_found());
    };
    if !route.allows(&r.method) {
        return Err(ApiError::method_not_allowed(&route.allow()));
    }
    let req = Request {
        method: r.method,
        headers: r.headers,
        query: r.query,
        body: r.body,
        principal,
    };
    dispatch(state, route, &req, r.seg).await
}

/// The routes served without a token.
async fn public(state: &AppState, route: Route, seg: &[&str], body: &Bytes) -> ApiResult {
    match route {
        Route::Healthz => ops::healthz(state),
        Route::Metrics => ops::metrics(state),
        Route::OpenApi => ops::openapi(),
        Route::Board => board::page(state, seg[2]),
        Route::Console => Ok(board::console()),
        // Signed by the provider instead (`webhooks`).
        Route::AdyenWebhook => webhooks::adyen(state, body).await,
        _ => Err(ApiError::new(Code::Forbidden, "not a public route")),
    }
}

/// An authenticated request to the handler of its route, which answers
/// its method (`Route::allows`); path parameters by their place in
/// `Route::template`.
async fn dispatch(state: &Arc<AppState>, route: Route, req: &Request, seg: &[&str]) -> ApiResult {
    let get = req.method == Method::GET;
    match route {
        Route::Feed => Err(ApiError::new(
            Code::UpgradeRequired,
            "the stock feed is a WebSocket: GET with Connection: Upgrade, Upgrade: websocket",
        )),
        // A cluster node's view (`cluster::front`): a single node has none.
        Route::Cluster => Err(ApiError::new(
            Code::NotFound,
            "not a cluster node: no cluster view",
        )),
        Route::SkuBatch if req.method == Method::POST => catalog::put_skus(state, req).await,
        Route::SkuBatch | Route::Sku if get => catalog::get_sku(state, req, seg[2]),
        Route::SkuBatch | Route::Sku => catalog::put_sku(state, req, seg[2]).await,
        Route::Locations => catalog::list_locations(state, req),
        Route::Location if get => catalog::get_location(state, req, seg[2]),
        Route::Location => catalog::put_location(state, req, seg[2]).await,
        Route::Pickups => orders::pickups(state, req, seg[2]).await,
        Route::InventoryBatch => inventory::batch(state, req).await,
        Route::InventoryExport => export::get(state, req).await,
        Route::Stock if get => inventory::get(state, req, seg[2], seg[3]).await,
        Route::Stock => inventory::put(state, req, seg[2], seg[3]).await,
        Route::Adjustments => inventory::adjust(state, req, seg[2], seg[3]).await,
        Route::Unsellable => inventory::unsellable(state, req, seg[2], seg[3]).await,
        Route::History => inventory::history(state, req, seg[2], seg[3]).await,
        Route::Events => events::get(state, req).await,
        Route::Webhooks if get => subscriptions::list(state, req).await,
        Route::Webhooks => subscriptions::create(state, req).await,
        Route::Webhook if get => subscriptions::get(state, req, seg[2]).await,
        Route::Webhook => subscriptions::delete(state, req, seg[2]).await,
        Route::WebhookDeliveries => subscriptions::deliveries(state, req, seg[2]).await,
        Route::WebhookReplay => subscriptions::replay(state, req, seg[2]).await,
        Route::Availability => inventory::availability(state, req, seg[2]).await,
        Route::Reservations => reservations::create(state, req).await,
        Route::Reservation => reservations::get(state, req, seg[2]).await,
        Route::Confirm | Route::Release | Route::Fulfil | Route::Extend => {
            reservations::transition(state, req, seg[2], seg[3]).await
        }
        Route::ScalapayCheckouts => payments::scalapay_checkout(state, req).await,
        Route::Orders if get => orders::search(state, req).await,
        Route::Orders => orders::create(state, req).await,
        Route::Order => orders::get(state, req, seg[2]).await,
        Route::OrderCancel => orders::cancel(state, req, seg[2]).await,
        Route::OrderReturns => orders::returns(state, req, seg[2]).await,
        Route::RefundSettle => orders::settle_refund(state, req, seg[2]).await,
        Route::ShipmentLabel => orders::get_label(state, req, seg[2], seg[4]).await,
        Route::ShipmentEvents => orders::shipment_event(state, req, seg[2], seg[4]).await,
        Route::SourcingPlan => sourcing::plan(state, req).await,
        Route::Transfers if get => transfers::get(state, req, None).await,
        Route::Transfers => transfers::create(state, req).await,
        Route::Transfer => transfers::get(state, req, Some(seg[2])).await,
        Route::TransferShip | Route::TransferReceive | Route::TransferCancel => {
            transfers::step(state, req, seg[2], seg[3]).await
        }
        Route::Supplies if get => supply::get(state, req, None).await,
        Route::Supplies => supply::create(state, req).await,
        Route::Supply => supply::get(state, req, Some(seg[2])).await,
        Route::SupplyReceive | Route::SupplyCancel => {
            supply::step(state, req, seg[2], seg[3]).await
        }
        Route::Whoami => Ok(auth::whoami(req)),
        Route::Healthz
        | Route::Metrics
        | Route::OpenApi
        | Route::Board
        | Route::Console
        | Route::AdyenWebhook => public(state, route, seg, &req.body).await,
    }
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
/// Calls `ready` with the bound address once listening.
pub async fn serve(
    api: Arc<dyn Serve>,
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
    let host = api.feed();
    let feeds = host.clone();
    let (stopped, mut stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopped.send(true);
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
    let server = warp::hyper::Server::builder(warp::hyper::server::accept::from_stream(incoming))
        // A client that trickles its request head is cut off (slowloris);
        // the clock also runs while a kept-alive connection waits for its
        // next request, so this is the idle bound too.
        .http1_header_read_timeout(std::time::Duration::from_secs(REQUEST_HEAD_READ_S))
        .serve(make)
        .with_graceful_shutdown(shutdown);
    // Connections that do not finish (an event stream whose client reads
    // nothing, so the stream is never polled to see the end) are closed
    // `SHUTDOWN_GRACE` after the signal.
    tokio::select! {
        r = server => r.map_err(|e| format!("serving: {e}"))?,
        _ = async {
            while !*stopping.borrow() {
                if stopping.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(crate::limits::SHUTDOWN_GRACE).await
        } => tracing::warn!("connections still open past the shutdown grace: closed"),
    }
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
