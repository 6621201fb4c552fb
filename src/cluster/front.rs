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
//! - A cart across shards: each shard holds its lines under the cart's id
//!   (`{s}-{s}[...].c{hex}`), all or nothing (`hold_cart`); reads and
//!   transitions go to every part (`cart_parts`).
//! - Sourcing: a plan of SKUs in several shards is made by an engine of
//!   this node from the stock gathered from each SKU's shard
//!   (`plan_across`); a cart across shards with lines to source is planned
//!   so, then held as a cart (`hold_sourced`). Of one shard: its engine.
//!
//! A forwarded request carries `x-holdfast-shard`: the node it reaches
//! serves it for that shard or answers 503 (ownership is moving: the
//! client retries), never forwards it again.
//!
//! Reads scale out: availability and stock-record reads of a shard this
//! node follows are answered from its copy (`follower_read`) while the
//! copy is fresh, unless the client asks for the owner's answer.

use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use warp::http::{HeaderMap, HeaderValue, Method, Response};
use warp::hyper::Body;

use super::node::ClusterNode;
use crate::clock::Clock;
use crate::http;
use crate::http::error::{json_response, ApiError, ApiResult, Code};
use crate::limits::SOURCING_REPLANS_MAX;

/// How fresh a followed copy must be to answer a read: it had read all
/// its stream held no longer ago than this. A write acknowledged by the
/// owner shows in a follower's answers within this and the replication
/// lag (milliseconds); `Cache-Control: no-cache` reads the owner's.
const FOLLOWER_FRESH: Duration = Duration::from_millis(250);

/// A sourcing request a node without engines passed to one with some, to
/// plan there (`plan_across`); never passed on again.
const PLAN_HERE_HEADER: &str = "x-holdfast-plan-here";

/// Asks a cluster node's planner for each plan line's index in the
/// request (`hold_sourced` places the lines by it).
pub const PLAN_INDEXED_HEADER: &str = "x-holdfast-plan-indexed";

/// The header that marks a forwarded request, with its shard.
pub const SHARD_HEADER: &str = "x-holdfast-shard";

/// Asks a shard to check a whole inventory batch (shape, catalog, the
/// token) and write nothing: every shard holds the whole catalog, so one
/// checks for all before any part is written.
pub const VALIDATE_HEADER: &str = "x-holdfast-validate-only";

/// The id a cart across shards is held under in each of its shards.
pub const CART_ID_HEADER: &str = "x-holdfast-reservation-id";

/// The locations this node's planner chose for a sourced cart's part
/// (`hold_sourced`): a JSON array beside the part's lines, each a
/// location, a split line's parts `[[location, qty], ...]`, or null.
pub const SOURCED_HEADER: &str = "x-holdfast-sourced";

/// On a hold answered from its Idempotency-Key (the first answer again),
/// not made now.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// `{shard}-{shard}[-...].c{hex}`: a cart across shards.
pub fn is_cart_id(id: &str) -> bool {
    cart_shards(id).is_some_and(|s| s.len() >= 2)
}

/// The shards a cart id names (ascending, distinct), if it is one.
fn cart_shards(id: &str) -> Option<Vec<u32>> {
    let (shards, rest) = id.split_once('.')?;
    let hex = rest.strip_prefix('c')?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v: Vec<u32> = shards
        .split('-')
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    v.windows(2).all(|w| w[0] < w[1]).then_some(v)
}

pub struct Front {
    pub node: Arc<ClusterNode>,
    /// The stock feed's sessions on this node (`cluster::feed`).
    pub feed: Arc<http::feed::FeedHost>,
    /// For the reads this node answers from a followed copy (a shard's
    /// engine authenticates the rest).
    auth: http::auth::Auth,
    client: reqwest::Client,
    /// This node's own HTTP address (never forwarded to).
    me: std::net::SocketAddr,
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
    /// A cart whose lines are in these shards: held all or nothing.
    Cart(Vec<u32>),
    /// A cart's id (`Cart`): a read or transition of each part.
    CartParts(Vec<u32>),
    /// `/v1/sourcing/plan` of SKUs in these shards: planned here from the
    /// stock gathered from each (`plan_across`).
    Plan(Vec<u32>),
    /// A cart across these shards with lines to source: planned, then held
    /// as a `Cart` (`hold_sourced`).
    SourcedCart(Vec<u32>),
    /// A store's pickups: orders live with the shard of their id, so each
    /// shard's, merged (`pickups`).
    Pickups,
}

