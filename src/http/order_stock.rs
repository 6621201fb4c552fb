//! Where an order's stock goes: the plan, the holds of its shipments, and
//! their confirm, fulfil and release.
//!
//! On one node the order and its stock share one engine. On a cluster
//! node an order lives with the engine of its home shard (the shard of its
//! id: `cluster::front`), while each SKU's stock lives with the shard of
//! the SKU; the order's stock operations then go through the node's front,
//! exactly as a client's requests would (any node, forwarded to each
//! shard's owner, carts across shards all or nothing), with the node's own
//! credential.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use warp::http::{HeaderMap, HeaderValue, Method};

use super::error::{ApiError, Code};
use super::AppState;
use crate::actors::CartLine;
use crate::cluster::front::Front;
use crate::domain::catalog::SkuIdx;
use crate::domain::ids::{LocationId, ReservationId};
use crate::domain::order::OwedRestock;
use crate::domain::reservation::{Line, SplitRefused, Status, Transition};
use crate::domain::sourcing::{PickupRefused, Plan, PlanOptions, Target};
use crate::domain::stock::AdjustReason;

/// See the module's documentation.
#[derive(Clone, Default)]
pub enum OrderStock {
    /// The stock is this engine's.
    #[default]
    Engine,
    /// Each SKU's shard, through the node's front.
    Cluster(ClusterStock),
}

/// A cluster node's way to its shards, for the orders of its engines.
#[derive(Clone)]
pub struct ClusterStock {
    /// Set once the front exists (it is made after the node and its
    /// engines).
    pub front: Arc<OnceLock<Weak<Front>>>,
    /// The node's own credential: an admin token of `[auth]` (none when
    /// the node runs open).
    pub token: Option<String>,
}

/// The answer of a request the order code made of the front.
type Answer = (u16, Value);

impl ClusterStock {
    fn front(&self) -> Result<Arc<Front>, ApiError> {
        self.front.get().and_then(Weak::upgrade).ok_or_else(|| {
            ApiError::new(
                Code::Unavailable,
                "the cluster node is starting or stopping",
            )
            .retry_after(1)
        })
    }

    fn headers(&self, key: Option<&str>) -> Result<HeaderMap, ApiError> {
        let mut h = HeaderMap::new();
        if let Some(t) = &self.token {
            let v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                ApiError::new(Code::Unavailable, "the node's token is not a header value")
            })?;
            h.insert(warp::http::header::AUTHORIZATION, v);
        }
        if let Some(k) = key {
            let v = HeaderValue::from_str(k)
                .map_err(|_| ApiError::new(Code::BadRequest, "an order id makes no key"))?;
            h.insert(super::reservations::IDEMPOTENCY_KEY, v);
        }
        Ok(h)
    }

    /// `method path` with `body` through the front. Boxed: it comes back
    /// to an engine's handler (the order's own came from one).
    fn call(
        &self,
        method: Method,
        path: String,
        key: Option<String>,
        body: Value,
    ) -> BoxFuture<'static, Result<Answer, ApiError>> {
        let ready = self
            .front()
            .and_then(|f| Ok((f, self.headers(key.as_deref())?)));
        Box::pin(async move {
            let (front, headers) = ready?;
            let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
            let body = if body.is_null() {
                Bytes::new()
            } else {
                Bytes::from(body.to_string())
            };
            let answer = front.handle(method, &path, &seg, None, headers, body).await;
            Ok(crate::cluster::front::body_of(answer).await)
        })
    }

    /// `POST path` with `body`, served by `shard`'s engine (here or at its
    /// owner). Boxed, as `call`.
    fn call_shard(
        &self,
        shard: u32,
        path: String,
        body: Value,
    ) -> BoxFuture<'static, Result<Answer, ApiError>> {
        let ready = self.front().and_then(|f| Ok((f, self.headers(None)?)));
        Box::pin(async move {
            let (front, headers) = ready?;
            let body = Bytes::from(body.to_string());
            Ok(front
                .shard_call(shard, Method::POST, &path, headers, body)
                .await)
        })
    }
}

