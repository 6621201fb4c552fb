//! `/v1/transfers...`: transfers of stock between two locations.
//!
//! Who may: an admin token anything; a store token requests, reads and
//! cancels the transfers leaving or reaching its own location, ships
//! those leaving it and receives those reaching it; a channel token
//! (checkout) none. The id is the transfer's idempotency key: a request
//! repeated alike answers the transfer as it is (200), another under the
//! id is 409 `transfer_exists`; a step taken already answers the
//! transfer too (a client's retry).

use serde_json::{json, Value};

use super::auth::forbidden;
use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{join, objects, page_limit, parse_object, path_id, query_param, Errors};
use super::inventory::resolve_sku;
use super::{AppState, Request};
use crate::clock::rfc3339;
use crate::config::Role;
use crate::domain::ids::{LocationId, SkuId};
use crate::domain::model::{Model, TransferRefused};
use crate::domain::transfer::{
    RequestRefused, StepRefused, Transfer, TransferFilter, TransferInvalid, TransferStatus,
    TransferStep,
};
use crate::limits::{STOCK_MAX, TRANSFER_LINES_MAX, TRANSFER_PAGE_DEFAULT, TRANSFER_PAGE_MAX};
use crate::problem::FieldError;

/// A transfer as the API shows it: each line's `received` and
/// `discrepancy` (sent less arrived) null until it is received.
pub fn transfer_json(t: &Transfer) -> Value {
    let lines: Vec<Value> = t
        .lines
        .iter()
        .map(|l| {
            json!({"sku": l.sku.as_str(), "qty": l.qty, "received": l.received,
                "discrepancy": l.discrepancy()})
        })
        .collect();
    let discrepancy: Option<i64> = (t.status == TransferStatus::Received)
        .then(|| t.lines.iter().filter_map(|l| l.discrepancy()).sum());
    json!({
        "id": t.id,
        "from": t.from.as_str(),
        "to": t.to.as_str(),
        "status": t.status.as_str(),
        "lines": lines,
        "discrepancy": discrepancy,
        "created_at": rfc3339(t.created_ms),
        "updated_at": rfc3339(t.updated_ms),
        "shipped_at": t.shipped_ms.map(rfc3339),
        "received_at": t.received_ms.map(rfc3339),
    })
}

/// Transfers are the stores' and the back office's: not a channel's.
fn not_channel(req: &Request) -> Result<(), ApiError> {
    match req.principal.role {
        Role::Channel => Err(forbidden("a channel token cannot see or move transfers")),
        _ => Ok(()),
    }
}

/// Admin, or a store the transfer leaves or reaches.
fn may_see(req: &Request, t: &Transfer) -> Result<(), ApiError> {
    match &req.principal.role {
        Role::Store(own) if !t.touches(own.as_str()) => Err(forbidden(
            "a store token may only see transfers leaving or reaching its own location",
        )),
        Role::Channel => not_channel(req),
        _ => Ok(()),
    }
}

fn no_transfer(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no transfer {id}"))
}

/// `POST /v1/transfers` `{"id","from","to","lines":[{"sku","qty"}]}`:
/// 201 `requested`.
pub async fn create(state: &AppState, req: &Request) -> ApiResult {
    not_channel(req)?;
    let m = parse_object(&req.body)?;
    // Authorization before validation: a store names its own location.
    if let Role::Store(own) = &req.principal.role {
        let names = |k: &str| m.get(k).and_then(Value::as_str) == Some(own.as_str());
        if !names("from") && !names("to") {
            return Err(forbidden(
                "a store token may only request transfers leaving or reaching its own location",
            ));
        }
    }
    let mut e = Errors::default();
    let id = e.id(&m, "id", "", true);
    let from = e.id(&m, "from", "", true);
    let to = e.id(&m, "to", "", true);
    if from.is_some() && from == to {
        e.add("to", "must differ from from");
    }
    let shape = "{\"sku\",\"qty\"}";
    let mut lines: Vec<(String, u32)> = Vec::new();
    for (_, path, o) in objects(&mut e, &m, "lines", "line", TRANSFER_LINES_MAX, shape) {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 1, STOCK_MAX, true);
        if let (Some(sku), Some(qty)) = (sku, qty) {
            if lines.iter().any(|(s, _)| *s == sku) {
                e.add(join(&path, "sku"), "names a SKU an earlier line names");
            }
            lines.push((sku, qty as u32));
        }
    }
    e.into_result()?;
    let (Some(id), Some(from), Some(to)) = (id, from, to) else {
        return Err(ApiError::new(Code::ValidationFailed, "incomplete transfer"));
    };
    let parsed = known(state, (&from, &to), &lines)?;
    let r = state
        .engine
        .request_transfer(id, parsed.0, parsed.1, Some(req.principal.by()))
        .await?;
    match r {
        Ok((t, created)) => {
            let mut resp = json_response(if created { 201 } else { 200 }, &transfer_json(&t));
            if let Ok(loc) = format!("/v1/transfers/{}", t.id).parse() {
                resp.headers_mut().insert(warp::http::header::LOCATION, loc);
            }
            Ok(resp)
        }
        Err(RequestRefused::Exists) => Err(ApiError::new(
            Code::TransferExists,
            "another transfer has this id (a request repeated with the same from, to and lines answers the transfer)",
        )),
        Err(RequestRefused::Full) => Err(ApiError::new(
            Code::Unavailable,
            "the transfer book is full: closed transfers are forgotten after 90 days",
        )
        .retry_after(60)),
        Err(RequestRefused::Invalid(why)) => Err(invalid(why)),
    }
}