impl Front {
    pub fn new(
        node: Arc<ClusterNode>,
        auth: http::auth::Auth,
        feed: Arc<http::feed::FeedHost>,
    ) -> Result<Front, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| e.to_string())?;
        let me = node.config.node(&node.node_id)?.http;
        Ok(Front {
            node,
            feed,
            auth,
            client,
            me,
        })
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
            // Only what that shard holds: a request naming another shard's
            // SKU would put its stock where nobody reads it.
            if !self.belongs(&req, shard)? {
                return Err(ApiError::new(
                    Code::BadRequest,
                    format!("x-holdfast-shard {shard}: the request is not that shard's"),
                ));
            }
            return match self.node.owned(shard) {
                Some(state) => req.serve(&state).await,
                None => Err(moving(shard)),
            };
        }
        if let Some(answer) = self.follower_read(&req) {
            return answer;
        }
        let target = self.target(&req)?;
        let answer = self.serve(&req, &target).await;
        if req.method != Method::GET {
            // Reads through this node of what it wrote wait for its copies
            // to have it (`follower_read`).
            match &target {
                Target::Shard(s) => self.node.wrote(*s),
                Target::Cart(v) | Target::CartParts(v) | Target::SourcedCart(v) => {
                    v.iter().for_each(|s| self.node.wrote(*s))
                }
                Target::All | Target::Batch => {
                    (0..self.node.config.shards).for_each(|s| self.node.wrote(s))
                }
                Target::Node | Target::Any | Target::Plan(_) | Target::Pickups => {}
            }
        }
        answer
    }

    async fn serve(&self, req: &Incoming<'_>, target: &Target) -> ApiResult {
        match target {
            Target::Node => self.node_answer(req),
            Target::Shard(s) => self.to_shard(*s, req).await,
            Target::Any => {
                let s = (0..self.node.config.shards)
                    .find(|s| self.node.owned(*s).is_some())
                    .unwrap_or(0);
                self.to_shard(s, req).await
            }
            Target::All => {
                let mut first = None;
                for s in 0..self.node.config.shards {
                    let r = self.to_shard(s, req).await?;
                    if !r.status().is_success() {
                        return Ok(r);
                    }
                    first.get_or_insert(r);
                }
                first.ok_or_else(|| ApiError::new(Code::Unavailable, "no shards"))
            }
            Target::Batch => self.batch(req).await,
            Target::Cart(shards) => self.hold_cart(req, shards, None).await,
            Target::CartParts(shards) => self.cart_parts(req, shards).await,
            Target::Plan(shards) => self.plan_across(req, shards).await,
            Target::SourcedCart(shards) => self.hold_sourced(req, shards).await,
            Target::Pickups => self.pickups(req).await,
        }
    }

    /// A store's pickups: every shard's (its orders), merged in the order
    /// one node lists them (oldest first, then by id), as many as one
    /// node's list holds at most. A shard's problem (unknown store, a
    /// token of another store, a takeover) is the answer.
    async fn pickups(&self, r: &Incoming<'_>) -> ApiResult {
        let answers =
            futures::future::join_all((0..self.node.config.shards).map(|s| self.answer(s, r)))
                .await;
        let mut all: Vec<serde_json::Value> = Vec::new();
        let mut first = None;
        for (st, b) in answers {
            if st != 200 {
                return Ok(problem_response(st, &b));
            }
            if let Some(v) = b["pickups"].as_array() {
                all.extend(v.iter().cloned());
            }
            first.get_or_insert(b);
        }
        let key = |o: &serde_json::Value| {
            (
                o["created_at"].as_str().unwrap_or("").to_string(),
                o["id"].as_str().unwrap_or("").to_string(),
            )
        };
        all.sort_by_key(key);
        all.truncate(http::orders::PICKUPS_MAX);
        let mut b = first.unwrap_or_default();
        b["pickups"] = serde_json::Value::Array(all);
        Ok(json_response(200, &b))
    }

    /// An availability or stock-record read of a shard this node follows,
    /// answered from its copy when the copy had read everything its stream
    /// held within `FOLLOWER_FRESH` and since this node last answered a
    /// write of the shard (a client reads its own writes through one node;
    /// in `local` durability a write may reach the stream after its answer,
    /// so only `no-cache` makes sure),
    /// unless the client asks for the owner's answer (`Cache-Control:
    /// no-cache`: its writes through other nodes too). The answer says
    /// `x-holdfast-read: follower`.
    fn follower_read(&self, r: &Incoming<'_>) -> Option<ApiResult> {
        // Every request passes here: the route first, the header after.
        let sku = match r.seg {
            ["v1", "availability", sku] | ["v1", "inventory", _, sku]
                if r.method == Method::GET =>
            {
                *sku
            }
            _ => return None,
        };
        let no_cache = r.headers.get_all("cache-control").iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("no-cache"))
        });
        if no_cache {
            return None;
        }
        let shard = self.node.config.shard_of(sku);
        if self.node.owned(shard).is_some() {
            return None;
        }
        let copy = self.node.fresh_copy(shard, FOLLOWER_FRESH)?;
        let answer = (|| {
            let req = http::Request {
                method: r.method.clone(),
                headers: r.headers.clone(),
                query: r.query.clone(),
                body: r.body.clone(),
                principal: self.auth.authenticate(&r.headers, None)?,
            };
            let model = copy.read();
            match r.seg {
                ["v1", "inventory", loc, _] => {
                    let now = crate::clock::SystemClock.now_ms();
                    http::inventory::get_from(&model, now, &req, loc, sku)
                }
                _ => http::inventory::availability_from(&model, &req, sku),
            }
        })();
        Some(answer.map(|mut resp| {
            resp.headers_mut()
                .insert("x-holdfast-read", HeaderValue::from_static("follower"));
            resp
        }))
    }

    /// Whether `r` may be served by `shard` alone: a request of that
    /// shard, one every shard serves, or a part (of a batch or a cart)
    /// whose SKUs are all that shard's.
    fn belongs(&self, r: &Incoming<'_>, shard: u32) -> Result<bool, ApiError> {
        let c = &self.node.config;
        Ok(match self.target(r)? {
            Target::Shard(s) => s == shard,
            Target::Node | Target::Any | Target::All | Target::Pickups => true,
            Target::CartParts(shards) => shards.contains(&shard),
            Target::Cart(_) | Target::Plan(_) | Target::SourcedCart(_) => false,
            Target::Batch if r.headers.contains_key(VALIDATE_HEADER) => true,
            Target::Batch => serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.get("items")?.as_array().cloned())
                .is_none_or(|items| {
                    items.iter().all(|i| {
                        i.get("sku")
                            .and_then(|s| s.as_str())
                            .is_none_or(|sku| c.shard_of(sku) == shard)
                    })
                }),
        })
    }

    fn target(&self, r: &Incoming<'_>) -> Result<Target, ApiError> {
        let c = &self.node.config;
        let get = r.method == Method::GET;
        Ok(match r.seg {
            ["healthz"] | ["metrics"] | ["v1", "openapi.json"] | ["v1", "cluster"] => Target::Node,
            // Its upgrades are taken before the front (`cluster::feed`).
            ["v1", "feed"] => return Err(ApiError::new(
                Code::UpgradeRequired,
                "the stock feed is a WebSocket: GET with Connection: Upgrade, Upgrade: websocket",
            )),
            ["v1", "skus", sku] if get => Target::Shard(c.shard_of(sku)),
            ["v1", "skus", ..] => Target::All,
            ["v1", "locations", _, "pickups"] => Target::Pickups,
            // An order lives with the shard of its id (its stock with each
            // SKU's: `http::order_stock`). A body without an id goes to
            // shard 0, whose engine names what is missing.
            ["v1", "orders"] => Target::Shard(
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(|id| c.shard_of(id)))
                    .unwrap_or(0),
            ),
            ["v1", "orders", id, ..] => Target::Shard(c.shard_of(id)),
            // A provider's delivery may name orders of several shards:
            // every shard checks its signature and keeps its own orders'
            // notices (a forged one is refused by the first).
            ["v1", "webhooks", "adyen"] => Target::All,
            // A checkout at the provider: no order yet, nothing of a shard.
            ["v1", "payments", "scalapay", "checkouts"] => Target::Any,
            ["v1", "locations", ..] if get => Target::Any,
            // The store board's page: any engine knows the location (its
            // stock comes from this node's feed, `cluster::feed`).
            ["ui", "stores", _] => Target::Any,
            ["v1", "locations", _] => Target::All,
            ["v1", "inventory", "batch"] => Target::Batch,
            ["v1", "inventory", _, sku, ..] | ["v1", "availability", sku] => {
                Target::Shard(c.shard_of(sku))
            }
            ["v1", "reservations"] => match self.cart_shards_of(&r.body) {
                (shards, true) if shards.len() > 1 => Target::SourcedCart(shards),
                (shards, false) if shards.len() > 1 => Target::Cart(shards),
                // One shard's engine sources its own SKUs itself.
                (shards, _) => Target::Shard(shards[0]),
            },
            ["v1", "sourcing", "plan"] => match self.cart_shards_of(&r.body) {
                (shards, _) if shards.len() > 1 => Target::Plan(shards),
                (shards, _) => Target::Shard(shards[0]),
            },
            // Between nodes only (`gather`).
            ["v1", "sourcing", "stock" | "capacity"] if r.headers.contains_key(SHARD_HEADER) => {
                Target::Any
            }
            ["v1", "reservations", id, ..] => match cart_shards(id) {
                Some(shards) if shards.len() > 1 && shards.iter().all(|s| *s < c.shards) => {
                    Target::CartParts(shards)
                }
                _ => Target::Shard(
                    id.split_once('.')
                        .and_then(|(s, _)| s.parse::<u32>().ok())
                        .filter(|s| *s < c.shards)
                        .ok_or_else(|| {
                            ApiError::new(Code::NotFound, format!("no reservation {id}"))
                        })?,
                ),
            },
            _ => {
                return Err(ApiError::new(
                    Code::NotImplemented,
                    format!(
                        "{} {} is not served by a cluster node yet",
                        r.method, r.path
                    ),
                ))
            }
        })
    }

    /// The shards of a cart's lines, ascending (at least one), and whether
    /// a line lacks a location (to be sourced). A body that does not parse
    /// goes to shard 0, whose engine answers the problem.
    fn cart_shards_of(&self, body: &Bytes) -> (Vec<u32>, bool) {
        let c = &self.node.config;
        let Some(lines) = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("lines")?.as_array().cloned())
        else {
            return (vec![0], false);
        };
        let skus: Option<Vec<&str>> = lines.iter().map(|l| l.get("sku")?.as_str()).collect();
        let Some(skus) = skus else {
            // A line without a SKU: one shard's engine names it.
            return (vec![0], false);
        };
        let mut shards: Vec<u32> = skus.iter().map(|sku| c.shard_of(sku)).collect();
        shards.sort_unstable();
        shards.dedup();
        if shards.is_empty() {
            shards.push(0);
        }
        let sourced = lines
            .iter()
            .any(|l| l.get("location").is_none_or(|v| v.is_null()));
        (shards, sourced)
    }

    /// `/v1/sourcing/plan` of SKUs in several shards: the stock of each
    /// SKU gathered from its shard (`gather`), then planned by an engine
    /// of this node (every engine keeps the whole catalog, and the same
    /// `[sourcing]` weights), so the plan weighs the whole cart, grouping
    /// included, as one node's would. A node that owns no shard has it
    /// planned by one that does.
    async fn plan_across(&self, r: &Incoming<'_>, shards: &[u32]) -> ApiResult {
        let owned = (0..self.node.config.shards).find_map(|s| self.node.owned(s));
        let Some(state) = owned else {
            if r.headers.contains_key(PLAN_HERE_HEADER) {
                return Err(moving(shards[0]));
            }
            let addr = (0..self.node.config.shards)
                .find_map(|s| self.node.owner_addr(s).filter(|a| *a != self.me))
                .ok_or_else(|| moving(shards[0]))?;
            let mut there = r.clone();
            there
                .headers
                .insert(PLAN_HERE_HEADER, HeaderValue::from_static("1"));
            return match self.forward(addr, None, &there).await {
                Forwarded::Answer(a) => a,
                // A plan writes nothing: asked again, it is planned again.
                Forwarded::NotSent | Forwarded::AnswerLost => Err(moving(shards[0])),
            };
        };
        let principal = state.auth.authenticate(&r.headers, None)?;
        principal.require_channel()?;
        let gathered = match self.gather(r, shards).await {
            Ok(g) => g,
            Err(problem) => return Ok(problem),
        };
        let req = http::Request {
            method: r.method.clone(),
            headers: r.headers.clone(),
            query: r.query.clone(),
            body: r.body.clone(),
            principal,
        };
        http::sourcing::plan_from(&state, &req, Some(gathered)).await
    }

    /// What the shards hold of the cart's SKUs, for a planner: each shard
    /// asked at once, read from this node's engine of it or asked of its
    /// owner (`POST /v1/sourcing/stock`, with the client's token).
    async fn gather(
        &self,
        r: &Incoming<'_>,
        shards: &[u32],
    ) -> Result<http::sourcing::Gathered, Response<Body>> {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let skus: Vec<&str> = v["lines"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l["sku"].as_str()).collect())
            .unwrap_or_default();
        self.stock_of(&r.headers, shards, &skus).await
    }

    /// `method path` with `body` and `headers`, served by `shard`'s engine
    /// (here, or forwarded to its owner): an order's own request of one
    /// shard (`http::order_stock`).
    pub async fn shard_call(
        &self,
        shard: u32,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> (u16, serde_json::Value) {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let r = Incoming::internal(method, path, &seg, headers, body);
        self.answer(shard, &r).await
    }

    /// What `shards` hold of `skus` (`gather`), asked with `headers`.
    pub async fn stock_of(
        &self,
        headers: &HeaderMap,
        shards: &[u32],
        skus: &[&str],
    ) -> Result<http::sourcing::Gathered, Response<Body>> {
        let c = &self.node.config;
        let asks: Vec<(u32, Vec<&str>)> = shards
            .iter()
            .map(|s| {
                let mine = skus
                    .iter()
                    .copied()
                    .filter(|sku| c.shard_of(sku) == *s)
                    .collect();
                (*s, mine)
            })
            .collect();
        let seg = ["v1", "sourcing", "stock"];
        let answers = futures::future::join_all(asks.iter().map(|(s, mine)| async move {
            // An engine here: read, not sent through HTTP and JSON (the
            // caller authenticated the token).
            if let Some(state) = self.node.owned(*s) {
                return http::sourcing::stock_of(&state, mine)
                    .await
                    .map_err(ApiError::into_response);
            }
            let ask = Incoming::internal(
                Method::POST,
                "/v1/sourcing/stock",
                &seg,
                headers.clone(),
                Bytes::from(serde_json::json!({ "skus": mine }).to_string()),
            );
            match self.answer(*s, &ask).await {
                (200, b) => Ok(http::sourcing::gathered_of(&b)),
                // The shard's problem (503 while it changes hands), as is.
                (st, b) => Err(problem_response(st, &b)),
            }
        }))
        .await;
        let mut gathered = Vec::new();
        for part in answers {
            gathered.extend(part?);
        }
        Ok(gathered)
    }

    /// A cart across shards with lines to source: planned (`plan_across`,
    /// the lines without a location, as one node plans them), then held
    /// all or nothing as a `Cart` with the chosen locations beside the
    /// client's body (`SOURCED_HEADER`: the body, and an Idempotency-Key's
    /// hash of it, stay the client's). Short on a planned line (the stock
    /// moved since the plan): planned again, at most
    /// `SOURCING_REPLANS_MAX` times; a keyed cart is not (each part's key
    /// remembers its first answer), it answers the shortage.
    async fn hold_sourced(&self, r: &Incoming<'_>, shards: &[u32]) -> ApiResult {
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| ApiError::new(Code::BadRequest, format!("body: {e}")))?;
        let lines = v["lines"].as_array().cloned().unwrap_or_default();
        let partial = v["allow_partial"].as_bool().unwrap_or(false);
        let keyed = r.headers.contains_key(http::reservations::IDEMPOTENCY_KEY);
        // The lines to source, by their index in the cart.
        let asked: Vec<usize> = (0..lines.len())
            .filter(|i| lines[*i].get("location").is_none_or(|l| l.is_null()))
            .collect();
        let mut plan_body = serde_json::json!({
            "lines": asked
                .iter()
                .map(|i| serde_json::json!({"sku": lines[*i]["sku"], "qty": lines[*i]["qty"]}))
                .collect::<Vec<_>>(),
        });
        for k in ["destination", "pickup_location", "split_lines"] {
            if let Some(x) = v.get(k) {
                plan_body[k] = x.clone();
            }
        }
        let plan_body = Bytes::from(plan_body.to_string());
        let (plan_shards, _) = self.cart_shards_of(&plan_body);
        let seg = ["v1", "sourcing", "plan"];
        let mut headers = r.headers.clone();
        headers.insert(PLAN_INDEXED_HEADER, HeaderValue::from_static("1"));
        let plan_req =
            Incoming::internal(Method::POST, "/v1/sourcing/plan", &seg, headers, plan_body);
        let mut attempt = 0;
        loop {
            let (st, mut plan) = body_of(self.plan_across(&plan_req, &plan_shards).await).await;
            if st != 200 {
                renumber_lines(&mut plan, &asked);
                return Ok(problem_response(st, &plan));
            }
            let unsourced = plan["unsourced"].as_array().cloned().unwrap_or_default();
            if !unsourced.is_empty() && !partial {
                let short: Vec<serde_json::Value> = unsourced
                    .iter()
                    .map(|u| serde_json::json!({"sku": u["sku"], "location": null, "requested": u["qty"], "available": 0}))
                    .collect();
                return Err(ApiError::new(
                    Code::InsufficientStock,
                    "the eligible locations cannot serve every line",
                )
                .with("lines", serde_json::Value::Array(short)));
            }
            // Each sourced line's parts (location, qty): one unless split.
            let mut chosen: Vec<Vec<(String, u64)>> = vec![Vec::new(); lines.len()];
            for sh in plan["shipments"].as_array().into_iter().flatten() {
                for l in sh["lines"].as_array().into_iter().flatten() {
                    let k = l["line"].as_u64().and_then(|k| asked.get(k as usize));
                    let part = sh["location"].as_str().zip(l["qty"].as_u64());
                    if let (Some(&i), Some((loc, qty))) = (k, part) {
                        chosen[i].push((loc.to_string(), qty));
                    }
                }
            }
            if chosen.iter().all(Vec::is_empty) && asked.len() == lines.len() {
                return Err(ApiError::new(
                    Code::InsufficientStock,
                    "no eligible location can serve any line",
                )
                .with("lines", serde_json::json!([])));
            }
            let (st, b) = body_of(self.hold_cart(r, shards, Some(&chosen)).await).await;
            // Short where the planner sent a line: the stock moved since.
            let moved = || {
                b["lines"].as_array().into_iter().flatten().any(|s| {
                    (0..lines.len()).any(|i| {
                        chosen[i]
                            .iter()
                            .any(|(loc, _)| s["location"] == loc.as_str())
                            && s["sku"] == lines[i]["sku"]
                    })
                })
            };
            let again = st == 409 && b["code"] == "insufficient_stock" && !keyed && moved();
            if !again || attempt >= SOURCING_REPLANS_MAX {
                return Ok(if st == 201 {
                    json_response(st, &b)
                } else {
                    problem_response(st, &b)
                });
            }
            attempt += 1;
            tracing::debug!(attempt, "stock moved between plan and hold: planning again");
        }
    }

    /// Holds a cart across shards, all or nothing: each shard holds its
    /// lines under the cart's id (`{shards}.c...`) with the cart's TTL; if
    /// any part is refused, the parts held are released. A coordinator
    /// that dies in between leaves nothing held past the TTL: each part
    /// expires on its own.
    async fn hold_cart(
        &self,
        r: &Incoming<'_>,
        shards: &[u32],
        sourced: Option<&[Vec<(String, u64)>]>,
    ) -> ApiResult {
        let c = &self.node.config;
        let mut v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| ApiError::new(Code::BadRequest, format!("body: {e}")))?;
        let lines = v
            .get("lines")
            .and_then(|l| l.as_array())
            .cloned()
            .unwrap_or_default();
        let partial = v
            .get("allow_partial")
            .and_then(|p| p.as_bool())
            .unwrap_or(false);
        // The id: from the Idempotency-Key if any (a retry gets the same
        // one, which each part's key table answers), else random.
        let tag = match r.headers.get(http::reservations::IDEMPOTENCY_KEY) {
            Some(k) => {
                let auth = r
                    .headers
                    .get("authorization")
                    .map_or(&b""[..], |a| a.as_bytes());
                let mut seed = auth.to_vec();
                seed.push(0);
                seed.extend_from_slice(k.as_bytes());
                crate::domain::event::fnv1a64(&seed)
            }
            None => rand::random::<u64>(),
        };
        let names: Vec<String> = shards.iter().map(u32::to_string).collect();
        let id = format!("{}.c{tag:016x}", names.join("-"));
        // Each part: the body with its lines (and where each came from).
        let mut parts = Vec::with_capacity(shards.len());
        for s in shards {
            let (index, mine): (Vec<usize>, Vec<serde_json::Value>) = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    l.get("sku")
                        .and_then(|x| x.as_str())
                        .map(|sku| c.shard_of(sku))
                        == Some(*s)
                })
                .map(|(i, l)| (i, l.clone()))
                .unzip();
            v["lines"] = serde_json::Value::Array(mine);
            let body = Bytes::from(
                serde_json::to_vec(&v)
                    .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))?,
            );
            let mut headers = r.headers.clone();
            headers.insert(
                CART_ID_HEADER,
                id.parse()
                    .map_err(|_| ApiError::new(Code::BadRequest, "cart id"))?,
            );
            if let Some(chosen) = sourced {
                headers.insert(SOURCED_HEADER, sourced_header(chosen, &index)?);
            }
            parts.push((
                *s,
                index,
                Incoming {
                    body,
                    headers,
                    ..r.clone()
                },
            ));
        }
        let replies = futures::future::join_all(
            parts
                .iter()
                .map(|(s, _, part)| async move { replied(self.to_shard(*s, part).await).await }),
        )
        .await;
        let replayed: Vec<bool> = replies.iter().map(|(_, _, x)| *x).collect();
        let answers: Vec<(u16, serde_json::Value)> =
            replies.into_iter().map(|(st, b, _)| (st, b)).collect();
        let held: Vec<usize> = (0..parts.len()).filter(|i| answers[*i].0 == 201).collect();
        let whole = held.len() == parts.len();
        if whole && replayed.contains(&true) && replayed.contains(&false) {
            // A key some parts answer from (their first answer) and others
            // held now: the parts that forgot theirs (a refusal is kept in
            // memory only) may have refused, and the cart was undone then.
            // A part answered from its key but no longer held says so.
            let undone = self.undone_parts(&id, &r.headers, &parts, &replayed).await;
            if undone {
                let fresh: Vec<u32> = (0..parts.len())
                    .filter(|i| !replayed[*i])
                    .map(|i| parts[i].0)
                    .collect();
                self.release_parts(&id, &r.headers, &fresh).await;
                return Err(ApiError::new(
                    Code::InsufficientStock,
                    format!(
                        "cart {id} was refused and undone under this Idempotency-Key before: nothing is held"
                    ),
                )
                .with("lines", serde_json::json!([])));
            }
        }
        if whole
            || (partial && !held.is_empty() && answers.iter().all(|a| matches!(a.0, 201 | 409)))
        {
            let held_parts: Vec<serde_json::Value> =
                held.iter().map(|i| answers[*i].1.clone()).collect();
            return Ok(json_response(201, &merge_parts(&id, &held_parts)));
        }
        // Not whole: release what was held, and what may have been (a
        // part whose owner went away before answering).
        let outcome_unknown = Code::OutcomeUnknown.meta().1;
        let held_shards: Vec<u32> = (0..parts.len())
            .filter(|i| answers[*i].0 == 201 || answers[*i].0 == outcome_unknown)
            .map(|i| parts[i].0)
            .collect();
        self.release_parts(&id, &r.headers, &held_shards).await;
        // The answer: every short line if all refusals were for stock,
        // else the first other refusal (its field paths in the cart's
        // numbering).
        let refusals: Vec<usize> = (0..parts.len()).filter(|i| answers[*i].0 != 201).collect();
        if refusals
            .iter()
            .all(|i| answers[*i].0 == 409 && answers[*i].1["code"] == "insufficient_stock")
        {
            let mut body = answers[refusals[0]].1.clone();
            let short: Vec<serde_json::Value> = refusals
                .iter()
                .flat_map(|i| {
                    answers[*i].1["lines"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            body["lines"] = serde_json::Value::Array(short);
            return Ok(problem_response(409, &body));
        }
        let i = refusals
            .iter()
            .copied()
            .find(|i| answers[*i].0 != 409)
            .unwrap_or(refusals[0]);
        let (st, mut body) = answers[i].clone();
        renumber_lines(&mut body, &parts[i].1);
        Ok(problem_response(st, &body))
    }

    /// Whether a part of cart `id` answered from its key (`replayed`) is
    /// no longer held (released or expired): the cart was undone.
    async fn undone_parts(
        &self,
        id: &str,
        headers: &HeaderMap,
        parts: &[(u32, Vec<usize>, Incoming<'_>)],
        replayed: &[bool],
    ) -> bool {
        let path = format!("/v1/reservations/{id}");
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let read = Incoming::internal(Method::GET, &path, &seg, headers.clone(), Bytes::new());
        for ((s, _, _), _) in parts.iter().zip(replayed).filter(|(_, r)| **r) {
            let (st, b) = self.answer(*s, &read).await;
            if st == 200 && matches!(b["status"].as_str(), Some("released" | "expired")) {
                return true;
            }
        }
        false
    }

    /// A read or transition of a cart across shards: each part, in shard
    /// order; the answer merges them. A confirm that one part refuses
    /// (it expired) releases the others: the cart stays all or nothing.
    async fn cart_parts(&self, r: &Incoming<'_>, shards: &[u32]) -> ApiResult {
        let id = r.seg.get(2).copied().unwrap_or_default();
        let mut found = Vec::new();
        let mut refused = None;
        for s in shards {
            let (st, b) = self.answer(*s, r).await;
            match st {
                200 => found.push(b),
                404 => {}
                _ => {
                    refused.get_or_insert((st, b));
                }
            }
        }
        if let Some((st, b)) = refused {
            if r.seg.get(3) == Some(&"confirm") && !found.is_empty() {
                self.release_parts(id, &r.headers, shards).await;
            }
            return Ok(problem_response(st, &b));
        }
        if found.is_empty() {
            return Err(ApiError::new(
                Code::NotFound,
                format!("no reservation {id}"),
            ));
        }
        Ok(json_response(200, &merge_parts(id, &found)))
    }

    /// Releases the parts of cart `id` in `shards` (with the client's
    /// headers: its token); a part that cannot be released now expires at
    /// its TTL.
    async fn release_parts(&self, id: &str, headers: &HeaderMap, shards: &[u32]) {
        let path = format!("/v1/reservations/{id}/release");
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let release = Incoming::internal(Method::POST, &path, &seg, headers.clone(), Bytes::new());
        for s in shards {
            let (st, b) = self.answer(*s, &release).await;
            if st != 200 {
                tracing::warn!(cart = %id, shard = s, status = st, answer = %b, "a part not released: it expires at its TTL");
            }
        }
    }

    /// `r` served for `shard` (here or by its owner): status and body.
    async fn answer(&self, shard: u32, r: &Incoming<'_>) -> (u16, serde_json::Value) {
        body_of(self.to_shard(shard, r).await).await
    }

    /// `r` served by `shard`'s engine here or forwarded to its owner.
    ///
    /// A forwarded write whose answer never came (the owner died or hung
    /// with it) may have been applied: answering 503, which tells the
    /// client nothing was done, would have it hold twice. With an
    /// `Idempotency-Key` the write is sent again under it to whoever owns
    /// the shard within the takeover's time (the key is journaled with the
    /// hold and comes back on the new owner with it, so the first answer
    /// comes back, or the write is applied once now; a 503 meanwhile, the
    /// new owner not serving yet, is asked again). A PUT (a stock
    /// count, a catalog entry: the value itself), a reservation's confirm
    /// or release are sent again as they are: applied twice, they are what
    /// they were once. Otherwise the answer is 504
    /// `outcome_unknown`, as a connection reset would be.
    async fn to_shard(&self, shard: u32, r: &Incoming<'_>) -> ApiResult {
        let write = !matches!(r.method, Method::GET | Method::HEAD);
        // A confirm or a release made twice is made once (the second
        // finds it done and changes nothing).
        let settles = matches!(r.seg, ["v1", "reservations", _, "confirm" | "release"]);
        let resend = write
            && (r.method == Method::PUT
                || settles
                || r.headers.contains_key(http::reservations::IDEMPOTENCY_KEY));
        let lease = self.node.config.lease;
        // Set when an answer is lost: the takeover's time from then.
        let mut lost: Option<std::time::Instant> = None;
        loop {
            let answer = if let Some(state) = self.node.owned(shard) {
                Some(r.serve(&state).await)
            } else if let Some(addr) = self.node.owner_addr(shard).filter(|a| *a != self.me) {
                // (Our own address: the lease says we own it but the
                // engine is not up yet, or just went down.)
                self.node.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                match self.forward(addr, Some(shard), r).await {
                    Forwarded::Answer(a) => Some(a),
                    Forwarded::NotSent => None,
                    Forwarded::AnswerLost => {
                        lost.get_or_insert_with(|| {
                            std::time::Instant::now() + lease.ttl() * 2 + Duration::from_secs(1)
                        });
                        None
                    }
                }
            } else {
                None
            };
            match answer {
                // Sent again after a lost answer, a 503 (the new owner not
                // serving yet) says nothing of the first: asked again.
                Some(a) if lost.is_some() && status_of(&a) == 503 => {}
                Some(a) => return a,
                None => {}
            }
            let Some(deadline) = lost.filter(|_| write) else {
                return Err(moving(shard));
            };
            if !resend || std::time::Instant::now() >= deadline {
                return Err(outcome_unknown(shard));
            }
            tokio::time::sleep(Duration::from_millis(lease.renew_ms.min(200))).await;
        }
    }

    /// Sends `r` to the node at `addr` (for `shard`'s engine there, or for
    /// its front: `plan_across`), and its answer back as it came.
    async fn forward(
        &self,
        addr: std::net::SocketAddr,
        shard: Option<u32>,
        r: &Incoming<'_>,
    ) -> Forwarded {
        let url = match &r.query {
            Some(q) => format!("http://{addr}{}?{q}", r.path),
            None => format!("http://{addr}{}", r.path),
        };
        let Ok(method) = reqwest::Method::from_bytes(r.method.as_str().as_bytes()) else {
            return Forwarded::Answer(Err(ApiError::new(Code::MethodNotAllowed, "method")));
        };
        let mut out = self.client.request(method, url).body(r.body.clone());
        for (k, v) in &r.headers {
            let skip = matches!(
                k.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding" | SHARD_HEADER
            );
            if !skip {
                out = out.header(k.as_str(), v.as_bytes());
            }
        }
        if let Some(shard) = shard {
            out = out.header(SHARD_HEADER, shard.to_string());
        }
        let answer = match out.send().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(?shard, %addr, error = %e, "forwarding failed");
                return if e.is_connect() {
                    Forwarded::NotSent
                } else {
                    Forwarded::AnswerLost
                };
            }
        };
        let mut resp = Response::builder().status(answer.status().as_u16());
        for (k, v) in answer.headers() {
            if matches!(
                k.as_str(),
                "content-type" | "retry-after" | "location" | REPLAYED_HEADER
            ) {
                resp = resp.header(k.as_str(), v.as_bytes());
            }
        }
        match answer.bytes().await {
            Ok(bytes) => Forwarded::Answer(
                resp.body(Body::from(bytes))
                    .map_err(|e| ApiError::new(Code::Unavailable, e.to_string())),
            ),
            Err(e) => {
                tracing::warn!(?shard, %addr, error = %e, "forwarded answer cut short");
                Forwarded::AnswerLost
            }
        }
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
        // All or nothing: the whole batch is checked by one shard first
        // (its problem names the items as the client numbered them).
        let first = parts.iter().position(|p| !p.is_empty()).unwrap_or(0) as u32;
        if parts.iter().filter(|p| !p.is_empty()).count() > 1 {
            let mut check = r.clone();
            check
                .headers
                .insert(VALIDATE_HEADER, warp::http::HeaderValue::from_static("1"));
            let resp = self.to_shard(first, &check).await?;
            if !resp.status().is_success() {
                return Ok(resp);
            }
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
        if r.method != Method::GET {
            return Err(ApiError::method_not_allowed("GET, HEAD"));
        }
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
                let sessions = self.feed.sessions.load(Ordering::Relaxed);
                text.push_str(&format!("# HELP holdfast_cluster_feed_sessions Stock feed sessions open on this node.\n# TYPE holdfast_cluster_feed_sessions gauge\nholdfast_cluster_feed_sessions {sessions}\n"));
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
                        "redis_reachable": self.node.redis_reachable(),
                        "shards": shards,
                    }),
                ))
            }
        }
    }
}

