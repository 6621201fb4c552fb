//! `/v1/reservations`: the checkout hot path.

use serde_json::{json, Value};
use std::sync::Arc;

use super::error::{json_text_response, ApiError, ApiResult, Code};
use super::idempotency::{idempotency_key, replay, Answer, Claim};
use super::input::{cart_lines, parse_object, path_id, Errors};
use super::inventory::{resolve, resolve_sku};
use super::sourcing::{parse_target, resolve_target, split_lines};
use super::{AppState, Request};
use crate::actors::CartLine;
use crate::clock::rfc3339;
use crate::domain::catalog::{LocIdx, SkuIdx};
use crate::domain::event::{fnv1a64, IdemKey};
use crate::domain::history::By;
use crate::domain::ids::ReservationId;
use crate::domain::model::Model;
use crate::domain::model::{IdemEntry, Shortage, TransitionRefused};
use crate::domain::reservation::{Line, Reservation, Status, Transition};
use crate::domain::sourcing::{PlanOptions, Target};
use crate::domain::TimeMs;
use crate::limits::{QTY_MAX, TTL_S_DEFAULT, TTL_S_MAX, TTL_S_MIN};
use crate::orders::stock::{not_released, unsourced_error, Replans};

/// A reservation as JSON, serialized straight from borrowed fields (no
/// `Value` tree: building one showed in the profile of the hot path).
#[derive(serde::Serialize)]
struct ReservationOut<'a> {
    id: &'a str,
    status: &'static str,
    /// Null once the reservation no longer expires (not held, not expired).
    expires_at: Option<String>,
    created_at: String,
    lines: Vec<LineOut<'a>>,
}

#[derive(serde::Serialize)]
struct LineOut<'a> {
    sku: &'a str,
    qty: u32,
    location: &'a str,
    requested: u32,
    /// Of `qty`, the units sold against incoming supply and not arrived
    /// (absent when none), and when the supply was expected as they
    /// were held.
    #[serde(skip_serializing_if = "Option::is_none")]
    backordered: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta: Option<String>,
}

fn reservation_body(
    id: &str,
    status: Status,
    expires_at_ms: TimeMs,
    created_ms: TimeMs,
    lines: &[Line],
) -> String {
    let out = ReservationOut {
        id,
        status: status.as_str(),
        expires_at: matches!(status, Status::Held | Status::Expired)
            .then(|| rfc3339(expires_at_ms)),
        created_at: rfc3339(created_ms),
        lines: lines
            .iter()
            .map(|l| LineOut {
                sku: l.sku.as_str(),
                qty: l.qty,
                location: l.location.as_str(),
                requested: l.requested,
                backordered: (l.backordered > 0).then_some(l.backordered),
                eta: (l.backordered > 0 && l.eta_ms > 0).then(|| rfc3339(l.eta_ms)),
            })
            .collect(),
    };
    serde_json::to_string(&out).unwrap_or_default()
}

pub fn reservation_json(r: &Reservation) -> String {
    reservation_body(
        r.id.as_str(),
        r.status,
        r.expires_at_ms,
        r.created_ms,
        &r.lines,
    )
}

/// The first answer of a key, rebuilt from the durable record at recovery:
/// the same bytes as the 201 that was sent.
pub fn idempotent_answer(e: &IdemEntry) -> Answer {
    Answer {
        body_hash: e.body_hash,
        status: 201,
        body: reservation_body(
            e.reservation.as_str(),
            Status::Held,
            e.expires_at_ms,
            e.created_ms,
            &e.lines,
        ),
    }
}

