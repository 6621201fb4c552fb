//! `/v1/supply...`: incoming supply (a purchase order, an advance
//! shipping notice) expected at a location.
//!
//! Who may: an admin token anything; a store token the supply of its own
//! location (announce, read, list, receive, cancel); a channel token
//! none. The id is the supply's idempotency key (a repeat alike answers
//! it, 200; another under the id is 409 `supply_exists`); a delivery is
//! applied once per `Idempotency-Key` (several deliveries may come, so
//! without one each is applied).

use serde_json::{json, Value};

use super::books::{
    self, arrived, known_location, known_skus, lines, lines_invalid, not_channel, requested, Shown,
};
use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{parse_object, path_id, Errors};
use super::{AppState, Request};
use crate::clock::rfc3339;
use crate::domain::supply::{AnnounceRefused, Supply, SupplyRefused, SupplyStatus, SupplyStep};
use crate::domain::TimeMs;
use crate::limits::{STOCK_MAX, SUPPLY_AHEAD_MS, SUPPLY_BEHIND_MS};
use crate::problem::FieldError;

/// A supply as the API shows it: per line what was ordered, received so
/// far and is still to come; its deliveries.
pub fn supply_json(s: &Supply) -> Value {
    let lines: Vec<Value> = s
        .lines
        .iter()
        .map(|l| json!({"sku": l.sku.as_str(), "qty": l.qty, "received": l.received, "remaining": l.remaining()}))
        .collect();
    let receipts: Vec<Value> = s
        .receipts
        .iter()
        .map(|r| {
            let lines: Vec<Value> = r
                .lines
                .iter()
                .map(|(sku, q)| json!({"sku": sku.as_str(), "qty": q}))
                .collect();
            json!({"at": rfc3339(r.at_ms), "lines": lines})
        })
        .collect();
    json!({
        "id": s.id,
        "location": s.location.as_str(),
        "expected_at": rfc3339(s.expected_ms),
        "status": s.status.as_str(),
        "lines": lines,
        "receipts": receipts,
        "created_at": rfc3339(s.created_ms),
        "updated_at": rfc3339(s.updated_ms),
    })
}

fn no_supply(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no supply {id}"))
}

/// The times a supply may be expected at `now`: late ones a year back,
/// announced ones two years ahead.
fn expected_window(now: TimeMs) -> (TimeMs, TimeMs) {
    (now - SUPPLY_BEHIND_MS, now + SUPPLY_AHEAD_MS)
}

/// `POST /v1/supply` `{"id","location","expected_at","lines":[{"sku","qty"}]}`:
/// 201 `expected`.
pub async fn create(state: &AppState, req: &Request) -> ApiResult {
    not_channel(req)?;
    let m = parse_object(&req.body)?;
    // Authorization before validation: a store names its own location.
    let named = m.get("location").and_then(Value::as_str).unwrap_or("");
    req.principal.require_location(named)?;
    let mut e = Errors::default();
    let id = e.id(&m, "id", "", true);
    let location = e.id(&m, "location", "", true);
    let window = expected_window(state.engine.clock().now_ms());
    let expected = e.time(&m, "expected_at", "", window, true);
    let lines = lines(&mut e, &m);
    e.into_result()?;
    let (Some(id), Some(location), Some(expected)) = (id, location, expected) else {
        return Err(ApiError::new(Code::ValidationFailed, "incomplete supply"));
    };
    let (location, skus) = {
        let c = state.engine.catalog();
        (
            known_location(&c, &location, "location")?,
            known_skus(&c, &lines)?,
        )
    };
    let r = state
        .engine
        .expect_supply(id, (location, expected), skus, Some(req.principal.by()))
        .await?;
    match r {
        Ok((s, created)) => requested(created, &supply_json(&s), format!("/v1/supply/{}", s.id)),
        Err(AnnounceRefused::Exists) => Err(ApiError::new(
            Code::SupplyExists,
            "another supply has this id (announced again with the same location, expected_at and lines, it answers the supply)",
        )),
        Err(AnnounceRefused::Full) => Err(ApiError::new(
            Code::Unavailable,
            "the supply book is full: closed supplies are forgotten after 90 days",
        )
        .retry_after(60)),
        Err(AnnounceRefused::Invalid(why)) => Err(lines_invalid(why)),
        Err(AnnounceRefused::TooMuch(sku)) => Err(ApiError::validation(vec![FieldError {
            field: "lines".into(),
            message: format!(
                "SKU {sku}: the location's incoming units would pass {STOCK_MAX}"
            ),
        }])),
    }
}

