//! What the endpoints of transfers and of incoming supply share: who may
//! (not a channel token), their lines, a delivery's lines, a listing's
//! query and answer, a request's answer by its id.

use serde_json::{json, Map, Value};

use super::auth::forbidden;
use super::error::Code;
use super::error::{json_response, ApiError, ApiResult};
use super::input::{join, objects, page_limit, parse_object, path_id, query_param, Errors};
use super::inventory::{resolve_location, resolve_sku};
use super::Request;
use crate::config::Role;
use crate::domain::book::{Book, Kept, LinesInvalid};
use crate::domain::catalog::Catalog;
use crate::domain::ids::{LocationId, SkuId};
use crate::limits::{STOCK_MAX, TRANSFER_LINES_MAX, TRANSFER_PAGE_DEFAULT, TRANSFER_PAGE_MAX};
use crate::problem::FieldError;

/// Transfers and supply are the stores' and the back office's: not a
/// channel's (checkout).
pub fn not_channel(req: &Request) -> Result<(), ApiError> {
    match req.principal.role {
        Role::Channel => Err(forbidden(
            "a channel token cannot see or move transfers or supply",
        )),
        _ => Ok(()),
    }
}

/// A request's `lines`: 1 to `TRANSFER_LINES_MAX` of `{"sku","qty"}`,
/// `qty` 1 to `STOCK_MAX`, each SKU once.
pub fn lines(e: &mut Errors, m: &Map<String, Value>) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for (_, path, o) in objects(
        e,
        m,
        "lines",
        "line",
        TRANSFER_LINES_MAX,
        "{\"sku\",\"qty\"}",
    ) {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 1, STOCK_MAX, true);
        if let (Some(sku), Some(qty)) = (sku, qty) {
            if out.iter().any(|(s, _)| *s == sku) {
                e.add(join(&path, "sku"), "names a SKU an earlier line names");
            }
            out.push((sku, qty as u32));
        }
    }
    out
}

/// A delivery's `{"lines":[{"sku","qty"}]}`: what arrived of SKUs in
/// `carried` (0 to `STOCK_MAX` each, each once; one not carried is named).
pub fn arrived<'a>(
    req: &Request,
    carried: impl Fn(&str) -> Option<&'a SkuId>,
) -> Result<Vec<(SkuId, u32)>, ApiError> {
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
        match carried(&sku) {
            None => e.add(
                join(&path, "sku"),
                "is not a SKU of this transfer or supply",
            ),
            Some(_) if got.iter().any(|(s, _)| s.as_str() == sku) => {
                e.add(join(&path, "sku"), "names a SKU an earlier line names")
            }
            Some(s) => got.push((s.clone(), qty as u32)),
        }
    }
    e.into_result()?;
    Ok(got)
}

/// What the API shows of a book's entries, and to whom.
pub trait Shown: Kept + Sized + 'static {
    type Status: Copy + PartialEq + 'static;
    /// The listing's member (`"transfers"`).
    const LISTED: &'static str;
    /// Every status, as a listing's `status` names them.
    const STATUSES: &'static [Self::Status];
    fn status_name(s: Self::Status) -> &'static str;
    fn status(&self) -> Self::Status;
    /// Leaves, reaches or is at `location`.
    fn at(&self, location: &str) -> bool;
    fn json(&self) -> Value;
    /// 404 for an id no entry has.
    fn missing(id: &str) -> ApiError;
    /// Admin, or a store the entry concerns.
    fn may_see(&self, req: &Request) -> Result<(), ApiError>;
}