/// A shard's refusal of the node's own request, as this node answers it:
/// its problem as it came, or, refused for the node's token (401, 403),
/// what the node lacks.
fn part_error(st: u16, b: &Value) -> ApiError {
    if !matches!(st, 401 | 403) {
        return ApiError::from_problem(st, b);
    }
    ApiError::new(
        Code::Unavailable,
        format!(
            "the cluster node's own request was refused ({st}: {}): its [auth] needs an admin token",
            b["detail"].as_str().unwrap_or("")
        ),
    )
}

impl OrderStock {
    /// The plan of `asked` for `target`, from the stock of every SKU.
    pub async fn plan(
        &self,
        state: &AppState,
        asked: &[(SkuIdx, u32)],
        target: Target,
        options: PlanOptions,
    ) -> Result<Result<Plan, PickupRefused>, ApiError> {
        let OrderStock::Cluster(cl) = self else {
            return Ok(state.engine.plan(asked, target, options).await?);
        };
        let front = cl.front()?;
        let skus: Vec<String> = {
            let c = state.engine.catalog();
            asked
                .iter()
                .filter_map(|(s, _)| c.sku(*s).map(|x| x.0.as_str().to_string()))
                .collect()
        };
        let ids: Vec<&str> = skus.iter().map(String::as_str).collect();
        let mut shards: Vec<u32> = ids.iter().map(|s| front.node.config.shard_of(s)).collect();
        shards.sort_unstable();
        shards.dedup();
        let headers = cl.headers(None)?;
        let gathered = match Box::pin(front.stock_of(&headers, &shards, &ids)).await {
            Ok(g) => g,
            Err(resp) => {
                let (st, b) = crate::cluster::front::body_of(Ok(resp)).await;
                return Err(part_error(st, &b));
            }
        };
        let stock = super::sourcing::stock_by_index(&state.engine.catalog(), gathered);
        let counts = self.capacity_counts(state).await?;
        Ok(state
            .engine
            .plan_with_counts(asked, stock, target, options, counts.as_deref()))
    }

    /// On a cluster, today's orders of each location summed over every
    /// shard (each counts the orders it keeps), when a location has a
    /// daily capacity: what a plan marks full. `None`: nothing to count.
    pub async fn capacity_counts(
        &self,
        state: &AppState,
    ) -> Result<Option<Vec<(LocationId, u32)>>, ApiError> {
        let OrderStock::Cluster(cl) = self else {
            return Ok(None);
        };
        let capped = state
            .engine
            .catalog()
            .locations()
            .any(|(_, l)| l.daily_capacity.is_some());
        if !capped {
            return Ok(None);
        }
        let shards = cl.front()?.node.config.shards;
        let answers = futures::future::join_all(
            (0..shards).map(|s| cl.call_shard(s, "/v1/sourcing/capacity".into(), json!({}))),
        )
        .await;
        let mut sum: std::collections::BTreeMap<LocationId, u32> = Default::default();
        for a in answers {
            let (st, b) = a?;
            if st != 200 {
                return Err(part_error(st, &b));
            }
            for c in b["counts"].as_array().into_iter().flatten() {
                let l = c[0].as_str().and_then(|l| LocationId::parse(l).ok());
                let n = c[1].as_u64().and_then(|n| u32::try_from(n).ok());
                if let (Some(l), Some(n)) = (l, n) {
                    let e = sum.entry(l).or_default();
                    *e = e.saturating_add(n);
                }
            }
        }
        Ok(Some(sum.into_iter().collect()))
    }