pub async fn create(state: &Arc<AppState>, req: &Request) -> ApiResult {
    req.principal.require_channel()?;
    let key = idempotency_key(req)?;
    let Some(key) = key else {
        return serve_create(state, req, None).await.map(|(r, _)| r);
    };
    // Only a keyed request needs its body's hash.
    let body_hash = fnv1a64(&req.body);
    let tx = match state.idem.claim(&key).await {
        Claim::Answered(a) => return replay(&a, body_hash),
        Claim::Mine(tx) => tx,
    };
    let idem = IdemKey {
        scope: key.0,
        key: key.1.clone(),
        body_hash,
    };
    // In its own task: a client that hangs up must not leave the key
    // without the answer of a hold that was made (its retry would hold again).
    let (st, owned) = (state.clone(), req.clone());
    let served = tokio::spawn(async move { serve_create(&st, &owned, Some(idem)).await })
        .await
        .unwrap_or_else(|_| {
            Err(
                ApiError::new(Code::Unavailable, "the request failed inside the server")
                    .retry_after(1),
            )
        });
    match served {
        Ok((resp, Some(answer))) => {
            state.idem.finish(key, tx, answer);
            Ok(resp)
        }
        Ok((resp, None)) => {
            state.idem.abandon(&key, tx);
            Ok(resp)
        }
        Err(e) if e.code == Code::InsufficientStock => {
            let answer = Answer {
                body_hash,
                status: e.status(),
                body: e.body().to_string(),
            };
            state.idem.finish(key, tx, answer);
            Err(e)
        }
        Err(e) => {
            state.idem.abandon(&key, tx);
            Err(e)
        }
    }
}

/// A reservation's lines as asked: (line index, sku, location or None to
/// source it, qty). Errors in `e`.
fn wanted_lines(
    e: &mut Errors,
    m: &serde_json::Map<String, Value>,
    sourcing_asked: bool,
) -> Vec<(usize, String, Option<String>, u32, bool)> {
    let mut wanted = Vec::new();
    for (i, path, o) in cart_lines(e, m, "{sku, qty, location}") {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 1, QTY_MAX, true);
        let backorder = e.boolean(o, "allow_backorder", &path).unwrap_or(false);
        let absent = matches!(o.get("location"), None | Some(Value::Null));
        let loc = e.id(o, "location", &path, false);
        if absent && !sourcing_asked {
            e.add(
                format!("{path}.location"),
                "is required (or give a destination or pickup_location to have it sourced)",
            );
        }
        let (Some(sku), Some(qty)) = (sku, qty) else {
            continue;
        };
        if loc.is_some() || absent {
            wanted.push((i, sku, loc, qty as u32, backorder));
        }
    }
    wanted
}

async fn serve_create(
    state: &AppState,
    req: &Request,
    idem: Option<IdemKey>,
) -> Result<(warp::http::Response<warp::hyper::Body>, Option<Answer>), ApiError> {
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let ttl_s = e
        .int(&m, "ttl_s", "", TTL_S_MIN as i64, TTL_S_MAX as i64, false)
        .map(|t| t as u64)
        .unwrap_or(TTL_S_DEFAULT);
    let partial = e.boolean(&m, "allow_partial", "").unwrap_or(false);
    // A null member is an absent one (`input::Errors`).
    let given = |k: &str| !matches!(m.get(k), None | Some(Value::Null));
    let sourcing_asked = given("destination") || given("pickup_location");
    let target = if sourcing_asked {
        parse_target(&mut e, &m, false)
    } else {
        None
    };
    let split = split_lines(&mut e, &m);
    let wanted = wanted_lines(&mut e, &m, sourcing_asked);
    e.into_result()?;
    let mut e = Errors::default();
    let (lines, target) = {
        let c = state.engine.catalog();
        let mut lines: Vec<(SkuIdx, Option<LocIdx>, u32, bool)> = Vec::with_capacity(wanted.len());
        let mut per_sku: ahash::AHashMap<u32, u64> = ahash::AHashMap::new();
        for (i, sku, loc, qty, backorder) in &wanted {
            let field = format!("lines[{i}].");
            let (s, l) = match loc {
                Some(loc) => {
                    let (s, l) = resolve(&c, sku, loc, &field)?;
                    (s, Some(l))
                }
                None => (resolve_sku(&c, sku, &field)?, None),
            };
            *per_sku.entry(s).or_default() += u64::from(*qty);
            if let Some(max) = c.sku(s).and_then(|x| x.1.max_qty_per_reservation) {
                if per_sku[&s] > u64::from(max) {
                    e.add(
                        format!("lines[{i}].qty"),
                        format!("at most {max} of SKU {sku} may be reserved at once"),
                    );
                }
            }
            lines.push((s, l, *qty, *backorder));
        }
        let target = target.map(|t| resolve_target(&c, t)).transpose()?;
        (lines, target)
    };
    e.into_result()?;
    let keyed = idem.as_ref().map(|k| k.body_hash);
    let held = match target {
        Some(target) if lines.iter().any(|l| l.1.is_none()) => {
            let options = PlanOptions {
                explain: false,
                split_lines: split,
            };
            let by = Some(req.principal.by());
            reserve_sourced(state, &lines, target, options, partial, ttl_s, (idem, by)).await?
        }
        _ => {
            let cart: Vec<CartLine> = lines
                .iter()
                .filter_map(|&(sku, l, qty, backorder)| {
                    l.map(|location| CartLine {
                        sku,
                        location,
                        qty,
                        backorder,
                    })
                })
                .collect();
            state
                .engine
                .reserve_as(&cart, partial, ttl_s, idem, Some(req.principal.by()))
                .await?
                .map_err(|short| shortage_error(&short))?
        }
    };
    let body = reservation_json(&held);
    let answer = keyed.map(|body_hash| Answer {
        body_hash,
        status: 201,
        body: body.clone(),
    });
    let mut resp = json_text_response(201, body);
    if let Ok(loc) = format!("/v1/reservations/{}", held.id).parse() {
        resp.headers_mut().insert(warp::http::header::LOCATION, loc);
    }
    Ok((resp, answer))
}

