//! Where an order's stock goes: the plan, the holds of its shipments, and
//! their confirm, fulfil and release. The order and its stock share one
//! engine (on a cluster, the leader's: every write is the leader's).

use super::error::{ApiError, Code};
use super::AppState;
use crate::actors::CartLine;
use crate::domain::catalog::SkuIdx;
use crate::domain::ids::ReservationId;
use crate::domain::order::OwedRestock;
use crate::domain::reservation::{Line, SplitRefused, Status, Transition};
use crate::domain::sourcing::{PickupRefused, Plan, PlanOptions, Target};
use crate::domain::stock::AdjustReason;

/// The plan of `asked` for `target`, from the stock of every SKU.
pub async fn plan(
    state: &AppState,
    asked: &[(SkuIdx, u32)],
    target: Target,
    options: PlanOptions,
) -> Result<Result<Plan, PickupRefused>, ApiError> {
    Ok(state.engine.plan(asked, target, options).await?)
}

/// Holds `cart` for `ttl_s`: its id, or `None` when a line is short (the
/// stock moved since the plan).
pub async fn hold(
    state: &AppState,
    cart: &[CartLine],
    ttl_s: u64,
) -> Result<Option<ReservationId>, ApiError> {
    Ok(state
        .engine
        .reserve(cart, false, ttl_s, None)
        .await?
        .ok()
        .map(|r| r.id))
}

/// `t` (confirm, release or fulfil) of reservation `r`: whether it was
/// made (false: the reservation is not in a status that allows it).
pub async fn transition(
    state: &AppState,
    r: ReservationId,
    t: Transition,
) -> Result<bool, ApiError> {
    Ok(state.engine.transition(r, t).await?.is_ok())
}

/// The status of reservation `r` (`None`: no such reservation).
pub async fn status(state: &AppState, r: ReservationId) -> Result<Option<Status>, ApiError> {
    Ok(reservation(state, r).await?.map(|x| x.0))
}

/// Reservation `r`'s status and lines (`None`: no such reservation).
pub async fn reservation(
    state: &AppState,
    r: ReservationId,
) -> Result<Option<(Status, Vec<Line>)>, ApiError> {
    Ok(state
        .engine
        .reservation(r)
        .await?
        .map(|x| (x.status, x.lines)))
}

/// Held reservation `from` turned into `parts` (an order's shipments),
/// each held for `ttl_s`: their ids, or why not.
pub async fn split(
    state: &AppState,
    from: ReservationId,
    parts: Vec<Vec<Line>>,
    ttl_s: u64,
) -> Result<Result<Vec<ReservationId>, SplitRefused>, ApiError> {
    Ok(state
        .engine
        .split_reservation(from, parts, ttl_s)
        .await?
        .map(|v| v.into_iter().map(|r| r.id).collect()))
}

/// Puts owed returned goods back in stock, once under the restock's key
/// (a repeat is answered, not applied again).
pub async fn restock(state: &AppState, r: &OwedRestock) -> Result<(), ApiError> {
    let (s, l) = super::inventory::resolve(
        &state.engine.catalog(),
        r.sku.as_str(),
        r.location.as_str(),
        "",
    )?;
    let done = state
        .engine
        .adjust_keyed(
            s,
            l,
            r.sku.clone(),
            r.location.clone(),
            i64::from(r.qty),
            AdjustReason::Return,
            Some(r.key.clone()),
        )
        .await?;
    done.map(|_| ())
        .map_err(|x| ApiError::new(Code::InsufficientStock, format!("on_hand is {}", x.on_hand)))
}
