//! `/v1/inventory/...` and `/v1/availability/{sku}`.

use serde_json::{json, Value};

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{objects, page_limit, parse_object, path_id, query_param, Errors};
use super::{AppState, Request};
use crate::actors::stock_shard::{CountItem, RecordView};
use crate::actors::{Adjustment, HistoryRead};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::config::Role;
use crate::domain::catalog::{Catalog, LocIdx, SkuIdx};
use crate::domain::history::Movement;
use crate::domain::ids::{LocationId, SkuId};
use crate::domain::model::Model;
use crate::domain::recent_moves::LateCountRefused;
use crate::domain::stock::{AdjustReason, Bucket, StockRecord};
use crate::domain::TimeMs;
use crate::limits::{
    ADJUST_NOTE_MAX, BATCH_ITEMS_MAX, COUNT_AHEAD_MS, COUNT_REACH_MS, HISTORY_PAGE_DEFAULT,
    HISTORY_PAGE_MAX, STOCK_MAX,
};
use crate::persistence::history::Place;
use crate::problem::FieldError;

/// A stock record as api.md shows it, with its rotation index (units sold
/// over the last 7 days per average unit on hand; 0 when it sold nothing).
pub fn record_json(sku: &str, location: &str, v: &RecordView) -> Value {
    let mut j = crate::feed::record_json(sku, location, &v.record);
    if let Some(o) = j.as_object_mut() {
        o.insert(
            "rotation".into(),
            json!((v.rotation * 10_000.0).round() / 10_000.0),
        );
    }
    j
}

/// Resolves a known SKU and location (422 `unknown_sku` / `unknown_location`).
/// A SKU id against the catalog: 422 `unknown_sku` naming `{field}sku`.
pub fn resolve_sku(c: &Catalog, sku: &str, field: &str) -> Result<SkuIdx, ApiError> {
    c.sku_idx(sku).ok_or_else(|| {
        ApiError::new(Code::UnknownSku, format!("unknown SKU {sku}"))
            .with("field", json!(format!("{field}sku")))
    })
}

pub fn resolve(
    c: &Catalog,
    sku: &str,
    location: &str,
    field: &str,
) -> Result<(SkuIdx, LocIdx), ApiError> {
    let s = resolve_sku(c, sku, field)?;
    let l = resolve_location(c, location, &format!("{field}location"))?;
    Ok((s, l))
}

/// A location id against the catalog: 422 `unknown_location` naming
/// `field`.
pub fn resolve_location(c: &Catalog, location: &str, field: &str) -> Result<LocIdx, ApiError> {
    c.location_idx(location).ok_or_else(|| {
        ApiError::new(
            Code::UnknownLocation,
            format!("unknown location {location}"),
        )
        .with("field", json!(field))
    })
}

fn ids(sku: &str, location: &str) -> Result<(SkuId, LocationId), ApiError> {
    let bad = |_| ApiError::new(Code::ValidationFailed, "identifier");
    Ok((
        SkuId::parse(sku).map_err(bad)?,
        LocationId::parse(location).map_err(bad)?,
    ))
}

pub async fn put(state: &AppState, req: &Request, loc: &str, sku: &str) -> ApiResult {
    // Authorization before validation: a malformed location is not a
    // store token's own.
    req.principal.require_location(loc)?;
    let loc = path_id(loc, "location")?;
    let sku = path_id(sku, "sku")?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let on_hand = e.int(&m, "on_hand", "", 0, STOCK_MAX, true);
    let safety_stock = e.int(&m, "safety_stock", "", 0, STOCK_MAX, false);
    let window = count_window(state.engine.clock().now_ms());
    let counted_at = e.time(&m, "counted_at", "", window, false);
    e.into_result()?;
    let (s, l) = resolve(&state.engine.catalog(), &sku, &loc, "")?;
    let (sku_id, loc_id) = ids(&sku, &loc)?;
    let recs = state
        .engine
        .count(
            vec![CountItem {
                sku_idx: s,
                loc_idx: l,
                sku: sku_id,
                location: loc_id,
                on_hand: on_hand.unwrap_or_default(),
                safety_stock,
                counted_at,
            }],
            Some(req.principal.by()),
        )
        .await?;
    match recs.into_iter().next() {
        Some(Err(refused)) => Err(count_refused(refused, "")),
        r => {
            let r = r.and_then(Result::ok).unwrap_or_default();
            Ok(json_response(200, &record_json(&sku, &loc, &r)))
        }
    }
}