/// One entry (`Some(id)`) or a listing (`None`) read from `book`, the
/// leader's or a follower's copy: `None` when the entry is not there
/// (the leader answers 404, a follower asks the leader).
pub fn read<T: Shown>(book: &Book<T>, req: &Request, id: Option<&str>) -> Option<ApiResult> {
    let Some(id) = id else {
        return Some(listing::<T>(req).map(|l| {
            let wants = |t: &T| {
                l.location.as_deref().is_none_or(|loc| t.at(loc))
                    && l.status.is_none_or(|s| t.status() == s)
            };
            let (page, next) = book.page(wants, l.after.as_deref(), l.limit);
            let items: Vec<Value> = page.into_iter().map(T::json).collect();
            json_response(200, &json!({T::LISTED: items, "next_cursor": next}))
        }));
    };
    let found = (|| {
        not_channel(req)?;
        path_id(id, "id")
    })();
    match found {
        Err(e) => Some(Err(e)),
        Ok(id) => {
            let t = book.get(&id)?;
            Some(t.may_see(req).map(|()| json_response(200, &t.json())))
        }
    }
}

/// `read` on the leader: an entry its book lacks is 404.
pub fn found<T: Shown>(read: Option<ApiResult>, id: Option<&str>) -> ApiResult {
    read.unwrap_or_else(|| Err(T::missing(id.unwrap_or(""))))
}

/// A listing's query: its location (a store token's own, the default:
/// another is 403), its status, the id to go on after, the page's size.
struct Listing<S> {
    location: Option<String>,
    status: Option<S>,
    after: Option<String>,
    limit: usize,
}

fn listing<T: Shown>(req: &Request) -> Result<Listing<T::Status>, ApiError> {
    not_channel(req)?;
    let q = req.query.as_deref().unwrap_or("");
    let location = query_param(q, "location").map(|l| l.into_owned());
    let location = match &req.principal.role {
        Role::Store(own) => {
            if location.as_deref().is_some_and(|l| l != own.as_str()) {
                return Err(forbidden("a store token may only list its own location's"));
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
        let got = T::STATUSES
            .iter()
            .copied()
            .find(|t| T::status_name(*t) == s);
        if got.is_none() {
            let names: Vec<&str> = T::STATUSES.iter().map(|t| T::status_name(*t)).collect();
            e.add("status", format!("must be one of {}", names.join(", ")));
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
    Ok(Listing {
        location,
        status,
        after,
        limit,
    })
}

/// A request's answer: 201 with its `Location` when it is new, 200 when
/// it repeats one kept under its id.
pub fn requested(created: bool, body: &Value, path: String) -> ApiResult {
    let mut resp = json_response(if created { 201 } else { 200 }, body);
    if let Ok(loc) = path.parse() {
        resp.headers_mut().insert(warp::http::header::LOCATION, loc);
    }
    Ok(resp)
}

/// A new entry's lines refused (`domain::book::check_lines`): 422 on
/// `lines`.
pub fn lines_invalid(why: LinesInvalid) -> ApiError {
    let message = match why {
        LinesInvalid::NoLines => "must have at least one line".to_string(),
        LinesInvalid::TwiceNamed(s) => format!("name SKU {s} twice"),
        LinesInvalid::ZeroQty(s) => format!("SKU {s}: qty must be at least 1"),
    };
    ApiError::validation(vec![FieldError {
        field: "lines".into(),
        message,
    }])
}

/// A location of the catalog named by `field`, as an id (422
/// `unknown_location` otherwise).
pub fn known_location(c: &Catalog, location: &str, field: &str) -> Result<LocationId, ApiError> {
    resolve_location(c, location, field)?;
    LocationId::parse(location).map_err(|_| ApiError::new(Code::ValidationFailed, "location"))
}

/// The lines' SKUs of the catalog, as ids (422 `unknown_sku` naming
/// `lines[i].sku` otherwise).
pub fn known_skus(c: &Catalog, lines: &[(String, u32)]) -> Result<Vec<(SkuId, u32)>, ApiError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, (sku, qty))| {
            resolve_sku(c, sku, &format!("lines[{i}]."))?;
            let id = SkuId::parse(sku).map_err(|_| ApiError::new(Code::ValidationFailed, "sku"))?;
            Ok((id, *qty))
        })
        .collect()
}
