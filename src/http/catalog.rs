//! `/v1/skus/{sku}`, `/v1/skus/batch` and `/v1/locations[/{id}]`: admin
//! writes, any role reads.

use serde_json::{json, Map, Value};

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{join, objects, parse_object, path_id, Errors};
use super::{AppState, Request};
use crate::clock::rfc3339;
use crate::domain::catalog::{Backorder, Location, LocationKind, LowStock, Preorder, Sku};
use crate::domain::ids::{LocationId, SkuId};
use crate::limits::{BATCH_ITEMS_MAX, DIMENSION_MM_MAX, QTY_MAX, STOCK_MAX};
use crate::limits::{NAME_LEN_MAX, RELEASE_AT_MS};

pub fn sku_json(id: &str, s: &Sku) -> Value {
    let mut v = json!({
        "sku": id,
        "name": s.name,
        "weight_g": s.weight_g,
        "max_qty_per_reservation": s.max_qty_per_reservation,
        "dimensions_mm": s.dimensions_mm.map(|[l, w, h]| json!({"length": l, "width": w, "height": h})),
        "ship_alone": s.ship_alone,
    });
    // Left out when none: a SKU reads as it always did until it is sold
    // against supply.
    if let Some(b) = s.backorder {
        v["backorder"] = json!({"max_units": b.max_units});
    }
    if let Some(p) = s.preorder {
        v["preorder"] = json!({"release_at": rfc3339(p.release_ms), "max_units": p.max_units});
    }
    if let Some(l) = s.low_stock {
        v["low_stock"] = json!({"location": l.location, "network": l.network});
    }
    v
}

/// `backorder` `{max_units}` or `preorder` `{release_at, max_units}` of a
/// SKU, if given (null: none).
fn supply_sale_of<'a>(
    e: &mut Errors,
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Option<(&'a Map<String, Value>, String, u32)> {
    let p = join(path, key);
    match m.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => {
            let units = e.int(o, "max_units", &p, 1, STOCK_MAX, true)?;
            Some((o, p, units as u32))
        }
        Some(_) => {
            e.add(p, "must be an object");
            None
        }
    }
}

pub fn location_json(id: &str, l: &Location) -> Value {
    json!({
        "id": id,
        "name": l.name,
        "kind": l.kind,
        "lat": l.lat,
        "lon": l.lon,
        "priority": l.priority,
        "ship": l.ship,
        "pickup": l.pickup,
        "daily_capacity": l.daily_capacity,
        "active": l.active,
        "address": l.address,
    })
}

/// A SKU's fields from `m`, errors named under `path`.
fn parse_sku(e: &mut Errors, m: &Map<String, Value>, path: &str) -> Option<Sku> {
    let name = e.string(m, "name", path, NAME_LEN_MAX, true);
    let weight_g = e.int(m, "weight_g", path, 0, STOCK_MAX, false);
    let max_qty = e.int(m, "max_qty_per_reservation", path, 1, QTY_MAX, false);
    let ship_alone = e.boolean(m, "ship_alone", path).unwrap_or(false);
    let dims_path = join(path, "dimensions_mm");
    let dimensions = match m.get("dimensions_mm") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            let mut side = |k| e.int(d, k, &dims_path, 1, DIMENSION_MM_MAX, true);
            match (side("length"), side("width"), side("height")) {
                (Some(l), Some(w), Some(h)) => Some([l as u32, w as u32, h as u32]),
                _ => None,
            }
        }
        Some(_) => {
            e.add(dims_path, "must be an object {length, width, height}");
            None
        }
    };
    let backorder =
        supply_sale_of(e, m, "backorder", path).map(|(_, _, max_units)| Backorder { max_units });
    let preorder = supply_sale_of(e, m, "preorder", path).and_then(|(o, p, max_units)| {
        let release_ms = e.time(o, "release_at", &p, (i64::MIN, i64::MAX), true)?;
        Some(Preorder {
            release_ms: release_ms.clamp(RELEASE_AT_MS.0, RELEASE_AT_MS.1),
            max_units,
        })
    });
    let low_path = join(path, "low_stock");
    let low_stock = match m.get("low_stock") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => {
            let mut level = |k| {
                e.int(o, k, &low_path, 0, STOCK_MAX, false)
                    .map(|v| v as u32)
            };
            Some(LowStock {
                location: level("location"),
                network: level("network"),
            })
        }
        Some(_) => {
            e.add(low_path, "must be an object {location, network}");
            None
        }
    };
    Some(Sku {
        weight_g: weight_g.map(|w| w as u32),
        max_qty_per_reservation: max_qty.map(|q| q as u32),
        dimensions_mm: dimensions,
        ship_alone,
        backorder,
        preorder,
        low_stock,
        ..Sku::named(name?)
    })
}

