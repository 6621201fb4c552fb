//! `POST /v1/sourcing/plan`: which location would serve which line. A plan
//! holds nothing (api.md, Sourcing).

use serde_json::{json, Value};
use std::sync::Arc;

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{cart_lines, parse_object, Errors};
use super::inventory::resolve_sku;
use super::{AppState, Request};
use crate::clock::rfc3339;
use crate::domain::catalog::{Catalog, SkuIdx};
use crate::domain::sourcing::{Method, Plan, PlanOptions, Target};
use crate::limits::QTY_MAX;

/// Kilometres to the metre: enough for people, stable for tests.
fn km(d: f64) -> f64 {
    (d * 1000.0).round() / 1000.0
}

/// Lines of a plan, (index in the request, quantity) each: a split line's
/// part has a share of its quantity.
fn lines_json(
    c: &Catalog,
    lines: &[(SkuIdx, u32)],
    idx: impl Iterator<Item = (usize, u32)>,
) -> Vec<Value> {
    idx.map(|(i, qty)| {
        let sku = lines[i].0;
        let id = c.sku(sku).map(|s| s.0.as_str()).unwrap_or_default();
        json!({"sku": id, "qty": qty})
    })
    .collect()
}

fn plan_json(c: &Catalog, lines: &[(SkuIdx, u32)], p: &Plan) -> Value {
    let name = |l| c.location(l).map(|x| x.0.as_str()).unwrap_or_default();
    let shipments: Vec<Value> = p
        .shipments
        .iter()
        .map(|s| {
            let mut lines = lines_json(c, lines, s.lines.iter().copied());
            for (l, &b) in lines.iter_mut().zip(&s.backordered) {
                if b > 0 {
                    l["backordered"] = json!(b);
                }
            }
            let mut out = json!({
                "location": name(s.location),
                "lines": lines,
                "distance_km": km(s.distance_km),
                "transfer": s.transfer,
            });
            if let Some(eta) = s.eta {
                out["eta"] = json!(rfc3339(eta));
            }
            out
        })
        .collect();
    let mut out = json!({
        "shipments": shipments,
        "unsourced": lines_json(c, lines, p.unsourced.iter().map(|&i| (i, lines[i].1))),
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
                    "lines": lines_json(c, lines, k.lines.iter().map(|&i| (i, lines[i].1))),
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

/// A request's `split_lines` (plans, sourced reservations, orders): a
/// boolean, or absent (`[sourcing] split_lines` then says); anything
/// else is an error on `split_lines`.
pub fn split_lines(e: &mut Errors, m: &serde_json::Map<String, Value>) -> Option<bool> {
    e.boolean(m, "split_lines", "")
}

pub async fn plan(state: &Arc<AppState>, req: &Request) -> ApiResult {
    req.principal.require_channel()?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let options = PlanOptions {
        explain: e.boolean(&m, "explain", "").unwrap_or(false),
        split_lines: split_lines(&mut e, &m),
    };
    let mut wanted: Vec<(usize, String, u32)> = Vec::new();
    let mut ahead: Vec<bool> = Vec::new();
    for (i, path, o) in cart_lines(&mut e, &m, "{sku, qty}") {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 1, QTY_MAX, true);
        let backorder = e.boolean(o, "allow_backorder", &path).unwrap_or(false);
        if let (Some(sku), Some(qty)) = (sku, qty) {
            wanted.push((i, sku, qty as u32));
            ahead.push(backorder);
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
    let planned = state.engine.plan(&lines, &ahead, target, options).await?;
    match planned {
        Ok(p) => Ok(json_response(
            200,
            &plan_json(&state.engine.catalog(), &lines, &p),
        )),
        Err(refused) => Err(crate::orders::stock::pickup_refused(refused)),
    }
}
