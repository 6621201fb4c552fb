//! `GET /v1/inventory/export?location=&format=csv`: a location's stock
//! records, or the whole network's, as CSV streamed a location at a time
//! (api.md, "Exporting stock").
//!
//! The first four columns are those `holdfast import` reads
//! (`location,sku,on_hand,safety_stock`), the rest are what a record
//! shows beside them: an export imported again changes nothing. Ids hold
//! no comma, quote or line break (`validate_id`), so no field is quoted.
//!
//! Who may: an admin any location or the network; a store token its own
//! location, named; a channel token nothing.

use std::sync::Arc;

use warp::http::{header, Response};
use warp::hyper::body::Bytes;
use warp::hyper::Body;

use super::error::{ApiError, ApiResult, Code};
use super::input::{path_id, query_param, Errors};
use super::{AppState, Request};
use crate::config::Role;
use crate::domain::catalog::{Catalog, LocIdx};
use crate::domain::rfc3339;
use crate::domain::stock::StockRecord;
use crate::feed::Scope;
use crate::limits::{EXPORT_LOCATIONS_AT_ONCE, EXPORT_RECORDS_AT_ONCE};

/// The header line: import's columns first.
pub const CSV_HEADER: &str = "location,sku,on_hand,safety_stock,reserved,available,unsellable,\
in_transit,incoming,incoming_eta,backordered,version\n";

/// The locations asked for, in catalog order.
fn asked(state: &AppState, req: &Request) -> Result<Vec<LocIdx>, ApiError> {
    let q = req.query.as_deref().unwrap_or("");
    let location = query_param(q, "location");
    // Authorization before validation.
    match (&req.principal.role, &location) {
        (Role::Admin, _) => {}
        (Role::Store(own), Some(l)) if own.as_str() == l.as_ref() => {}
        (Role::Store(_), _) => {
            return Err(super::auth::forbidden(
                "a store token exports its own location only (location=<its id>)",
            ))
        }
        (Role::Channel, _) => {
            return Err(super::auth::forbidden(
                "an export needs an admin token, or a store token for its own location",
            ))
        }
    }
    let mut e = Errors::default();
    if let Some(l) = &location {
        if let Err(err) = path_id(l, "location") {
            e.0.extend(err.errors);
        }
    }
    match query_param(q, "format").as_deref() {
        None | Some("csv") => {}
        Some(_) => e.add("format", "must be csv"),
    }
    e.into_result()?;
    let c = state.engine.catalog();
    match location {
        Some(l) => match c.location_idx(&l) {
            Some(i) => Ok(vec![i]),
            None => Err(ApiError::new(Code::NotFound, format!("no location {l}"))),
        },
        None => Ok((0..c.location_count() as LocIdx).collect()),
    }
}

/// One record's line.
fn csv_line(out: &mut String, c: &Catalog, loc: &str, sku: u32, r: &StockRecord) {
    use std::fmt::Write;
    let Some((sku, _)) = c.sku(sku) else {
        return; // not in this catalog: a record cannot be named
    };
    let eta = if r.incoming > 0 {
        rfc3339(r.incoming_eta)
    } else {
        String::new()
    };
    let unsellable = r.unsellable.total();
    let _ = writeln!(
        out,
        "{loc},{},{},{},{},{},{unsellable},{},{},{eta},{},{}",
        sku.as_str(),
        r.on_hand,
        r.safety_stock,
        r.reserved,
        r.available(),
        r.in_transit,
        r.incoming,
        r.backordered,
        r.version,
    );
}

pub async fn get(state: &Arc<AppState>, req: &Request) -> ApiResult {
    let locations = asked(state, req)?;
    let state = state.clone();
    // Locations a batch at a time, the journal waited for once a batch:
    // as many as make `EXPORT_RECORDS_AT_ONCE` records at most (one at
    // least), `EXPORT_LOCATIONS_AT_ONCE` at most.
    let skus = state.engine.catalog().sku_count().max(1);
    let per = (EXPORT_RECORDS_AT_ONCE / skus).clamp(1, EXPORT_LOCATIONS_AT_ONCE);
    let batches: Vec<Vec<LocIdx>> = locations.chunks(per).map(<[LocIdx]>::to_vec).collect();
    let body = futures::stream::unfold(
        (state, batches.into_iter(), true),
        |(state, mut left, first)| async move {
            let mut text = if first {
                CSV_HEADER.to_string()
            } else {
                String::new()
            };
            let Some(batch) = left.next() else {
                return (!text.is_empty()).then(|| (Ok(Bytes::from(text)), (state, left, false)));
            };
            let scopes: Vec<Scope> = batch.iter().map(|l| Scope::Location(*l)).collect();
            let views = match state.engine.feed_views(&scopes).await {
                Ok(v) => v,
                // The answer ends short, as a broken transfer: a client never
                // takes a part for the whole.
                Err(e) => {
                    let e = std::io::Error::other(format!("export stopped: {e:?}"));
                    return Some((Err(e), (state, left, false)));
                }
            };
            let c = state.engine.catalog();
            for (l, view) in batch.iter().zip(views) {
                let Some(loc) = c.location(*l).map(|(id, _)| id.as_str().to_string()) else {
                    continue;
                };
                let mut records = view.records;
                records.sort_by(|a, b| {
                    let name = |s| c.sku(s).map(|(id, _)| id.as_str());
                    name(a.0).cmp(&name(b.0))
                });
                for (sku, r) in &records {
                    csv_line(&mut text, &c, &loc, *sku, r);
                }
            }
            drop(c);
            Some((
                Ok::<_, std::io::Error>(Bytes::from(text)),
                (state, left, false),
            ))
        },
    );
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::wrap_stream(body))
        .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))
}
