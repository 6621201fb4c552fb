//! A cluster node's HTTP front: any node accepts any request.
//!
//! - The leader serves everything as one node does (`http::handle` on its
//!   engine), while `ClusterNode::leading` says it may: checked on every
//!   request and again before a read's answer leaves, so a leader whose
//!   lease ran out (paused, cut off from Redis) answers nothing more.
//! - A follower answers stock-record and availability reads from its own
//!   copy while the copy is fresh (`follower_read`), and forwards the rest
//!   to the leader: one hop, the request's bytes as they came (the token
//!   with them: the leader authenticates it again), marked
//!   `x-holdfast-forwarded` so that a node that is not the leader (any
//!   more) answers 503 rather than forwarding again.
//! - With no leader to answer (a takeover, Redis down), a follower still
//!   answers those reads from its copy, saying how stale it may be
//!   (`x-holdfast-stale-ms`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warp::http::{HeaderMap, HeaderValue, Method, Response};
use warp::hyper::Body;

use super::node::ClusterNode;
use super::PARTITION;
use crate::clock::Clock;
use crate::http;
use crate::http::error::{json_response, ApiError, ApiResult, Code};
use crate::http::idempotency::IDEMPOTENCY_KEY;
use crate::http::route::Serving;
use crate::http::{Incoming, Route};
use crate::limits::FOLLOWER_FRESH;

/// How often a forward in flight looks whether another node took the lead.
const LEADER_WATCH: Duration = Duration::from_millis(50);

/// Marks a request a follower forwarded to the leader: never forwarded
/// again.
pub const FORWARDED_HEADER: &str = "x-holdfast-forwarded";

/// On a read a follower answered from its copy: `follower`.
pub const READ_HEADER: &str = "x-holdfast-read";

/// On a read a follower answered from its copy while no leader could:
/// how long ago the copy had read everything the stream held (absent if
/// it has not since it opened).
pub const STALE_HEADER: &str = "x-holdfast-stale-ms";

pub struct Front {
    pub node: Arc<ClusterNode>,
    /// The stock feed's sessions on this node (`cluster::feed`).
    pub feed: Arc<http::feed::FeedHost>,
    /// For the reads this node answers from its copy (the leader's engine
    /// authenticates the rest).
    auth: http::auth::Auth,
    /// To the leader: hyper's own client (the server's types, headers
    /// passed as they came; a third of reqwest's cost per request).
    client: hyper::Client<hyper::client::HttpConnector>,
    /// This node's own HTTP address (never forwarded to).
    me: std::net::SocketAddr,
}