/// Sources the lines without a location, then holds the whole cart (a
/// split line as one reservation line per part: same SKU, each part's
/// location); if the stock moved between the plan and the hold (a sourced
/// line came up short), plans again, at most `SOURCING_REPLANS_MAX`
/// times. Each attempt is one all-or-nothing hold: a failed one held
/// nothing.
async fn reserve_sourced(
    state: &AppState,
    lines: &[(SkuIdx, Option<LocIdx>, u32, bool)],
    target: Target,
    options: PlanOptions,
    partial: bool,
    ttl_s: u64,
    (idem, by): (Option<IdemKey>, Option<By>),
) -> Result<Reservation, ApiError> {
    let to_source: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].1.is_none()).collect();
    let asked: Vec<(SkuIdx, u32)> = to_source
        .iter()
        .map(|&i| (lines[i].0, lines[i].2))
        .collect();
    let ahead: Vec<bool> = to_source.iter().map(|&i| lines[i].3).collect();
    let mut replans = Replans::default();
    loop {
        let plan = replans
            .plan(&state.engine, &asked, &ahead, target, options)
            .await?;
        if !plan.unsourced.is_empty() && !partial {
            return Err(unsourced_error(
                &state.engine.catalog(),
                &asked,
                &plan.unsourced,
                "the eligible locations cannot serve every line",
            ));
        }
        // Each sourced line's parts: (location, qty); one unless split.
        let mut chosen: Vec<Vec<(LocIdx, u32)>> = vec![Vec::new(); lines.len()];
        for sh in &plan.shipments {
            for &(k, q) in &sh.lines {
                chosen[to_source[k]].push((sh.location, q));
            }
        }
        let cart = cart_of(lines, &chosen);
        if cart.is_empty() {
            return Err(ApiError::new(
                Code::InsufficientStock,
                "no eligible location can serve any line",
            )
            .with("lines", json!([])));
        }
        match state
            .engine
            .reserve_as(&cart, partial, ttl_s, idem.clone(), by.clone())
            .await?
        {
            Ok(r) => return Ok(r),
            // Short on a line the planner chose: the stock moved since the
            // plan. Short only on a line the client fixed: planning again
            // cannot help.
            Err(short) if planned_short(state, lines, &to_source, &chosen, &short) => {
                replans.moved(shortage_error(&short))?
            }
            Err(short) => return Err(shortage_error(&short)),
        }
    }
}

/// The cart to hold: each line at its fixed location, or in the parts
/// the plan chose for it (`chosen`).
fn cart_of(
    lines: &[(SkuIdx, Option<LocIdx>, u32, bool)],
    chosen: &[Vec<(LocIdx, u32)>],
) -> Vec<CartLine> {
    let mut cart: Vec<CartLine> = Vec::with_capacity(lines.len());
    for (&(sku, fixed, qty, backorder), planned) in lines.iter().zip(chosen) {
        let line = |location, qty| CartLine {
            sku,
            location,
            qty,
            backorder,
        };
        match fixed {
            Some(location) => cart.push(line(location, qty)),
            None => cart.extend(planned.iter().map(|&(location, qty)| line(location, qty))),
        }
    }
    cart
}