/// The places and SKUs of a request, known to the catalog (422
/// `unknown_location` / `unknown_sku` naming the member otherwise).
#[allow(clippy::type_complexity)]
fn known(
    state: &AppState,
    (from, to): (&str, &str),
    lines: &[(String, u32)],
) -> Result<((LocationId, LocationId), Vec<(SkuId, u32)>), ApiError> {
    let c = state.engine.catalog();
    let place = |l: &str, field: &str| {
        c.location_idx(l)
            .and_then(|_| LocationId::parse(l).ok())
            .ok_or_else(|| {
                ApiError::new(Code::UnknownLocation, format!("unknown location {l}"))
                    .with("field", json!(field))
            })
    };
    let places = (place(from, "from")?, place(to, "to")?);
    let mut skus = Vec::with_capacity(lines.len());
    for (i, (sku, qty)) in lines.iter().enumerate() {
        resolve_sku(&c, sku, &format!("lines[{i}]."))?;
        let id = SkuId::parse(sku).map_err(|_| ApiError::new(Code::ValidationFailed, "sku"))?;
        skus.push((id, *qty));
    }
    Ok((places, skus))
}

fn invalid(why: TransferInvalid) -> ApiError {
    let (field, message) = match why {
        TransferInvalid::SameLocation => ("to".to_string(), "must differ from from".to_string()),
        TransferInvalid::NoLines => ("lines".into(), "must have at least one line".into()),
        TransferInvalid::TwiceNamed(s) => ("lines".into(), format!("name SKU {s} twice")),
        TransferInvalid::ZeroQty(s) => ("lines".into(), format!("SKU {s}: qty must be at least 1")),
    };
    ApiError::validation(vec![FieldError { field, message }])
}

/// `GET /v1/transfers/{id}`.
pub async fn get(state: &AppState, req: &Request, id: &str) -> ApiResult {
    not_channel(req)?;
    let id = path_id(id, "id")?;
    let t = state.engine.transfer(&id).await?;
    answer(req, &id, t.as_ref())
}

fn answer(req: &Request, id: &str, t: Option<&Transfer>) -> ApiResult {
    let t = t.ok_or_else(|| no_transfer(id))?;
    may_see(req, t)?;
    Ok(json_response(200, &transfer_json(t)))
}

/// `GET /v1/transfers/{id}` and `GET /v1/transfers` from a copy of the
/// state (a cluster follower's): `None` when the copy does not hold the
/// transfer (the leader answers then).
pub fn get_from(model: &Model, req: &Request, id: Option<&str>) -> Option<ApiResult> {
    let Some(id) = id else {
        return Some(list_query(req).and_then(|(filter, after, limit)| {
            let (page, next) = model.transfers.page(&filter, after.as_deref(), limit);
            list_json(&page, next)
        }));
    };
    let found = (|| {
        not_channel(req)?;
        path_id(id, "id")
    })();
    match found {
        Err(e) => Some(Err(e)),
        Ok(id) => {
            let t = model.transfers.get(&id)?;
            Some(answer(req, &id, Some(t)))
        }
    }
}

/// `GET /v1/transfers?location=&status=&limit=&cursor=`: in id order, a
/// page at a time; a store token sees its own location's (`location`
/// defaults to it).
pub async fn list(state: &AppState, req: &Request) -> ApiResult {
    let (filter, after, limit) = list_query(req)?;
    let (page, next) = state
        .engine
        .transfers(&filter, after.as_deref(), limit)
        .await?;
    list_json(&page.iter().collect::<Vec<_>>(), next)
}

fn list_json(page: &[&Transfer], next: Option<String>) -> ApiResult {
    let transfers: Vec<Value> = page.iter().map(|t| transfer_json(t)).collect();
    Ok(json_response(
        200,
        &json!({"transfers": transfers, "next_cursor": next}),
    ))
}