/// The times a count may say it was taken at `now`: back as far as the
/// movements are kept, ahead as far as a device's clock may run fast.
fn count_window(now: TimeMs) -> (TimeMs, TimeMs) {
    (now - COUNT_REACH_MS, now + COUNT_AHEAD_MS)
}

/// A count as of a time that cannot be placed: 409 `stale_count` (the
/// record was counted after it), or 422 on `{field}counted_at` (it
/// reaches back before the movements the record kept).
fn count_refused(refused: LateCountRefused, field: &str) -> ApiError {
    match refused {
        LateCountRefused::Stale { last } => ApiError::new(
            Code::StaleCount,
            format!(
                "the record was counted at {}, after this count was taken",
                rfc3339(last)
            ),
        )
        .with("last_counted_at", json!(rfc3339(last))),
        LateCountRefused::TooOld { from } => ApiError::validation(vec![FieldError {
            field: format!("{field}counted_at"),
            message: format!(
                "reaches back before {}: the record's movements are kept from then on",
                rfc3339(from)
            ),
        }]),
    }
}

/// The adjustment reasons, as a field of `Errors::one_of` reads them.
const REASONS: (fn(&str) -> Option<AdjustReason>, &str) = (
    AdjustReason::parse,
    "receipt, sale, return, damage, theft, correction",
);

/// The buckets of unsellable stock, as `Errors::one_of` reads them.
const BUCKETS: (fn(&str) -> Option<Bucket>, &str) = (
    Bucket::parse,
    "damaged, quarantine, display, expired, recalled, other",
);

/// `POST /v1/inventory/{loc}/{sku}/adjustments` `{"delta","reason","note"?,
/// "bucket"?}`: on_hand moves by `delta`; with a `bucket`, its unsellable
/// units move alike (a write-off of damaged units, a receipt straight
/// into quarantine) and what is available does not.
pub async fn adjust(state: &AppState, req: &Request, loc: &str, sku: &str) -> ApiResult {
    adjust_record(state, req, loc, sku, |m, e| {
        let delta = e.int(m, "delta", "", -STOCK_MAX, STOCK_MAX, true);
        if delta == Some(0) {
            e.add("delta", "must not be 0");
        }
        let bucket = e.one_of(m, "bucket", "", BUCKETS, false);
        delta.map(|d| (d, bucket.map(|b| (b, d))))
    })
    .await
}

/// `POST /v1/inventory/{loc}/{sku}/unsellable` `{"bucket","delta",
/// "reason","note"?}`: sets `delta` units apart from sale into the bucket
/// (negative: back to sale); on_hand does not move.
pub async fn unsellable(state: &AppState, req: &Request, loc: &str, sku: &str) -> ApiResult {
    adjust_record(state, req, loc, sku, |m, e| {
        let bucket = e.one_of(m, "bucket", "", BUCKETS, true);
        let delta = e.int(m, "delta", "", -STOCK_MAX, STOCK_MAX, true);
        if delta == Some(0) {
            e.add("delta", "must not be 0");
        }
        Some((0, Some((bucket?, delta?))))
    })
    .await
}

/// What an adjustment's body asks of on_hand and of a bucket.
type Asked = Option<(i64, Option<(Bucket, i64)>)>;