    /// Holds `cart` for `ttl_s`: its id, or `None` when a line is short
    /// (the stock moved since the plan). On a cluster the hold goes under
    /// `key`, so a hold whose answer was lost with a shard's owner is
    /// asked again under it, never held twice.
    pub async fn hold(
        &self,
        state: &AppState,
        cart: &[CartLine],
        ttl_s: u64,
        key: &str,
    ) -> Result<Option<ReservationId>, ApiError> {
        let OrderStock::Cluster(cl) = self else {
            return Ok(state
                .engine
                .reserve(cart, false, ttl_s, None)
                .await?
                .ok()
                .map(|r| r.id));
        };
        let lines: Vec<Value> = {
            let c = state.engine.catalog();
            cart.iter()
                .map(|l| {
                    json!({
                        "sku": c.sku(l.sku).map(|x| x.0.as_str()),
                        "location": c.location(l.location).map(|x| x.0.as_str()),
                        "qty": l.qty,
                    })
                })
                .collect()
        };
        let body = json!({ "lines": lines, "ttl_s": ttl_s });
        let (st, b) = cl
            .call(
                Method::POST,
                "/v1/reservations".into(),
                Some(key.into()),
                body,
            )
            .await?;
        match st {
            201 => b["id"]
                .as_str()
                .and_then(|id| ReservationId::parse(id).ok())
                .map(Some)
                .ok_or_else(|| ApiError::new(Code::Unavailable, "a hold answered no id")),
            409 if b["code"] == "insufficient_stock" => Ok(None),
            _ => Err(part_error(st, &b)),
        }
    }

    /// `t` (confirm, release or fulfil) of reservation `r`: whether it was
    /// made (false: the reservation is not in a status that allows it).
    pub async fn transition(
        &self,
        state: &AppState,
        r: ReservationId,
        t: Transition,
    ) -> Result<bool, ApiError> {
        let OrderStock::Cluster(cl) = self else {
            return Ok(state.engine.transition(r, t).await?.is_ok());
        };
        let verb = match t {
            Transition::Confirm => "confirm",
            Transition::Release => "release",
            Transition::Fulfil => "fulfil",
            Transition::Extend { .. } | Transition::Expire => {
                return Err(ApiError::new(Code::InvalidTransition, "not an order's"))
            }
        };
        let (st, b) = cl
            .call(
                Method::POST,
                format!("/v1/reservations/{r}/{verb}"),
                None,
                Value::Null,
            )
            .await?;
        match st {
            200 => Ok(true),
            409 => Ok(false),
            _ => Err(part_error(st, &b)),
        }
    }

    /// The status of reservation `r` (`None`: no such reservation).
    pub async fn status(
        &self,
        state: &AppState,
        r: ReservationId,
    ) -> Result<Option<Status>, ApiError> {
        Ok(self.reservation(state, r).await?.map(|x| x.0))
    }

    /// Reservation `r`'s status and lines (`None`: no such reservation).
    pub async fn reservation(
        &self,
        state: &AppState,
        r: ReservationId,
    ) -> Result<Option<(Status, Vec<Line>)>, ApiError> {
        let OrderStock::Cluster(cl) = self else {
            return Ok(state
                .engine
                .reservation(r)
                .await?
                .map(|x| (x.status, x.lines)));
        };
        let (st, b) = cl
            .call(
                Method::GET,
                format!("/v1/reservations/{r}"),
                None,
                Value::Null,
            )
            .await?;
        match st {
            200 => {
                let status = serde_json::from_value::<Status>(b["status"].clone());
                let lines = serde_json::from_value::<Vec<Line>>(b["lines"].clone());
                match (status, lines) {
                    (Ok(s), Ok(l)) => Ok(Some((s, l))),
                    _ => Err(ApiError::new(
                        Code::Unavailable,
                        "a reservation answered no lines",
                    )),
                }
            }
            404 => Ok(None),
            _ => Err(part_error(st, &b)),
        }
    }