/// A listing's filter, its cursor (the last id of the page before) and
/// its limit; the token's location first.
fn list_query(req: &Request) -> Result<(TransferFilter, Option<String>, usize), ApiError> {
    not_channel(req)?;
    let q = req.query.as_deref().unwrap_or("");
    let location = query_param(q, "location").map(|l| l.into_owned());
    let location = match &req.principal.role {
        Role::Store(own) => {
            if location.as_deref().is_some_and(|l| l != own.as_str()) {
                return Err(forbidden(
                    "a store token may only list its own location's transfers",
                ));
            }
            Some(own.as_str().to_string())
        }
        _ => location,
    };
    let mut e = Errors::default();
    if let Some(l) = &location {
        if let Err(err) = path_id(l, "location") {
            e.0.extend(err.errors);
        }
    }
    let status = query_param(q, "status").and_then(|s| {
        let got = status_named(&s);
        if got.is_none() {
            e.add(
                "status",
                "must be one of requested, shipped, received, cancelled",
            );
        }
        got
    });
    let limit = page_limit(&mut e, q, TRANSFER_PAGE_DEFAULT, TRANSFER_PAGE_MAX);
    let after = query_param(q, "cursor").map(|c| c.into_owned());
    if let Some(c) = &after {
        if let Err(err) = path_id(c, "cursor") {
            e.0.extend(err.errors);
        }
    }
    e.into_result()?;
    Ok((TransferFilter { location, status }, after, limit))
}

fn status_named(s: &str) -> Option<TransferStatus> {
    use TransferStatus::*;
    [Requested, Shipped, Received, Cancelled]
        .into_iter()
        .find(|t| t.as_str() == s)
}

/// `POST /v1/transfers/{id}/ship|receive|cancel`.
pub async fn step(state: &AppState, req: &Request, id: &str, action: &str) -> ApiResult {
    not_channel(req)?;
    let id = path_id(id, "id")?;
    let t = state
        .engine
        .transfer(&id)
        .await?
        .ok_or_else(|| no_transfer(&id))?;
    // Authorization before validation.
    match action {
        "ship" => req.principal.require_location(t.from.as_str())?,
        "receive" => req.principal.require_location(t.to.as_str())?,
        _ => may_see(req, &t)?,
    }
    let step = match action {
        "ship" => TransferStep::Ship,
        "receive" => TransferStep::Receive(arrived(req, &t)?),
        _ => TransferStep::Cancel,
    };
    let r = state
        .engine
        .transfer_step(id.clone(), step, Some(req.principal.by()))
        .await?;
    match r {
        Ok(t) => Ok(json_response(200, &transfer_json(&t))),
        Err(TransferRefused::NotFound) => Err(no_transfer(&id)),
        Err(TransferRefused::Step(StepRefused::NotNow(status))) => Err(ApiError::new(
            Code::InvalidTransition,
            format!(
                "transfer {id} is {}: it cannot be {}",
                status.as_str(),
                match action {
                    "ship" => "shipped",
                    "receive" => "received (again, otherwise)",
                    _ => "cancelled",
                }
            ),
        )
        .with("transfer_status", json!(status.as_str()))),
        Err(TransferRefused::Step(StepRefused::UnknownSku(s) | StepRefused::TwiceNamed(s))) => {
            Err(ApiError::validation(vec![FieldError {
                field: "lines".into(),
                message: format!("SKU {s}: not a line of this transfer, or named twice"),
            }]))
        }
        Err(TransferRefused::Short(short)) => {
            let lines: Vec<Value> = short
                .iter()
                .map(|(sku, free)| {
                    let qty = t.lines.iter().find(|l| &l.sku == sku).map_or(0, |l| l.qty);
                    json!({"sku": sku.as_str(), "location": t.from.as_str(), "requested": qty, "available": free})
                })
                .collect();
            let detail = match short.first() {
                Some((sku, free)) => format!(
                    "SKU {sku}: {free} units free at {} (neither reserved nor unsellable); nothing was shipped",
                    t.from
                ),
                None => "nothing was shipped".into(),
            };
            Err(ApiError::new(Code::InsufficientStock, detail).with("lines", json!(lines)))
        }
    }
}

/// A receipt's `{"lines":[{"sku","qty"}]}`: what arrived of each SKU of
/// the transfer (0 to `STOCK_MAX`; a SKU not named arrived not at all).
fn arrived(req: &Request, t: &Transfer) -> Result<Vec<(SkuId, u32)>, ApiError> {
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let shape = "{\"sku\",\"qty\"}: what arrived of each SKU";
    let mut got: Vec<(SkuId, u32)> = Vec::new();
    for (_, path, o) in objects(&mut e, &m, "lines", "line", TRANSFER_LINES_MAX, shape) {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 0, STOCK_MAX, true);
        let (Some(sku), Some(qty)) = (sku, qty) else {
            continue;
        };
        match t.lines.iter().find(|l| l.sku.as_str() == sku) {
            None => e.add(join(&path, "sku"), "is not a SKU of this transfer"),
            Some(_) if got.iter().any(|(s, _)| s.as_str() == sku) => {
                e.add(join(&path, "sku"), "names a SKU an earlier line names")
            }
            Some(l) => got.push((l.sku.clone(), qty as u32)),
        }
    }
    e.into_result()?;
    Ok(got)
}