/// An adjustment of a record: the token's location, then the body
/// (`asked` reads its figures; the reason and note are common), then
/// applied once per Idempotency-Key (of this token): a repeat answers the
/// record as it is now.
async fn adjust_record(
    state: &AppState,
    req: &Request,
    loc: &str,
    sku: &str,
    asked: impl FnOnce(&serde_json::Map<String, Value>, &mut Errors) -> Asked,
) -> ApiResult {
    // Authorization before validation: a malformed location is not a
    // store token's own.
    req.principal.require_location(loc)?;
    let loc = path_id(loc, "location")?;
    let sku = path_id(sku, "sku")?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let figures = asked(&m, &mut e);
    let reason = e.one_of(&m, "reason", "", REASONS, true);
    let note = e.string(&m, "note", "", ADJUST_NOTE_MAX, false);
    e.into_result()?;
    let (Some((delta, unsellable)), Some(reason)) = (figures, reason) else {
        return Err(ApiError::new(
            Code::ValidationFailed,
            "incomplete adjustment",
        ));
    };
    let key =
        super::idempotency::idempotency_key(req)?.map(|(scope, k)| format!("{scope:016x}:{k}"));
    let (s, l) = resolve(&state.engine.catalog(), &sku, &loc, "")?;
    let (sku_id, loc_id) = ids(&sku, &loc)?;
    let r = state
        .engine
        .adjust_as(Adjustment {
            sku_idx: s,
            loc_idx: l,
            sku: sku_id,
            location: loc_id,
            delta,
            reason,
            key,
            by: Some(req.principal.by()),
            note,
            unsellable,
        })
        .await??;
    Ok(json_response(200, &record_json(&sku, &loc, &r)))
}

/// `GET /v1/inventory/{loc}/{sku}`'s checks: the ids, the token's
/// location, both known. The ids and their indexes.
fn record_of(
    c: &Catalog,
    req: &Request,
    loc: &str,
    sku: &str,
) -> Result<(String, String, SkuIdx, LocIdx), ApiError> {
    req.principal.require_location(loc)?;
    let loc = path_id(loc, "location")?;
    let sku = path_id(sku, "sku")?;
    let s = c
        .sku_idx(&sku)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no SKU {sku}")))?;
    let l = c
        .location_idx(&loc)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no location {loc}")))?;
    Ok((loc, sku, s, l))
}

pub async fn get(state: &AppState, req: &Request, loc: &str, sku: &str) -> ApiResult {
    let (loc, sku, s, l) = record_of(&state.engine.catalog(), req, loc, sku)?;
    let recs = state.engine.stock_records(s, Some(vec![l])).await?;
    let r = recs.first().copied().unwrap_or(RecordView {
        record: StockRecord::empty(l),
        rotation: 0.0,
    });
    Ok(json_response(200, &record_json(&sku, &loc, &r)))
}

/// `GET /v1/inventory/{location}/{sku}/history?since=&limit=&cursor=`:
/// the record's movements, newest first, a page at a time.
pub async fn history(state: &AppState, req: &Request, loc: &str, sku: &str) -> ApiResult {
    let (loc, sku, ..) = record_of(&state.engine.catalog(), req, loc, sku)?;
    let q = req.query.as_deref().unwrap_or("");
    let mut e = Errors::default();
    let since = query_param(q, "since").and_then(|v| {
        let t = parse_rfc3339(&v);
        if t.is_none() {
            e.add("since", "must be an RFC 3339 date-time");
        }
        t
    });
    let limit = page_limit(&mut e, q, HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX);
    let before = query_param(q, "cursor").and_then(|v| {
        let p = Place::parse_cursor(&v);
        if p.is_none() {
            e.add("cursor", "must be a next_cursor this endpoint answered");
        }
        p
    });
    e.into_result()?;
    let read = state
        .engine
        .history(loc.clone(), sku.clone(), since, before, limit)
        .await?;
    let page = match read {
        HistoryRead::Page(p) => p,
        HistoryRead::CatchingUp => return Err(ApiError::new(
            Code::Unavailable,
            "the movement history is catching up with the journal (after a restart); retry shortly",
        )
        .retry_after(1)),
        HistoryRead::Off => {
            return Err(ApiError::new(
                Code::NotFound,
                "this server keeps no movement history (snapshots are off)",
            ))
        }
    };
    let movements: Vec<Value> = page.movements.iter().map(movement_json).collect();
    Ok(json_response(
        200,
        &json!({
            "location": loc,
            "sku": sku,
            "movements": movements,
            "next_cursor": page.next.map(Place::cursor),
        }),
    ))
}