impl Front {
    pub fn new(
        node: Arc<ClusterNode>,
        auth: http::auth::Auth,
        feed: Arc<http::feed::FeedHost>,
    ) -> Result<Front, String> {
        let mut connector = hyper::client::HttpConnector::new();
        connector.set_connect_timeout(Some(crate::limits::FORWARD_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = hyper::Client::builder()
            .pool_max_idle_per_host(crate::limits::FORWARD_IDLE_CONNECTIONS)
            .build(connector);
        let me = node.config.node(&node.node_id)?.http;
        Ok(Front {
            node,
            feed,
            auth,
            client,
            me,
        })
    }

    /// Answers `req`: as the node itself, as the leader, from the copy, or
    /// by forwarding it to the leader (the module's comment).
    pub async fn handle(&self, req: Incoming<'_>) -> ApiResult {
        let Some(route) = req.route else {
            return self.elsewhere(req).await;
        };
        // An event stream never ends: forwarded, its answer would be
        // buffered until the forward's timeout. Opened on the leader.
        let stream = req
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        if route == Route::Events && stream && self.node.leading().is_none() {
            return Err(ApiError::new(
                Code::Unavailable,
                "event streams are served by the cluster's leader (GET /v1/cluster names it); pages are served here",
            )
            .retry_after(1));
        }
        match route.serving() {
            Serving::Node => self.node_answer(route, &req),
            Serving::CopyOrLeader | Serving::Leader => self.elsewhere(req).await,
        }
    }

    /// Answers what the node does not answer itself.
    async fn elsewhere(&self, req: Incoming<'_>) -> ApiResult {
        if let Some(state) = self.node.leading() {
            return self.lead(&state, req).await;
        }
        if req.headers.contains_key(FORWARDED_HEADER) {
            return Err(no_leader());
        }
        if let Some(answer) = self.follower_read(&req, false) {
            return answer;
        }
        let answer = self.to_leader(&req).await;
        if is_write(&req.method) {
            // Reads through this node of what it wrote wait for its copy
            // to have it (`follower_read`).
            self.node.wrote(PARTITION);
        } else if status_of(&answer) == 503 {
            // No leader could answer: the copy does, its staleness shown.
            if let Some(stale) = self.follower_read(&req, true) {
                return stale;
            }
        }
        answer
    }

    /// Serves `r` as the leader. An answer ready after the lease ran out
    /// (on this node's clock) is not sent as it is: another node may lead
    /// by now. A read is 503 (ask again); a write is 504
    /// `outcome_unknown`, whatever it answered (an applied hold is the
    /// cluster's, and an order may be recorded before a refusal: sent again
    /// under its key, the new leader answers it), unless it already said
    /// it could not be made (503) or may not have been (504).
    async fn lead(&self, state: &Arc<http::AppState>, r: Incoming<'_>) -> ApiResult {
        let write = is_write(&r.method);
        let answer = http::handle(state, r).await;
        if self.node.leading().is_some() {
            return answer;
        }
        match status_of(&answer) {
            503 | 504 => answer,
            _ if write => Err(outcome_unknown()),
            _ => Err(no_leader()),
        }
    }

    /// A read of a stock record, a SKU's availability, a reservation or an
    /// order answered from this node's copy: when `stale` (no leader could
    /// answer) whatever its age, with
    /// `x-holdfast-stale-ms`; otherwise only when the copy had read
    /// everything the stream held within `FOLLOWER_FRESH` and since this
    /// node last forwarded a write (a client reads its own writes through
    /// one node), and the client did not ask for the leader's answer
    /// (`Cache-Control: no-cache`). The answer says `x-holdfast-read:
    /// follower`.
    fn follower_read(&self, r: &Incoming<'_>, stale: bool) -> Option<ApiResult> {
        // Every request passes here: the route first, the header after.
        if r.method != Method::GET || r.route.map(Route::serving) != Some(Serving::CopyOrLeader) {
            return None;
        }
        let no_cache = r.headers.get_all("cache-control").iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("no-cache"))
        });
        let (copy, age) = if stale {
            self.node.stale_copy()?
        } else if no_cache {
            return None;
        } else {
            (self.node.fresh_copy(PARTITION, FOLLOWER_FRESH)?, None)
        };
        let req = match self.auth.authenticate(&r.headers, None) {
            Ok(principal) => http::Request {
                method: r.method.clone(),
                headers: r.headers.clone(),
                query: r.query.clone(),
                body: r.body.clone(),
                principal,
            },
            Err(e) => return Some(Err(e)),
        };
        let model = copy.read();
        let seg = r.seg;
        let answer = match r.route? {
            Route::Stock => {
                let now = crate::clock::SystemClock.now_ms();
                http::inventory::get_from(&model, now, &req, seg[2], seg[3])
            }
            Route::Availability => {
                let now = crate::clock::SystemClock.now_ms();
                http::inventory::availability_from(&model, now, &req, seg[2])
            }
            // What the copy does not hold, the leader answers.
            Route::Reservation => http::reservations::get_from(&model, &req, seg[2])?,
            Route::Order => http::orders::get_from(&model, &req, seg[2])?,
            Route::Transfer => http::books::read(&model.transfers, &req, Some(seg[2]))?,
            Route::Transfers => http::books::read(&model.transfers, &req, None)?,
            Route::Supply => http::books::read(&model.supplies, &req, Some(seg[2]))?,
            Route::Supplies => http::books::read(&model.supplies, &req, None)?,
            _ => return None,
        };
        drop(model);
        Some(answer.map(|mut resp| {
            let h = resp.headers_mut();
            h.insert(READ_HEADER, HeaderValue::from_static("follower"));
            if stale {
                if let Some(v) =
                    age.and_then(|a| HeaderValue::from_str(&a.as_millis().to_string()).ok())
                {
                    h.insert(STALE_HEADER, v);
                }
            }
            resp
        }))
    }

    /// `r` forwarded to the leader, its answer as it came.
    ///
    /// A forwarded write whose answer never came (the leader died or hung
    /// with it) may have been applied: answering 503, which tells the
    /// client nothing was done, would have it hold twice. A hold or an
    /// adjustment with an `Idempotency-Key` is sent again under it to
    /// whoever leads within the takeover's time (the key is journaled with
    /// it and comes back on the new leader, so the first answer comes back,
    /// or the write is applied once now; a 503 meanwhile, the new leader
    /// not serving yet, is asked again); a reservation's confirm or release
    /// is sent again as it is (made twice, made once). Otherwise the answer
    /// is 504 `outcome_unknown`, as a connection reset would be.
    async fn to_leader(&self, r: &Incoming<'_>) -> ApiResult {
        let write = is_write(&r.method);
        // What is safe to send again to the next leader: a confirm or a
        // release (made twice, made once), and the writes that honour an
        // Idempotency-Key (a hold, an adjustment) under theirs. Not a PUT
        // of a count: sent seconds later it could undo a newer one.
        let keyed = r.headers.contains_key(IDEMPOTENCY_KEY);
        let resend = write && r.route.is_some_and(|route| route.resendable(keyed));
        let lease = self.node.config.lease;
        // Set when an answer is lost: the takeover's time from then.
        let mut lost: Option<Instant> = None;
        loop {
            let answer = if let Some(state) = self.node.leading() {
                // This node took the lead meanwhile.
                Some(self.lead(&state, r.again()).await)
            } else if let Some((addr, epoch)) = self.leader_at() {
                self.node.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                // A leader that stops answering (dead, paused) is given up
                // as soon as another takes the lease: the request is then
                // settled as an answer lost.
                let moved = async {
                    while self.node.leader_epoch() == epoch {
                        tokio::time::sleep(LEADER_WATCH).await;
                    }
                };
                let forwarded = tokio::select! {
                    f = self.forward(addr, r) => f,
                    () = moved => Forwarded::AnswerLost,
                };
                match forwarded {
                    Forwarded::Answer(a) => Some(a),
                    Forwarded::NotSent => None,
                    Forwarded::AnswerLost => {
                        lost.get_or_insert_with(|| {
                            Instant::now() + lease.ttl() * 2 + Duration::from_secs(1)
                        });
                        None
                    }
                }
            } else {
                None
            };
            match answer {
                // Sent again after a lost answer, a 503 (the new leader not
                // serving yet) says nothing of the first: asked again.
                Some(a) if lost.is_some() && status_of(&a) == 503 => {}
                Some(a) => return a,
                None => {}
            }
            let Some(deadline) = lost.filter(|_| write) else {
                return Err(no_leader());
            };
            if !resend || Instant::now() >= deadline {
                return Err(outcome_unknown());
            }
            tokio::time::sleep(Duration::from_millis(lease.renew_ms.min(200))).await;
        }
    }

    /// The leader's address (another node's) and epoch, as last read: the
    /// epoch first, so that a change after it is seen as one.
    fn leader_at(&self) -> Option<(std::net::SocketAddr, u64)> {
        let epoch = self.node.leader_epoch();
        let addr = self.node.owner_addr(PARTITION).filter(|a| *a != self.me)?;
        Some((addr, epoch))
    }

    /// Sends `r` to the node at `addr`, and its answer back as it came.
    async fn forward(&self, addr: std::net::SocketAddr, r: &Incoming<'_>) -> Forwarded {
        let uri = match &r.query {
            Some(q) => format!("http://{addr}{}?{q}", r.path),
            None => format!("http://{addr}{}", r.path),
        };
        let mut out = warp::http::Request::new(Body::from(r.body.clone()));
        *out.method_mut() = r.method.clone();
        match uri.parse() {
            Ok(uri) => *out.uri_mut() = uri,
            Err(_) => return Forwarded::Answer(Err(ApiError::new(Code::BadRequest, "path"))),
        }
        let headers = out.headers_mut();
        *headers = r.headers.clone();
        strip_hop_by_hop(headers);
        headers.remove("host");
        headers.remove("content-length");
        if let Ok(v) = HeaderValue::from_str(&self.node.node_id) {
            headers.insert(FORWARDED_HEADER, v);
        }
        let sent = tokio::time::timeout(crate::limits::FORWARD_TIMEOUT, async {
            let answer = self.client.request(out).await?;
            let (parts, body) = answer.into_parts();
            let bytes = hyper::body::to_bytes(body).await?;
            Ok::<_, hyper::Error>((parts, bytes))
        })
        .await;
        match sent {
            Ok(Ok((mut parts, bytes))) => {
                strip_hop_by_hop(&mut parts.headers);
                parts.headers.remove("content-length");
                parts.headers.remove("date");
                Forwarded::Answer(Ok(Response::from_parts(parts, Body::from(bytes))))
            }
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(%addr, error = %e, "forwarding to the leader failed");
                Forwarded::NotSent
            }
            Ok(Err(e)) => {
                tracing::warn!(%addr, error = %e, "the leader's answer was lost");
                Forwarded::AnswerLost
            }
            Err(_) => {
                tracing::warn!(%addr, "the leader did not answer in time");
                Forwarded::AnswerLost
            }
        }
    }

    /// `/healthz`, `/metrics`, the OpenAPI document, `/v1/cluster`, and the
    /// feed (its upgrades are taken before routing: `http::feed`).
    fn node_answer(&self, route: Route, r: &Incoming<'_>) -> ApiResult {
        if route == Route::Feed {
            self.auth.authenticate(&r.headers, None)?;
        }
        if !route.allows(&r.method) {
            return Err(ApiError::method_not_allowed(&route.allow()));
        }
        match route {
            Route::Feed => Err(ApiError::new(
                Code::UpgradeRequired,
                "the stock feed is a WebSocket: GET with Connection: Upgrade, Upgrade: websocket",
            )),
            Route::Healthz => Ok(json_response(200, &serde_json::json!({"status": "ok"}))),
            Route::Metrics => {
                let mut text = match self.node.owned(PARTITION) {
                    Some(state) => {
                        let mut t = state
                            .engine
                            .metrics()
                            .render(&state.engine.journal().stats, state.engine.feed_stats());
                        state.webhooks.render_metrics(&mut t);
                        t
                    }
                    None => String::new(),
                };
                self.node.render_metrics(&mut text);
                let sessions = self.feed.sessions.load(Ordering::Relaxed);
                text.push_str(&format!("# HELP holdfast_cluster_feed_sessions Stock feed sessions open on this node.\n# TYPE holdfast_cluster_feed_sessions gauge\nholdfast_cluster_feed_sessions {sessions}\n"));
                Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Body::from(text))
                    .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))
            }
            Route::OpenApi => Ok(json_response(200, &http::openapi::document())),
            _ => Ok(json_response(200, &self.node.view_json())),
        }
    }
}

