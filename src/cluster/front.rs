//! A cluster node's HTTP front: any node accepts any request. It finds the
//! shard (or shards) a request is about and serves it with this node's
//! engine of that shard, or forwards it to the shard's owner as it came
//! (the token with it: the owner authenticates it again).
//!
//! - By SKU: `/v1/skus/{sku}` reads, `/v1/inventory/{loc}/{sku}`,
//!   `/v1/availability/{sku}`, a cart whose lines are all of one shard.
//! - By reservation id: the owner's engine names its ids `{shard}.r...`.
//! - Every shard: catalog writes (each shard's engine keeps the whole
//!   catalog, which carts and counts check against). Reads of locations
//!   are served by any shard.
//! - Split: `/v1/inventory/batch` (each shard gets its items, the counts
//!   applied are added).
//!
//! A forwarded request carries `x-holdfast-shard`: the node it reaches
//! serves it for that shard or answers 503 (ownership is moving: the
//! client retries), never forwards it again.

use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use warp::http::{HeaderMap, Method, Response};
use warp::hyper::Body;

use super::node::ClusterNode;
use crate::http;
use crate::http::error::{json_response, ApiError, ApiResult, Code};

/// The header that marks a forwarded request, with its shard.
pub const SHARD_HEADER: &str = "x-holdfast-shard";

pub struct Front {
    pub node: Arc<ClusterNode>,
    client: reqwest::Client,
}

/// Who serves a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// This node, whatever it owns (operations).
    Node,
    Shard(u32),
    /// Any one shard (reads of what every shard holds).
    Any,
    /// Every shard, the first answer returned.
    All,
    /// `/v1/inventory/batch`: split by shard.
    Batch,
}