fn movement_json(m: &Movement) -> Value {
    let mut j = json!({
        "at": rfc3339(m.at_ms),
        "kind": m.kind.as_str(),
        "on_hand": m.on_hand,
        "reserved": m.reserved,
        "delta_on_hand": m.delta_on_hand,
        "delta_reserved": m.delta_reserved,
        "reason": m.reason.map(AdjustReason::as_str),
        "ref": m.reference,
        "by": m.by.as_ref().map(|b| json!({"role": b.role.as_str(), "location": b.location.as_ref().map(LocationId::as_str)})),
        "note": m.note,
    });
    // As on records: only when there are units apart, or moved.
    if let Some(o) = j.as_object_mut() {
        if let Some(u) = m.unsellable {
            o.insert("unsellable".into(), json!(crate::feed::BucketsWire(u)));
        }
        if let Some((b, u)) = m.delta_unsellable {
            o.insert("delta_unsellable".into(), json!({ b.as_str(): u }));
        }
        if m.in_transit != 0 || m.delta_in_transit != 0 {
            o.insert("in_transit".into(), json!(m.in_transit));
            o.insert("delta_in_transit".into(), json!(m.delta_in_transit));
        }
    }
    j
}

/// `get`'s answer from a model (a cluster follower's copy of the shard)
/// at `now`.
pub fn get_from(model: &Model, now: TimeMs, req: &Request, loc: &str, sku: &str) -> ApiResult {
    let (loc, sku, s, l) = record_of(&model.catalog, req, loc, sku)?;
    let r = RecordView {
        record: model.stock.get_or_empty(s, l),
        rotation: model.rotation.index(s, l, now),
    };
    Ok(json_response(200, &record_json(&sku, &loc, &r)))
}

/// `GET /v1/availability/{sku}`'s checks: the id, a channel's token, a
/// known SKU.
fn available_of(c: &Catalog, req: &Request, sku: &str) -> Result<(String, SkuIdx), ApiError> {
    req.principal.require_channel()?;
    let sku = path_id(sku, "sku")?;
    let s = c
        .sku_idx(&sku)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no SKU {sku}")))?;
    Ok((sku, s))
}

/// What is available of `sku` at every active location, and in all; for
/// a SKU that may be sold against incoming supply at `now` (a backorder
/// or a preorder), also what a line allowing it may get beyond that
/// (`available_to_backorder`: the supply still to come not sold yet,
/// within the SKU's limit; before a preorder's release, when `available`
/// is 0, the units on hand too).
fn availability_json(
    c: &Catalog,
    (sku, s): (&str, SkuIdx),
    records: impl Iterator<Item = StockRecord>,
    now: TimeMs,
) -> Value {
    let sale = c.sku(s).and_then(|x| x.1.supply_sale(now));
    let records: Vec<StockRecord> = records.collect();
    let outstanding: i64 = records.iter().map(|r| r.backordered).sum();
    let room = sale.map_or(0, |p| p.room(outstanding));
    let (mut total, mut on_hand_ahead, mut supply_ahead) = (0i64, 0i64, 0i64);
    let locations: Vec<Value> = records
        .iter()
        .filter_map(|r| {
            let (id, l) = c.location(r.location)?;
            // Inactive locations sell nothing.
            if !l.active {
                return None;
            }
            let (plain, ahead) = r.offered(sale, room);
            total += plain;
            let mut o = json!({"location": id.as_str(), "available": plain});
            if sale.is_some() {
                // The network's figure bounds the supply by the room once,
                // not once per location.
                let (_, on_hand) = r.offered(sale, 0);
                on_hand_ahead += on_hand;
                supply_ahead += r.incoming_unsold();
                o["available_to_backorder"] = json!(ahead);
            }
            Some(o)
        })
        .collect();
    let mut body = json!({"sku": sku, "available": total, "locations": locations});
    if sale.is_some() {
        body["available_to_backorder"] = json!(on_hand_ahead + supply_ahead.min(room));
    }
    body
}