/// One reservation of a cart's parts: the cart's id, the parts' common
/// status (if they differ: the one that ends the cart soonest), the
/// earliest expiry and creation, every line in shard order.
fn merge_parts(id: &str, parts: &[serde_json::Value]) -> serde_json::Value {
    let mut out = parts.first().cloned().unwrap_or_default();
    out["id"] = id.into();
    let rank = |s: &str| match s {
        "expired" => 0,
        "released" => 1,
        "held" => 2,
        "confirmed" => 3,
        _ => 4, // fulfilled
    };
    let status = parts
        .iter()
        .filter_map(|p| p["status"].as_str())
        .min_by_key(|s| rank(s))
        .unwrap_or("held");
    out["status"] = status.into();
    for k in ["expires_at", "created_at"] {
        if let Some(min) = parts.iter().filter_map(|p| p[k].as_str()).min() {
            out[k] = min.into();
        }
    }
    out["lines"] = parts
        .iter()
        .flat_map(|p| p["lines"].as_array().cloned().unwrap_or_default())
        .collect();
    out
}

/// A part's problem in the cart's numbering: `lines[k]` of the part is
/// `lines[index[k]]` of the cart.
fn renumber_lines(body: &mut serde_json::Value, index: &[usize]) {
    let Some(errors) = body.get_mut("errors").and_then(|e| e.as_array_mut()) else {
        return;
    };
    for e in errors {
        let Some(field) = e["field"].as_str() else {
            continue;
        };
        let Some(rest) = field.strip_prefix("lines[") else {
            continue;
        };
        let Some((k, tail)) = rest.split_once(']') else {
            continue;
        };
        if let Some(i) = k.parse::<usize>().ok().and_then(|k| index.get(k)) {
            e["field"] = format!("lines[{i}]{tail}").into();
        }
    }
}