impl Front {
    pub fn new(node: Arc<ClusterNode>) -> Result<Front, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Front { node, client })
    }

    pub async fn handle(
        &self,
        method: Method,
        path: &str,
        seg: &[&str],
        query: Option<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> ApiResult {
        let req = Incoming {
            method,
            path,
            seg,
            query,
            headers,
            body,
        };
        if let Some(v) = req.headers.get(SHARD_HEADER) {
            let shard = v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|s| *s < self.node.config.shards)
                .ok_or_else(|| ApiError::new(Code::BadRequest, "bad x-holdfast-shard"))?;
            return match self.node.owned(shard) {
                Some(state) => req.serve(&state).await,
                None => Err(moving(shard)),
            };
        }
        match self.target(&req)? {
            Target::Node => self.node_answer(&req),
            Target::Shard(s) => self.to_shard(s, &req).await,
            Target::Any => {
                let s = (0..self.node.config.shards)
                    .find(|s| self.node.owned(*s).is_some())
                    .unwrap_or(0);
                self.to_shard(s, &req).await
            }
            Target::All => {
                let mut first = None;
                for s in 0..self.node.config.shards {
                    let r = self.to_shard(s, &req).await?;
                    if !r.status().is_success() {
                        return Ok(r);
                    }
                    first.get_or_insert(r);
                }
                first.ok_or_else(|| ApiError::new(Code::Unavailable, "no shards"))
            }
            Target::Batch => self.batch(&req).await,
        }
    }

    fn target(&self, r: &Incoming<'_>) -> Result<Target, ApiError> {
        let c = &self.node.config;
        let get = r.method == Method::GET;
        Ok(match r.seg {
            ["healthz"] | ["metrics"] | ["v1", "openapi.json"] | ["v1", "cluster"] => Target::Node,
            ["v1", "skus", sku] if get => Target::Shard(c.shard_of(sku)),
            ["v1", "skus", ..] => Target::All,
            ["v1", "locations", ..] if get => Target::Any,
            ["v1", "locations", _] => Target::All,
            ["v1", "inventory", "batch"] => Target::Batch,
            ["v1", "inventory", _, sku, ..] | ["v1", "availability", sku] => {
                Target::Shard(c.shard_of(sku))
            }
            ["v1", "reservations"] => Target::Shard(self.cart_shard(&r.body)?),
            ["v1", "reservations", id, ..] => Target::Shard(
                id.split_once('.')
                    .and_then(|(s, _)| s.parse::<u32>().ok())
                    .filter(|s| *s < c.shards)
                    .ok_or_else(|| {
                        ApiError::new(Code::NotFound, format!("no reservation {id}"))
                    })?,
            ),
            _ => {
                return Err(ApiError::new(
                    Code::NotImplemented,
                    format!(
                        "{} {} is not served by a cluster node yet (orders, sourcing, the feed and the board run on a single node)",
                        r.method, r.path
                    ),
                ))
            }
        })
    }

    /// The shard of a cart: every line's SKU in one shard. A body that
    /// does not parse goes to shard 0, whose engine answers the problem.
    fn cart_shard(&self, body: &Bytes) -> Result<u32, ApiError> {
        let c = &self.node.config;
        let v: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return Ok(0),
        };
        let Some(lines) = v.get("lines").and_then(|l| l.as_array()) else {
            return Ok(0);
        };
        let mut shards = lines
            .iter()
            .filter_map(|l| l.get("sku")?.as_str())
            .map(|sku| c.shard_of(sku));
        let first = shards.next().unwrap_or(0);
        if shards.any(|s| s != first) {
            return Err(ApiError::new(
                Code::NotImplemented,
                "a cart whose SKUs are in several shards is not served by the cluster yet",
            ));
        }
        Ok(first)
    }

    async fn to_shard(&self, shard: u32, r: &Incoming<'_>) -> ApiResult {
        if let Some(state) = self.node.owned(shard) {
            return r.serve(&state).await;
        }
        let addr = self
            .node
            .owner_addr(shard)
            .filter(|a| {
                // Our own address: the lease says we own it but the engine
                // is not up yet (or just went down).
                self.node.config.node(&self.node.node_id).map(|n| n.http) != Ok(*a)
            })
            .ok_or_else(|| moving(shard))?;
        self.node.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        self.forward(addr, shard, r, r.body.clone()).await
    }

    /// Sends `r` (with `body`) to the node at `addr` for `shard`, and its
    /// answer back as it came.
    async fn forward(
        &self,
        addr: std::net::SocketAddr,
        shard: u32,
        r: &Incoming<'_>,
        body: Bytes,
    ) -> ApiResult {
        let url = match &r.query {
            Some(q) => format!("http://{addr}{}?{q}", r.path),
            None => format!("http://{addr}{}", r.path),
        };
        let method = reqwest::Method::from_bytes(r.method.as_str().as_bytes())
            .map_err(|_| ApiError::new(Code::MethodNotAllowed, "method"))?;
        let mut out = self.client.request(method, url).body(body);
        for (k, v) in &r.headers {
            let skip = matches!(
                k.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding" | SHARD_HEADER
            );
            if !skip {
                out = out.header(k.as_str(), v.as_bytes());
            }
        }
        let answer = out
            .header(SHARD_HEADER, shard.to_string())
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(shard, %addr, error = %e, "forwarding failed");
                moving(shard)
            })?;
        let mut resp = Response::builder().status(answer.status().as_u16());
        for (k, v) in answer.headers() {
            if matches!(k.as_str(), "content-type" | "retry-after" | "location") {
                resp = resp.header(k.as_str(), v.as_bytes());
            }
        }
        let bytes = answer.bytes().await.map_err(|_| moving(shard))?;
        resp.body(Body::from(bytes))
            .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))
    }

    /// `/v1/inventory/batch` split by shard: each gets its items; the
    /// counts applied are added up. A shard that refuses its part stops
    /// the rest (the parts before it stay applied: counts are absolute,
    /// so sending the batch again is safe).
    async fn batch(&self, r: &Incoming<'_>) -> ApiResult {
        let c = &self.node.config;
        let v: serde_json::Value = match serde_json::from_slice(&r.body) {
            Ok(v) => v,
            Err(_) => return self.to_shard(0, r).await, // its engine explains
        };
        let Some(items) = v.get("items").and_then(|i| i.as_array()) else {
            return self.to_shard(0, r).await;
        };
        let mut parts: Vec<Vec<&serde_json::Value>> = vec![Vec::new(); c.shards as usize];
        for item in items {
            let s = item
                .get("sku")
                .and_then(|s| s.as_str())
                .map_or(0, |sku| c.shard_of(sku));
            parts[s as usize].push(item);
        }
        let mut applied = 0u64;
        for (s, part) in parts.iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            let body = Bytes::from(
                serde_json::to_vec(&serde_json::json!({ "items": part }))
                    .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))?,
            );
            let sub = Incoming { body, ..r.clone() };
            let resp = self.to_shard(s as u32, &sub).await?;
            if !resp.status().is_success() {
                return Ok(resp);
            }
            let bytes = warp::hyper::body::to_bytes(resp.into_body())
                .await
                .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))?;
            applied += serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("applied")?.as_u64())
                .unwrap_or(0);
        }
        Ok(json_response(
            200,
            &serde_json::json!({ "applied": applied }),
        ))
    }

    /// `/healthz`, `/metrics`, the OpenAPI document, `/v1/cluster`.
    fn node_answer(&self, r: &Incoming<'_>) -> ApiResult {
        match r.seg {
            ["healthz"] => Ok(json_response(200, &serde_json::json!({"status": "ok"}))),
            ["metrics"] => {
                let mut text = match self.node.any_owned() {
                    Some(state) => state
                        .engine
                        .metrics()
                        .render(&state.engine.journal().stats, state.engine.feed_stats()),
                    None => String::new(),
                };
                self.node.render_metrics(&mut text);
                Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Body::from(text))
                    .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))
            }
            ["v1", "openapi.json"] => Ok(json_response(200, &http::openapi::document())),
            _ => {
                let shards: Vec<serde_json::Value> = self
                    .node
                    .status()
                    .into_iter()
                    .enumerate()
                    .map(|(i, (here, owner, epoch, applied))| {
                        serde_json::json!({
                            "shard": i, "owner": owner, "epoch": epoch,
                            "owned_here": here, "applied_seq": applied,
                        })
                    })
                    .collect();
                Ok(json_response(
                    200,
                    &serde_json::json!({
                        "cluster": self.node.config.cluster,
                        "node": self.node.node_id,
                        "shards": shards,
                    }),
                ))
            }
        }
    }
}

/// 503 while a shard has no serving owner (a takeover in progress).
fn moving(shard: u32) -> ApiError {
    ApiError::new(
        Code::Unavailable,
        format!("shard {shard} has no serving owner right now (a takeover is in progress)"),
    )
    .retry_after(1)
}

/// A request on its way through the front.
#[derive(Clone)]
struct Incoming<'a> {
    method: Method,
    path: &'a str,
    seg: &'a [&'a str],
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Incoming<'_> {
    /// Serves it with this node's engine of its shard.
    async fn serve(&self, state: &Arc<http::AppState>) -> ApiResult {
        http::handle(
            state,
            self.method.clone(),
            self.path,
            self.seg,
            self.query.clone(),
            self.headers.clone(),
            self.body.clone(),
        )
        .await
    }
}
