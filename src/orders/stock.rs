//! Where an order's stock goes: the plan, the holds of its shipments, and
//! their confirm, fulfil and release (the order and its stock share one
//! engine: on a cluster, the leader's). And the one loop of planning then
//! holding (`Replans`), which orders and sourced reservations share.

use serde_json::{json, Value};

use super::Orders;
use crate::actors::{Adjustment, CartLine, Engine};
use crate::domain::catalog::{Catalog, SkuIdx};
use crate::domain::ids::ReservationId;
use crate::domain::order::{Order, OwedRestock};
use crate::domain::reservation::{Line, SplitRefused, Status, Transition};
use crate::domain::sourcing::{PickupRefused, Plan, PlanOptions, Target};
use crate::domain::stock::AdjustReason;
use crate::limits::SOURCING_REPLANS_MAX;
use crate::problem::{ApiError, Code, FieldError};

/// Plans, then holds what was planned; when the stock moved between the
/// two (a line planned came up short), plans again, at most
/// `SOURCING_REPLANS_MAX` times. The caller holds, and says `moved`.
#[derive(Default)]
pub struct Replans {
    attempts: usize,
}

impl Replans {
    /// The plan of `asked` for `target` now (the lines `ahead` names may
    /// be sold against supply: `Engine::plan`); 422 for a pickup the
    /// store cannot take.
    pub async fn plan(
        &mut self,
        engine: &Engine,
        asked: &[(SkuIdx, u32)],
        ahead: &[bool],
        target: Target,
        options: PlanOptions,
    ) -> Result<Plan, ApiError> {
        engine
            .plan(asked, ahead, target, options)
            .await?
            .map_err(pickup_refused)
    }

    /// The hold of the last plan found the stock moved: `Ok` to plan
    /// again, or `last` (the refusal to give) once planned too often.
    pub fn moved(&mut self, last: ApiError) -> Result<(), ApiError> {
        if self.attempts >= SOURCING_REPLANS_MAX {
            return Err(last);
        }
        self.attempts += 1;
        tracing::debug!(
            attempt = self.attempts,
            "stock moved between plan and hold: planning again"
        );
        Ok(())
    }
}

/// A pickup the store cannot take: 422 on `pickup_location`.
pub fn pickup_refused(refused: PickupRefused) -> ApiError {
    ApiError::validation(vec![FieldError {
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

/// 409 `not_released`: `what` holds a preorder of `sku`, released `at`,
/// which is not handed over before then.
pub fn not_released(
    what: &str,
    sku: &crate::domain::ids::SkuId,
    at: crate::domain::TimeMs,
) -> ApiError {
    ApiError::new(
        Code::NotReleased,
        format!(
            "{what} holds preorder SKU {sku}, released at {}: it cannot be handed over before then",
            crate::clock::rfc3339(at)
        ),
    )
    .with("release_at", json!(crate::clock::rfc3339(at)))
}

/// Holds `cart` for `ttl_s`: its id, or `None` when a line is short (the
/// stock moved since the plan).
pub async fn hold(
    orders: &Orders,
    cart: &[CartLine],
    ttl_s: u64,
) -> Result<Option<ReservationId>, ApiError> {
    Ok(orders
        .engine
        .reserve(cart, false, ttl_s, None)
        .await?
        .ok()
        .map(|r| r.id))
}

/// `t` (confirm, release or fulfil) of reservation `r`: whether it was
/// made (false: the reservation is not in a status that allows it).
pub async fn transition(
    orders: &Orders,
    r: ReservationId,
    t: Transition,
) -> Result<bool, ApiError> {
    Ok(orders.engine.transition(r, t).await?.is_ok())
}

/// The status of reservation `r` (`None`: no such reservation).
pub async fn status(orders: &Orders, r: ReservationId) -> Result<Option<Status>, ApiError> {
    Ok(reservation(orders, r).await?.map(|x| x.0))
}

/// Reservation `r`'s status and lines (`None`: no such reservation).
pub async fn reservation(
    orders: &Orders,
    r: ReservationId,
) -> Result<Option<(Status, Vec<Line>)>, ApiError> {
    Ok(orders
        .engine
        .reservation(r)
        .await?
        .map(|x| (x.status, x.lines)))
}

/// Held reservation `from` turned into `parts` (an order's shipments),
/// each held for `ttl_s`: their ids, or why not.
pub async fn split(
    orders: &Orders,
    from: ReservationId,
    parts: Vec<Vec<Line>>,
    ttl_s: u64,
) -> Result<Result<Vec<ReservationId>, SplitRefused>, ApiError> {
    Ok(orders
        .engine
        .split_reservation(from, parts, ttl_s)
        .await?
        .map(|v| v.into_iter().map(|r| r.id).collect()))
}

/// Makes `o`'s transfers to its pickup store what it says
/// (`Order::transfers_owed`; of shipment `only`, or all): false if one
/// could not be (logged; the reconciliation's, as a fulfil not made).
pub async fn settle_transfers(orders: &Orders, o: &Order, only: Option<u32>) -> bool {
    let mut settled = true;
    for want in o.transfers_owed() {
        if only.is_some_and(|n| n != want.of.shipment) {
            continue;
        }
        let shipment = want.of.shipment;
        if let Err(e) = orders.engine.settle_order_transfer(want).await {
            tracing::warn!(order = %o.id, shipment, error = %e, "a shipment's transfer to its pickup store was not recorded: left to the reconciliation");
            settled = false;
        }
    }
    settled
}

/// Puts owed returned goods back in stock, once under the restock's key
/// (a repeat is answered, not applied again).
pub async fn restock(orders: &Orders, r: &OwedRestock) -> Result<(), ApiError> {
    let (s, l) = {
        let c = orders.engine.catalog();
        let s = c
            .sku_idx(r.sku.as_str())
            .ok_or_else(|| ApiError::new(Code::UnknownSku, format!("unknown SKU {}", r.sku)))?;
        let l = c.location_idx(r.location.as_str()).ok_or_else(|| {
            ApiError::new(
                Code::UnknownLocation,
                format!("unknown location {}", r.location),
            )
        })?;
        (s, l)
    };
    let done = orders
        .engine
        .adjust_as(Adjustment {
            sku_idx: s,
            loc_idx: l,
            sku: r.sku.clone(),
            location: r.location.clone(),
            delta: i64::from(r.qty),
            reason: AdjustReason::Return,
            key: Some(r.key.clone()),
            by: None,
            note: None,
            unsellable: None,
        })
        .await?;
    done.map(|_| ()).map_err(ApiError::from)
}