pub async fn availability(state: &AppState, req: &Request, sku: &str) -> ApiResult {
    let (sku, s) = available_of(&state.engine.catalog(), req, sku)?;
    let recs = state.engine.stock_records(s, None).await?;
    let now = state.engine.clock().now_ms();
    let records = recs.iter().map(|r| r.record);
    let body = availability_json(&state.engine.catalog(), (&sku, s), records, now);
    Ok(json_response(200, &body))
}

/// `availability`'s answer from a model (a cluster follower's copy).
pub fn availability_from(model: &Model, now: TimeMs, req: &Request, sku: &str) -> ApiResult {
    let (sku, s) = available_of(&model.catalog, req, sku)?;
    let body = availability_json(&model.catalog, (&sku, s), model.stock.records_of(s), now);
    Ok(json_response(200, &body))
}

pub async fn batch(state: &AppState, req: &Request) -> ApiResult {
    let refused = || {
        super::auth::forbidden(
            "a batch needs an admin token, or a store token for its own location",
        )
    };
    // Authorization before validation: a channel token is refused whatever
    // it sent, a store token as soon as an item names another location.
    let own = match &req.principal.role {
        Role::Admin => None,
        Role::Store(l) => Some(l.as_str()),
        Role::Channel => return Err(refused()),
    };
    let m = parse_object(&req.body)?;
    if let Some(own) = own {
        let items = m.get("items").and_then(Value::as_array);
        let elsewhere = items.into_iter().flatten().any(|it| {
            it.get("location")
                .and_then(Value::as_str)
                .is_some_and(|l| l != own)
        });
        if elsewhere {
            return Err(refused());
        }
    }
    let mut e = Errors::default();
    let window = count_window(state.engine.clock().now_ms());
    // Validate everything before writing anything.
    let mut parsed = Vec::new();
    for (i, path, o) in objects(
        &mut e,
        &m,
        "items",
        "item",
        BATCH_ITEMS_MAX,
        "{location, sku, on_hand, safety_stock, counted_at}",
    ) {
        let loc = e.id(o, "location", &path, true);
        let sku = e.id(o, "sku", &path, true);
        let on_hand = e.int(o, "on_hand", &path, 0, STOCK_MAX, true);
        let safety = e.int(o, "safety_stock", &path, 0, STOCK_MAX, false);
        let counted_at = e.time(o, "counted_at", &path, window, false);
        if let (Some(loc), Some(sku), Some(on_hand)) = (loc, sku, on_hand) {
            parsed.push((i, loc, sku, on_hand, safety, counted_at));
        }
    }
    e.into_result()?;
    let mut counts = Vec::with_capacity(parsed.len());
    {
        let c = state.engine.catalog();
        for (i, loc, sku, on_hand, safety, counted_at) in parsed {
            let (s, l) = resolve(&c, &sku, &loc, &format!("items[{i}]."))?;
            let (sku_id, loc_id) = ids(&sku, &loc)?;
            counts.push(CountItem {
                sku_idx: s,
                loc_idx: l,
                sku: sku_id,
                location: loc_id,
                on_hand,
                safety_stock: safety,
                counted_at,
            });
        }
    }
    let results = state
        .engine
        .count(counts.clone(), Some(req.principal.by()))
        .await?;
    // A count as of a time that cannot be placed is reported with its
    // item; the rest are applied.
    let refused: Vec<Value> = results
        .iter()
        .zip(&counts)
        .enumerate()
        .filter_map(|(i, (r, c))| {
            let why = count_refused(*r.as_ref().err()?, &format!("items[{i}]."));
            let mut v = why.body();
            if let Some(o) = v.as_object_mut() {
                o.insert("index".into(), json!(i));
                o.insert("sku".into(), json!(c.sku.as_str()));
                o.insert("location".into(), json!(c.location.as_str()));
            }
            Some(v)
        })
        .collect();
    let applied = results.len() - refused.len();
    Ok(json_response(
        200,
        &json!({ "applied": applied, "refused": refused }),
    ))
}