/// The headers of one connection (RFC 9110 §7.6.1): never passed on.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for n in named {
        h.remove(n.as_str());
    }
    for hop in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        h.remove(hop);
    }
}

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD)
}

/// 503 while no node may answer as the leader (a takeover in progress, or
/// Redis unreachable past the lease).
fn no_leader() -> ApiError {
    ApiError::new(
        Code::Unavailable,
        "no leader can answer right now (a takeover is in progress, or Redis is unreachable): nothing was done",
    )
    .retry_after(1)
}

/// An answer's status (a problem's too).
fn status_of(a: &ApiResult) -> u16 {
    match a {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status(),
    }
}

/// 504 for a write whose answer cannot be given: forwarded, the leader
/// went away before answering (`Front::to_leader`); or served here, the
/// lease ran out meanwhile (`Front::lead`).
fn outcome_unknown() -> ApiError {
    ApiError::new(
        Code::OutcomeUnknown,
        "the leader went away before answering: the write may or may not have been applied; send it again with an Idempotency-Key to apply it once",
    )
    .retry_after(1)
}

/// What became of a request forwarded to the leader.
enum Forwarded {
    /// The leader's answer, as it came.
    Answer(ApiResult),
    /// No connection to the leader: the request was not sent.
    NotSent,
    /// Sent, and the answer never came (whole): it may have been applied.
    AnswerLost,
}

impl http::Serve for Front {
    fn serve<'a>(&'a self, req: Incoming<'a>) -> futures::future::BoxFuture<'a, ApiResult> {
        Box::pin(self.handle(req))
    }
    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.node.metrics
    }
    fn feed(&self) -> Arc<http::feed::FeedHost> {
        self.feed.clone()
    }
}