/// Whether a line the planner chose (not one the client fixed) came up
/// short.
fn planned_short(
    state: &AppState,
    lines: &[(SkuIdx, Option<LocIdx>, u32, bool)],
    to_source: &[usize],
    chosen: &[Vec<(LocIdx, u32)>],
    short: &[Shortage],
) -> bool {
    let c = state.engine.catalog();
    short.iter().any(|s| {
        let (sku, loc) = (
            c.sku_idx(s.sku.as_str()),
            c.location_idx(s.location.as_str()),
        );
        to_source
            .iter()
            .any(|&i| Some(lines[i].0) == sku && chosen[i].iter().any(|p| Some(p.0) == loc))
    })
}

fn shortage_error(short: &[Shortage]) -> ApiError {
    let lines: Vec<Value> = short
        .iter()
        .map(|s| {
            json!({"sku": s.sku.as_str(), "location": s.location.as_str(), "requested": s.requested, "available": s.available})
        })
        .collect();
    let detail = match short.first() {
        Some(s) => format!(
            "{} of SKU {} wanted at {}, {} available",
            s.requested, s.sku, s.location, s.available
        ),
        None => "nothing could be held".into(),
    };
    ApiError::new(Code::InsufficientStock, detail).with("lines", json!(lines))
}

fn parse_reservation_id(id: &str) -> Result<ReservationId, ApiError> {
    let id = path_id(id, "id")?;
    ReservationId::parse(&id).map_err(|_| ApiError::new(Code::ValidationFailed, "id"))
}

/// `GET /v1/reservations/{id}` answered from a copy of the state (a
/// cluster follower's): `None` when the copy does not hold it (the leader
/// answers then).
pub fn get_from(model: &Model, req: &Request, id: &str) -> Option<ApiResult> {
    let found = (|| {
        req.principal.require_channel()?;
        let rid = parse_reservation_id(id)?;
        Ok(model.reservations.get(&rid).map(reservation_json))
    })();
    match found {
        Ok(Some(body)) => Some(Ok(json_text_response(200, body))),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

pub async fn get(state: &AppState, req: &Request, id: &str) -> ApiResult {
    req.principal.require_channel()?;
    let rid = parse_reservation_id(id)?;
    match state.engine.reservation(rid).await? {
        Some(r) => Ok(json_text_response(200, reservation_json(&r))),
        None => Err(ApiError::new(
            Code::NotFound,
            format!("no reservation {id}"),
        )),
    }
}

pub async fn transition(state: &AppState, req: &Request, id: &str, action: &str) -> ApiResult {
    let t = match action {
        "confirm" => Transition::Confirm,
        "release" => Transition::Release,
        "fulfil" => Transition::Fulfil,
        "extend" => {
            req.principal.require_channel()?;
            let m = parse_object(&req.body)?;
            let mut e = Errors::default();
            let ttl = e.int(&m, "ttl_s", "", TTL_S_MIN as i64, TTL_S_MAX as i64, true);
            e.into_result()?;
            Transition::Extend {
                ttl_s: ttl.unwrap_or(TTL_S_DEFAULT as i64) as u64,
            }
        }
        _ => {
            return Err(ApiError::new(
                Code::NotFound,
                format!("no action {action} on reservations"),
            ))
        }
    };
    req.principal.require_channel()?;
    let rid = parse_reservation_id(id)?;
    match state
        .engine
        .transition_as(rid, t, Some(req.principal.by()))
        .await?
    {
        Ok(r) => Ok(json_text_response(200, reservation_json(&r))),
        Err(TransitionRefused::NotFound) => Err(ApiError::new(
            Code::NotFound,
            format!("no reservation {id}"),
        )),
        Err(TransitionRefused::Backordered(units)) => Err(ApiError::new(
            Code::Backordered,
            format!(
                "reservation {id} has {units} units sold against supply not arrived yet: \
                 it cannot be fulfilled before they are received"
            ),
        )
        .with("backordered", json!(units))),
        Err(TransitionRefused::NotReleased(sku, at)) => {
            Err(not_released(&format!("reservation {id}"), &sku, at))
        }
        Err(TransitionRefused::NotHeld(s)) => Err(ApiError::new(
            Code::ReservationNotHeld,
            format!(
                "reservation {id} is {}: it cannot be {}",
                s.as_str(),
                match action {
                    "fulfil" => "fulfilled",
                    "extend" => "extended",
                    "release" => "released",
                    _ => "confirmed",
                }
            ),
        )
        .with("reservation_status", json!(s.as_str()))),
    }
}
