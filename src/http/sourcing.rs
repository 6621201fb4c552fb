//! `POST /v1/sourcing/plan`: which location would serve which line. A plan
//! holds nothing (api.md, Sourcing).

use serde_json::{json, Value};
use std::sync::Arc;

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{cart_lines, parse_object, Errors};
use super::inventory::resolve_sku;
use super::{AppState, Request};
use crate::domain::catalog::{Catalog, SkuIdx};
use crate::domain::sourcing::{LineStock, Method, PickupRefused, Plan, PlanOptions, Target};
use crate::limits::{CART_LINES_MAX, QTY_MAX};

/// Kilometres to the metre: enough for people, stable for tests.
fn km(d: f64) -> f64 {
    (d * 1000.0).round() / 1000.0
}

/// Lines of a plan, (index in the request, quantity) each: a split line's
/// part has a share of its quantity. `indexed`: with `line`, the line's
/// index in the request, for a cluster node's front (a cart with two
/// lines of one SKU tells them apart by it); clients get the lines as
/// api.md shows them.
fn lines_json(
    c: &Catalog,
    lines: &[(SkuIdx, u32)],
    idx: impl Iterator<Item = (usize, u32)>,
    indexed: bool,
) -> Vec<Value> {
    idx.map(|(i, qty)| {
        let sku = lines[i].0;
        let id = c.sku(sku).map(|s| s.0.as_str()).unwrap_or_default();
        let mut l = json!({"sku": id, "qty": qty});
        if indexed {
            l["line"] = json!(i);
        }
        l
    })
    .collect()
}

fn plan_json(c: &Catalog, lines: &[(SkuIdx, u32)], p: &Plan, indexed: bool) -> Value {
    let name = |l| c.location(l).map(|x| x.0.as_str()).unwrap_or_default();
    let shipments: Vec<Value> = p
        .shipments
        .iter()
        .map(|s| {
            json!({
                "location": name(s.location),
                "lines": lines_json(c, lines, s.lines.iter().copied(), indexed),
                "distance_km": km(s.distance_km),
                "transfer": s.transfer,
            })
        })
        .collect();
    let mut out = json!({
        "shipments": shipments,
        "unsourced": lines_json(c, lines, p.unsourced.iter().map(|&i| (i, lines[i].1)), indexed),
        "method": match p.method {
            Method::Exact => "exact",
            Method::Heuristic => "heuristic",
        },
    });
    if let Some(ex) = &p.explain {
        out["explain"] = ex
            .iter()
            .map(|k| {
                json!({
                    "location": name(k.location),
                    "lines": lines_json(c, lines, k.lines.iter().map(|&i| (i, lines[i].1)), indexed),
                    "distance_km": km(k.distance_km),
                    "scores": {
                        "distance": k.distance_score,
                        "priority": k.priority_score,
                        "rotation": k.rotation_score,
                        "total": k.total,
                    },
                    "chosen": k.chosen,
                })
            })
            .collect();
    }
    out
}

/// Where a cart goes, as the client named it.
pub enum TargetInput {
    Deliver(f64, f64),
    Pickup(String),
}

/// Reads `destination` `{lat, lon}` or `pickup_location` (exactly one;
/// `required`: one must be there).
pub fn parse_target(
    e: &mut Errors,
    m: &serde_json::Map<String, Value>,
    required: bool,
) -> Option<TargetInput> {
    let destination = match m.get("destination") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            let lat = e.float(d, "lat", "destination", -90.0, 90.0, true);
            let lon = e.float(d, "lon", "destination", -180.0, 180.0, true);
            lat.zip(lon)
        }
        Some(_) => {
            e.add("destination", "must be an object {lat, lon}");
            None
        }
    };
    let pickup = e.id(m, "pickup_location", "", false);
    let has_destination = !matches!(m.get("destination"), None | Some(Value::Null));
    let has_pickup = !matches!(m.get("pickup_location"), None | Some(Value::Null));
    match (has_destination, has_pickup) {
        (true, true) => {
            e.add(
                "pickup_location",
                "give a destination or a pickup_location, not both",
            );
            None
        }
        (false, false) => {
            if required {
                e.add(
                    "destination",
                    "is required (or give a pickup_location instead)",
                );
            }
            None
        }
        _ => match (destination, pickup) {
            (Some((lat, lon)), _) => Some(TargetInput::Deliver(lat, lon)),
            (None, Some(p)) => Some(TargetInput::Pickup(p)),
            (None, None) => None,
        },
    }
}