/// `SOURCED_HEADER` of a cart's part (its lines' `index` in the cart):
/// a line from one location names it, a split line its parts
/// `[[location, qty], ...]`, a line the client placed is null.
fn sourced_header(chosen: &[Vec<(String, u64)>], index: &[usize]) -> Result<HeaderValue, ApiError> {
    let mine: Vec<serde_json::Value> = index
        .iter()
        .map(|i| match chosen.get(*i).map(Vec::as_slice) {
            Some([(loc, _)]) => serde_json::json!(loc),
            Some(parts @ [_, _, ..]) => serde_json::json!(parts),
            _ => serde_json::Value::Null,
        })
        .collect();
    let text =
        serde_json::to_string(&mine).map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))?;
    HeaderValue::from_str(&text).map_err(|_| ApiError::new(Code::BadRequest, "location ids"))
}

/// A problem+json answer with `body` as it came from a part.
fn problem_response(status: u16, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/problem+json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// 503 while a shard has no serving owner (a takeover in progress).
fn moving(shard: u32) -> ApiError {
    ApiError::new(
        Code::Unavailable,
        format!("shard {shard} has no serving owner right now (a takeover is in progress)"),
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

/// An answer's status and JSON body (a problem's too).
pub async fn body_of(answer: ApiResult) -> (u16, serde_json::Value) {
    let (st, b, _) = replied(answer).await;
    (st, b)
}

/// `body_of`, and whether it was answered from an Idempotency-Key.
async fn replied(answer: ApiResult) -> (u16, serde_json::Value, bool) {
    let resp = answer.unwrap_or_else(ApiError::into_response);
    let st = resp.status().as_u16();
    let replayed = resp.headers().contains_key(REPLAYED_HEADER);
    let bytes = warp::hyper::body::to_bytes(resp.into_body())
        .await
        .unwrap_or_default();
    (
        st,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        replayed,
    )
}

/// 504 for a forwarded write whose answer never came (`Front::to_shard`).
fn outcome_unknown(shard: u32) -> ApiError {
    ApiError::new(
        Code::OutcomeUnknown,
        format!(
            "shard {shard}'s owner went away before answering: the write may or may not have been applied; send it again with an Idempotency-Key to apply it once"
        ),
    )
    .retry_after(1)
}

/// What became of a request forwarded to a shard's owner.
enum Forwarded {
    /// The owner's answer, as it came.
    Answer(ApiResult),
    /// No connection to the owner: the request was not sent.
    NotSent,
    /// Sent, and the answer never came (whole): it may have been applied.
    AnswerLost,
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

impl<'a> Incoming<'a> {
    /// A request this node makes itself (of a shard's engine, here or at
    /// its owner), with the client's headers: its token.
    fn internal(
        method: Method,
        path: &'a str,
        seg: &'a [&'a str],
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        Incoming {
            method,
            path,
            seg,
            query: None,
            headers,
            body,
        }
    }

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