    /// Held reservation `from` turned into `parts` (an order's shipments),
    /// each held for `ttl_s`: their ids, or why not. On a cluster a part
    /// whose lines are in several shards is one id in each (a cart's, as
    /// `cluster::front` holds carts), each shard's part of `from` split by
    /// its engine in turn; one refused, the parts split before it are
    /// released (the order fails: `from` was not held whole).
    pub async fn split(
        &self,
        state: &AppState,
        from: ReservationId,
        parts: Vec<Vec<Line>>,
        ttl_s: u64,
    ) -> Result<Result<Vec<ReservationId>, SplitRefused>, ApiError> {
        let OrderStock::Cluster(cl) = self else {
            return Ok(state
                .engine
                .split_reservation(from, parts, ttl_s)
                .await?
                .map(|v| v.into_iter().map(|r| r.id).collect()));
        };
        let front = cl.front()?;
        let config = &front.node.config;
        let books = state.engine.books();
        let book = crate::actors::book_of(&from, books);
        // Each part's id: its shards, then a random number, drawn until the
        // id falls in `from`'s book (the book inserts the parts as it
        // journals the split).
        let ids: Vec<ReservationId> = parts
            .iter()
            .map(|lines| {
                let mut shards: Vec<u32> = lines
                    .iter()
                    .map(|l| config.shard_of(l.sku.as_str()))
                    .collect();
                shards.sort_unstable();
                shards.dedup();
                let prefix = shards
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("-");
                loop {
                    let id = format!("{prefix}.c{:016x}", rand::random::<u64>());
                    if let Ok(id) = ReservationId::parse(&id) {
                        if crate::actors::book_of(&id, books) == book {
                            break id;
                        }
                    }
                }
            })
            .collect();
        let mut by_shard: std::collections::BTreeMap<u32, Vec<(String, Vec<Line>)>> =
            std::collections::BTreeMap::new();
        for (id, lines) in ids.iter().zip(&parts) {
            for l in lines {
                let mine = by_shard.entry(config.shard_of(l.sku.as_str())).or_default();
                match mine.iter_mut().find(|p| p.0 == id.as_str()) {
                    Some(p) => p.1.push(l.clone()),
                    None => mine.push((id.as_str().to_string(), vec![l.clone()])),
                }
            }
        }
        let mut refused = None;
        for (shard, into) in &by_shard {
            let body = json!({ "into": into, "ttl_s": ttl_s });
            let answer = cl
                .call_shard(*shard, format!("/v1/reservations/{from}/split"), body)
                .await;
            let (st, b) = match answer {
                Ok(x) => x,
                Err(e) => {
                    refused = Some(Err(e));
                    break;
                }
            };
            let why = match st {
                200 => continue,
                409 => match serde_json::from_value::<Status>(b["reservation_status"].clone()) {
                    Ok(s) => Ok(SplitRefused::NotHeld(s)),
                    Err(_) => Ok(SplitRefused::LinesDiffer),
                },
                _ => Err(part_error(st, &b)),
            };
            refused = Some(why);
            break;
        }
        let Some(why) = refused else {
            return Ok(Ok(ids));
        };
        // The parts split so far go: the order is not placed.
        for id in &ids {
            let _ = self
                .transition(state, id.clone(), Transition::Release)
                .await;
        }
        why.map(Err)
    }

    /// Puts owed returned goods back in stock, once under the restock's
    /// key (a repeat is answered, not applied again).
    pub async fn restock(&self, state: &AppState, r: &OwedRestock) -> Result<(), ApiError> {
        let OrderStock::Cluster(cl) = self else {
            let (s, l) = super::inventory::resolve(
                &state.engine.catalog(),
                r.sku.as_str(),
                r.location.as_str(),
                "",
            )?;
            let done = state
                .engine
                .adjust_keyed(
                    s,
                    l,
                    r.sku.clone(),
                    r.location.clone(),
                    i64::from(r.qty),
                    AdjustReason::Return,
                    Some(r.key.clone()),
                )
                .await?;
            return done.map(|_| ()).map_err(|x| {
                ApiError::new(Code::InsufficientStock, format!("on_hand is {}", x.on_hand))
            });
        };
        let body = json!({"delta": r.qty, "reason": "return"});
        let (st, b) = cl
            .call(
                Method::POST,
                format!("/v1/inventory/{}/{}/adjustments", r.location, r.sku),
                Some(r.key.clone()),
                body,
            )
            .await?;
        match st {
            200 => Ok(()),
            _ => Err(part_error(st, &b)),
        }
    }

    /// Whether the order's stock is a cluster's (what is not served there
    /// yet asks).
    pub fn in_cluster(&self) -> bool {
        matches!(self, OrderStock::Cluster(_))
    }
}