/// The target against the catalog: an unknown pickup location is 422
/// `unknown_location`.
pub fn resolve_target(c: &Catalog, t: TargetInput) -> Result<Target, ApiError> {
    Ok(match t {
        TargetInput::Deliver(lat, lon) => Target::Deliver { lat, lon },
        TargetInput::Pickup(p) => Target::Pickup {
            location: c.location_idx(&p).ok_or_else(|| {
                ApiError::new(Code::UnknownLocation, format!("unknown location {p}"))
                    .with("field", json!("pickup_location"))
            })?,
        },
    })
}

/// 409 `insufficient_stock` naming the lines (indices into `asked`, SKU
/// and quantity) the eligible locations cannot serve.
pub fn unsourced_error(
    c: &Catalog,
    asked: &[(SkuIdx, u32)],
    unsourced: &[usize],
    detail: &str,
) -> ApiError {
    let short: Vec<Value> = unsourced
        .iter()
        .map(|&k| {
            let (sku, qty) = asked[k];
            let id = c.sku(sku).map(|s| s.0.as_str()).unwrap_or_default();
            json!({"sku": id, "location": null, "requested": qty, "available": 0})
        })
        .collect();
    ApiError::new(Code::InsufficientStock, detail).with("lines", json!(short))
}

/// A request's `split_lines` (plans, sourced reservations, orders): a
/// boolean, or absent (`[sourcing] split_lines` then says); anything
/// else is an error on `split_lines`.
pub fn split_lines(e: &mut Errors, m: &serde_json::Map<String, Value>) -> Option<bool> {
    e.boolean(m, "split_lines", "")
}

/// A pickup the store cannot take: 422 on `pickup_location`.
pub fn pickup_refused(refused: PickupRefused) -> ApiError {
    ApiError::validation(vec![super::error::FieldError {
        field: "pickup_location".into(),
        message: match refused {
            PickupRefused::Unknown => "is unknown",
            PickupRefused::Inactive => "is not active",
            PickupRefused::NoPickup => "has no pickup counter",
            PickupRefused::AtCapacity => "has reached its daily capacity",
        }
        .into(),
    }])
}

pub async fn plan(state: &Arc<AppState>, req: &Request) -> ApiResult {
    plan_from(state, req, None).await
}

/// What a cluster node gathers from the shards of a cart's SKUs for its
/// planner: per SKU (its id), its stock at every location (location id,
/// available, rotation index). `stock` below answers a shard's part.
pub type Gathered = Vec<(String, Vec<(String, i64, f64)>)>;

/// The plan of the request's lines, from the engine's own stock or, on a
/// cluster node, from the stock `gathered` from every shard of the cart.
pub async fn plan_from(
    state: &Arc<AppState>,
    req: &Request,
    gathered: Option<Gathered>,
) -> ApiResult {
    req.principal.require_channel()?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let options = PlanOptions {
        explain: e.boolean(&m, "explain", "").unwrap_or(false),
        split_lines: split_lines(&mut e, &m),
    };
    let mut wanted: Vec<(usize, String, u32)> = Vec::new();
    for (i, path, o) in cart_lines(&mut e, &m, "{sku, qty}") {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 1, QTY_MAX, true);
        if let (Some(sku), Some(qty)) = (sku, qty) {
            wanted.push((i, sku, qty as u32));
        }
    }
    let target = parse_target(&mut e, &m, true);
    e.into_result()?;

    let (lines, target) = {
        let c = state.engine.catalog();
        let mut lines = Vec::with_capacity(wanted.len());
        for (i, sku, qty) in &wanted {
            lines.push((resolve_sku(&c, sku, &format!("lines[{i}]."))?, *qty));
        }
        let target = match target {
            Some(t) => resolve_target(&c, t)?,
            // Validation above leaves one (it was required).
            None => return Err(ApiError::new(Code::ValidationFailed, "destination")),
        };
        (lines, target)
    };
    // A cluster node's front planning a cart's lines to hold them.
    let indexed = gathered.is_some()
        && req
            .headers
            .contains_key(crate::cluster::front::PLAN_INDEXED_HEADER);
    // On a cluster node a location's daily capacity counts every shard's
    // orders (`OrderStock::capacity_counts`; `None` on one node).
    let counts = state.stock.capacity_counts(state).await?;
    let planned = match gathered {
        None => {
            state
                .engine
                .plan_counting(&lines, target, options, counts.as_deref())
                .await?
        }
        Some(g) => {
            let stock = stock_by_index(&state.engine.catalog(), g);
            state
                .engine
                .plan_with_counts(&lines, stock, target, options, counts.as_deref())
        }
    };
    match planned {
        Ok(p) => Ok(json_response(
            200,
            &plan_json(&state.engine.catalog(), &lines, &p, indexed),
        )),
        Err(refused) => Err(pickup_refused(refused)),
    }
}