pub async fn put_sku(state: &AppState, req: &Request, sku: &str) -> ApiResult {
    req.principal.require_admin()?;
    let sku = path_id(sku, "sku")?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let value = parse_sku(&mut e, &m, "");
    e.into_result()?;
    let value = value.ok_or_else(|| ApiError::new(Code::ValidationFailed, "name"))?;
    let id = SkuId::parse(&sku).map_err(|_| ApiError::new(Code::ValidationFailed, "sku"))?;
    state.engine.put_sku(id, value.clone()).await?;
    Ok(json_response(200, &sku_json(&sku, &value)))
}

/// `POST /v1/skus/batch` `{"items":[{"sku", "name", ...}]}`: a bulk catalog
/// import of up to `BATCH_ITEMS_MAX` SKUs, validated whole, then written as
/// one journal record (all or nothing).
pub async fn put_skus(state: &AppState, req: &Request) -> ApiResult {
    req.principal.require_admin()?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let mut skus = Vec::new();
    let items = objects(
        &mut e,
        &m,
        "items",
        "item",
        BATCH_ITEMS_MAX,
        "{sku, name, ...}",
    );
    for (_, path, o) in items {
        let id = e.id(o, "sku", &path, true);
        let value = parse_sku(&mut e, o, &path);
        if let (Some(id), Some(value)) = (id.and_then(|i| SkuId::parse(&i).ok()), value) {
            skus.push((id, value));
        }
    }
    e.into_result()?;
    let applied = skus.len();
    state.engine.put_skus(skus).await?;
    Ok(json_response(200, &json!({ "applied": applied })))
}

pub fn get_sku(state: &AppState, _req: &Request, sku: &str) -> ApiResult {
    let sku = path_id(sku, "sku")?;
    let c = state.engine.catalog();
    let s = c
        .sku_by_id(&sku)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no SKU {sku}")))?;
    Ok(json_response(200, &sku_json(&sku, s)))
}

pub async fn put_location(state: &AppState, req: &Request, id: &str) -> ApiResult {
    req.principal.require_admin()?;
    let id = path_id(id, "location")?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let name = e.string(&m, "name", "", NAME_LEN_MAX, true);
    let kind = match m.get("kind").and_then(Value::as_str) {
        Some("store") => Some(LocationKind::Store),
        Some("dc") => Some(LocationKind::Dc),
        None if m.get("kind").is_none() => {
            e.add("kind", "is required");
            None
        }
        _ => {
            e.add("kind", "must be \"store\" or \"dc\"");
            None
        }
    };
    let lat = e.float(&m, "lat", "", -90.0, 90.0, true);
    let lon = e.float(&m, "lon", "", -180.0, 180.0, true);
    let priority = e.int(&m, "priority", "", 0, 1000, false);
    let ship = e.boolean(&m, "ship", "");
    let pickup = e.boolean(&m, "pickup", "");
    let daily_capacity = e.int(&m, "daily_capacity", "", 0, STOCK_MAX, false);
    let active = e.boolean(&m, "active", "");
    let address = e.address(&m, "address", "");
    e.into_result()?;
    let d = Location::new(
        name.unwrap_or_default(),
        kind.unwrap_or(LocationKind::Store),
        lat.unwrap_or_default(),
        lon.unwrap_or_default(),
    );
    let value = Location {
        priority: priority.map_or(d.priority, |p| p as u32),
        ship: ship.unwrap_or(d.ship),
        pickup: pickup.unwrap_or(d.pickup),
        daily_capacity: daily_capacity.map(|c| c as u32),
        active: active.unwrap_or(d.active),
        address,
        ..d
    };
    let lid =
        LocationId::parse(&id).map_err(|_| ApiError::new(Code::ValidationFailed, "location"))?;
    state.engine.put_location(lid, value.clone()).await?;
    Ok(json_response(200, &location_json(&id, &value)))
}

pub fn get_location(state: &AppState, _req: &Request, id: &str) -> ApiResult {
    let id = path_id(id, "location")?;
    let c = state.engine.catalog();
    let l = c
        .location_by_id(&id)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no location {id}")))?;
    Ok(json_response(200, &location_json(&id, l)))
}

pub fn list_locations(state: &AppState, _req: &Request) -> ApiResult {
    let c = state.engine.catalog();
    let v: Vec<Value> = c
        .locations()
        .map(|(id, l)| location_json(id.as_str(), l))
        .collect();
    Ok(json_response(200, &json!({ "locations": v })))
}