/// Admin, or the store of the supply's location.
fn may_see(req: &Request, s: &Supply) -> Result<(), ApiError> {
    not_channel(req)?;
    req.principal.require_location(s.location.as_str())
}

impl Shown for Supply {
    type Status = SupplyStatus;
    const LISTED: &'static str = "supplies";
    const STATUSES: &'static [SupplyStatus] = &[
        SupplyStatus::Expected,
        SupplyStatus::Received,
        SupplyStatus::Cancelled,
    ];
    fn status_name(s: SupplyStatus) -> &'static str {
        s.as_str()
    }
    fn status(&self) -> SupplyStatus {
        self.status
    }
    fn at(&self, location: &str) -> bool {
        self.location.as_str() == location
    }
    fn json(&self) -> Value {
        supply_json(self)
    }
    fn missing(id: &str) -> ApiError {
        no_supply(id)
    }
    fn may_see(&self, req: &Request) -> Result<(), ApiError> {
        may_see(req, self)
    }
}

/// `GET /v1/supply/{id}` (`Some`) and `GET /v1/supply` (`None`).
pub async fn get(state: &AppState, req: &Request, id: Option<&str>) -> ApiResult {
    let read = state
        .engine
        .read_supplies(|b| books::read(b, req, id))
        .await?;
    books::found::<Supply>(read, id)
}

/// `POST /v1/supply/{id}/receive|cancel`.
pub async fn step(state: &AppState, req: &Request, id: &str, action: &str) -> ApiResult {
    not_channel(req)?;
    let id = path_id(id, "id")?;
    let s = state
        .engine
        .read_supplies(|b| b.get(&id).cloned())
        .await?
        .ok_or_else(|| no_supply(&id))?;
    // Authorization before validation.
    may_see(req, &s)?;
    let step = match action {
        "receive" => {
            let key = super::idempotency::idempotency_key(req)?
                .map(|(scope, k)| format!("{scope:016x}:{k}"));
            let got = arrived(req, |sku| {
                s.lines.iter().map(|l| &l.sku).find(|k| k.as_str() == sku)
            })?;
            SupplyStep::Receive(got, key)
        }
        _ => SupplyStep::Cancel,
    };
    let r = state
        .engine
        .supply_step(id.clone(), step, Some(req.principal.by()))
        .await?;
    match r {
        Ok(s) => Ok(json_response(200, &supply_json(&s))),
        Err(refused) => Err(step_refused(&id, refused)),
    }
}

fn step_refused(id: &str, refused: SupplyRefused) -> ApiError {
    let field = |message: &str| {
        ApiError::validation(vec![FieldError {
            field: "lines".into(),
            message: message.into(),
        }])
    };
    match refused {
        SupplyRefused::NotFound => no_supply(id),
        SupplyRefused::NotNow(status) => ApiError::new(
            Code::InvalidTransition,
            format!(
                "supply {id} is {}: nothing more is expected",
                status.as_str()
            ),
        )
        .with("supply_status", json!(status.as_str())),
        SupplyRefused::TooManyReceipts => ApiError::new(
            Code::InvalidTransition,
            format!("supply {id} has had its deliveries: cancel it and announce the rest anew"),
        ),
        SupplyRefused::KeyReused => ApiError::new(
            Code::IdempotencyKeyReused,
            "this Idempotency-Key named another delivery",
        ),
        SupplyRefused::Nothing => field("must bring at least one unit"),
        SupplyRefused::UnknownSku(s) | SupplyRefused::TwiceNamed(s) => field(&format!(
            "SKU {s}: not a line of this supply, or named twice"
        )),
    }
}