/// Stock `gathered` by id, as an engine's planner reads it: by the
/// indices of `c` (what it does not know left out), each SKU's locations
/// in index order.
pub fn stock_by_index(c: &Catalog, gathered: Gathered) -> Vec<(SkuIdx, Vec<LineStock>)> {
    gathered
        .into_iter()
        .filter_map(|(sku, at)| {
            let mut v: Vec<LineStock> = at
                .into_iter()
                .filter_map(|(loc, available, rotation)| {
                    Some(LineStock {
                        location: c.location_idx(&loc)?,
                        available,
                        rotation,
                    })
                })
                .collect();
            // The planner reads each list in location order.
            v.sort_by_key(|l| l.location);
            Some((c.sku_idx(&sku)?, v))
        })
        .collect()
}

/// `POST /v1/sourcing/stock` (between cluster nodes, `x-holdfast-shard`):
/// `{"skus":[...]}` → `{"stock":[{"sku","at":[[location, available,
/// rotation], ...]}]}`, what this shard's engine holds of them for a
/// planner on another node (`Gathered`). SKUs it does not know are left
/// out (the planning engine names them). 404 on a single node.
pub async fn stock(state: &Arc<AppState>, req: &Request) -> ApiResult {
    if !state.engine.in_cluster() {
        return Err(ApiError::new(
            Code::NotFound,
            "no such endpoint: /v1/sourcing/stock",
        ));
    }
    req.principal.require_channel()?;
    let m = parse_object(&req.body)?;
    let ids: Vec<&str> = match m.get("skus").and_then(Value::as_array) {
        Some(a) if a.len() <= CART_LINES_MAX => a.iter().filter_map(Value::as_str).collect(),
        _ => {
            return Err(ApiError::new(
                Code::ValidationFailed,
                format!("skus: an array of at most {CART_LINES_MAX} SKU ids"),
            ))
        }
    };
    let out: Vec<Value> = stock_of(state, &ids)
        .await?
        .into_iter()
        .map(|(sku, at)| {
            let at: Vec<Value> = at.iter().map(|(l, a, r)| json!([l, a, r])).collect();
            json!({"sku": sku, "at": at})
        })
        .collect();
    Ok(json_response(200, &json!({ "stock": out })))
}

/// `POST /v1/sourcing/capacity` (between cluster nodes,
/// `x-holdfast-shard`; admin): today's count of the orders this shard
/// keeps at each location, `{"counts": [[location, orders], ...]}`, for a
/// planner on another node that sums every shard's (a location's daily
/// capacity counts the orders of every shard). 404 on a single node.
pub fn capacity(state: &AppState, req: &Request) -> ApiResult {
    if !state.engine.in_cluster() {
        return Err(ApiError::new(
            Code::NotFound,
            "no such endpoint: /v1/sourcing/capacity",
        ));
    }
    req.principal.require_admin()?;
    let counts: Vec<Value> = state
        .engine
        .capacity_today()
        .iter()
        .map(|(l, n)| json!([l.as_str(), n]))
        .collect();
    Ok(json_response(200, &json!({ "counts": counts })))
}

/// What this shard's engine holds of the SKUs `ids` (those it knows), by
/// id: `stock`'s answer, or the part a cluster node's front reads from an
/// engine of its own.
pub async fn stock_of(state: &AppState, ids: &[&str]) -> Result<Gathered, ApiError> {
    let mut skus: Vec<SkuIdx> = {
        let c = state.engine.catalog();
        ids.iter().filter_map(|id| c.sku_idx(id)).collect()
    };
    skus.sort_unstable();
    skus.dedup();
    let stock = state.engine.plan_stock(&skus).await?;
    let c = state.engine.catalog();
    Ok(stock
        .iter()
        .filter_map(|(sku, at)| {
            let at = at
                .iter()
                .filter_map(|l| {
                    let loc = c.location(l.location)?.0.as_str().to_string();
                    Some((loc, l.available, l.rotation))
                })
                .collect();
            Some((c.sku(*sku)?.0.as_str().to_string(), at))
        })
        .collect())
}

/// A shard's answer of `stock` read back (`Gathered`'s part).
pub fn gathered_of(v: &Value) -> Gathered {
    v["stock"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let at = s["at"]
                        .as_array()?
                        .iter()
                        .filter_map(|x| {
                            Some((
                                x.get(0)?.as_str()?.to_string(),
                                x.get(1)?.as_i64()?,
                                x.get(2)?.as_f64()?,
                            ))
                        })
                        .collect();
                    Some((s["sku"].as_str()?.to_string(), at))
                })
                .collect()
        })
        .unwrap_or_default()
}
