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
use super::books::{
    self, arrived, known_location, known_skus, lines, lines_invalid, not_channel, requested, Shown,
};
use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{parse_object, path_id, Errors};
use super::{AppState, Request};
use crate::clock::rfc3339;
use crate::config::Role;
use crate::domain::model::TransferRefused;
use crate::domain::transfer::{
    OrderRef, RequestRefused, StepRefused, Transfer, TransferInvalid, TransferStatus, TransferStep,
};
use crate::problem::FieldError;

/// A transfer as the API shows it: each line's `received` and
/// `discrepancy` (sent less arrived) null until it is received; `order`
/// the order shipment it carries to its pickup store (null for one asked
/// through the API).
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
        "order": t.order.as_ref().map(order_json),
    })
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
    let lines = lines(&mut e, &m);
    e.into_result()?;
    let (Some(id), Some(from), Some(to)) = (id, from, to) else {
        return Err(ApiError::new(Code::ValidationFailed, "incomplete transfer"));
    };
    let parsed = {
        let c = state.engine.catalog();
        let places = (
            known_location(&c, &from, "from")?,
            known_location(&c, &to, "to")?,
        );
        (places, known_skus(&c, &lines)?)
    };
    let r = state
        .engine
        .request_transfer(id, parsed.0, parsed.1, Some(req.principal.by()))
        .await?;
    match r {
        Ok((t, created)) => requested(created, &transfer_json(&t), format!("/v1/transfers/{}", t.id)),
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
        Err(RequestRefused::TooMuch(sku)) => Err(ApiError::validation(vec![FieldError {
            field: "lines".into(),
            message: format!(
                "SKU {sku}: the units on their way to `to` would pass {}",
                crate::limits::STOCK_MAX
            ),
        }])),
    }
}

/// A step asked of an order's transfer: 409, it moves with the order's
/// shipment (shipped, then ready for pickup).
fn order_owned(id: &str, of: &OrderRef) -> ApiError {
    ApiError::new(
        Code::InvalidTransition,
        format!(
            "transfer {id} carries shipment {} of order {} to its pickup store: it moves with the shipment (`POST /v1/orders/{}/shipments/{}/events`)",
            of.shipment, of.order, of.order, of.shipment
        ),
    )
    .with("order", order_json(of))
}

fn order_json(of: &OrderRef) -> Value {
    json!({"id": of.order, "shipment": of.shipment})
}

fn invalid(why: TransferInvalid) -> ApiError {
    match why {
        TransferInvalid::SameLocation => ApiError::validation(vec![FieldError {
            field: "to".into(),
            message: "must differ from from".into(),
        }]),
        TransferInvalid::Lines(why) => lines_invalid(why),
    }
}

impl Shown for Transfer {
    type Status = TransferStatus;
    const LISTED: &'static str = "transfers";
    const STATUSES: &'static [TransferStatus] = &[
        TransferStatus::Requested,
        TransferStatus::Shipped,
        TransferStatus::Received,
        TransferStatus::Cancelled,
    ];
    fn status_name(s: TransferStatus) -> &'static str {
        s.as_str()
    }
    fn status(&self) -> TransferStatus {
        self.status
    }
    fn at(&self, location: &str) -> bool {
        self.touches(location)
    }
    fn json(&self) -> Value {
        transfer_json(self)
    }
    fn missing(id: &str) -> ApiError {
        no_transfer(id)
    }
    fn may_see(&self, req: &Request) -> Result<(), ApiError> {
        may_see(req, self)
    }
}

/// `GET /v1/transfers/{id}` (`Some`) and `GET /v1/transfers` (`None`).
pub async fn get(state: &AppState, req: &Request, id: Option<&str>) -> ApiResult {
    let read = state
        .engine
        .read_transfers(|b| books::read(b, req, id))
        .await?;
    books::found::<Transfer>(read, id)
}

/// `POST /v1/transfers/{id}/ship|receive|cancel`.
pub async fn step(state: &AppState, req: &Request, id: &str, action: &str) -> ApiResult {
    not_channel(req)?;
    let id = path_id(id, "id")?;
    let t = state
        .engine
        .read_transfers(|b| b.get(&id).cloned())
        .await?
        .ok_or_else(|| no_transfer(&id))?;
    // Authorization before validation.
    match action {
        "ship" => req.principal.require_location(t.from.as_str())?,
        "receive" => req.principal.require_location(t.to.as_str())?,
        _ => may_see(req, &t)?,
    }
    if let Some(of) = &t.order {
        return Err(order_owned(&id, of));
    }
    let step = match action {
        "ship" => TransferStep::Ship,
        "receive" => TransferStep::Receive(arrived(req, |sku| {
            t.lines.iter().map(|l| &l.sku).find(|s| s.as_str() == sku)
        })?),
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
        Err(TransferRefused::Step(StepRefused::OrderOwned(of))) => Err(order_owned(&id, &of)),
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
