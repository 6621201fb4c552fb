//! A shipment's moves: packed (labelled at its carrier first), shipped,
//! delivered, ready for pickup, collected; the first move that leaves
//! captures the payment, a move that leaves fulfils its reservation.

use super::returns::follow_of;
use super::stock::not_released;
use super::{not_found, provider, provider_error, refused, stock, Orders, CURRENCY};
use crate::carriers::{CarrierError, LabelRequest};
use crate::domain::ids::ReservationId;
use crate::domain::order::{Delivery, Minor, Order, OrderEvent, Parcel, Route, ShipStatus};
use crate::domain::reservation::{unreleased, Transition};
use crate::payments::{Follow, PaymentError};
use crate::problem::{ApiError, Code};

/// A SKU's weight on a label when the catalog has none.
const DEFAULT_WEIGHT_G: u32 = 1000;

/// Moves shipment `n` of order `id` to `to`: an event of the API, or where
/// its carrier tracked the parcel. Packing a delivery or a transfer
/// labels it at its carrier first (when one is configured for its
/// destination and both addresses are known; otherwise it is handled by
/// hand); the first move that leaves captures the payment; a move that
/// leaves fulfils the shipment's reservation.
///
/// `o` is the order as the caller read it; the move is decided again
/// under the order's lock when it is recorded.
pub async fn move_shipment(
    orders: &Orders,
    mut o: Order,
    n: u32,
    to: ShipStatus,
) -> Result<Order, ApiError> {
    let now = orders.engine.clock().now_ms();
    let id = o.id.clone();
    let id = id.as_str();
    let decided = o.decide_move(n, to, now).map_err(refused)?;
    if decided.is_some() {
        refuse_backordered(orders, &o, n, to).await?;
    }
    if to == ShipStatus::Packed && decided.is_some() {
        o = label(orders, o, n).await?;
    }
    // Capture first (idempotent by key) when this move is the first to
    // leave: the journal then records it captured.
    // A provider that cannot be reached does not hold the goods back: the
    // move is recorded owing the capture, made later (`jobs::retry`).
    let mut captured_here = None;
    let mut owing = false;
    if let Some(OrderEvent::ShipmentMoved { captured, .. }) = decided {
        if captured > 0 {
            let p = provider(orders, &o.payment.provider).ok_or_else(|| {
                ApiError::new(Code::Unavailable, "payment provider gone").retry_after(5)
            })?;
            match p.capture(&capture_of(&o, captured)).await {
                Ok(()) => captured_here = Some((p, captured)),
                // A capture asked again is never made twice (a key, or
                // the provider answers "already captured"): one that may
                // have been made is owed all the same.
                Err(PaymentError::Unavailable(why) | PaymentError::Unclear(why)) => {
                    tracing::warn!(order = %id, error = %why, "capture deferred: the goods leave, the capture is made once the provider answers");
                    owing = true;
                }
                Err(e) => return Err(provider_error(e)),
            }
        }
    }
    let from = o.shipments.iter().find(|s| s.id == n).map(|s| s.status);
    let changed = orders
        .engine
        .order_change(id, move |o| {
            if owing {
                o.decide_move_owing_capture(n, to, now)
            } else {
                o.decide_move(n, to, now)
            }
        })
        .await?
        .ok_or_else(|| not_found(id))?;
    let (o, event) = match changed {
        Ok(x) => x,
        Err(r) => {
            // Refused after the capture (a cancel won the race): the money
            // goes back.
            if let Some((p, amount)) = captured_here {
                p.refund(&Follow {
                    idempotency_key: format!("{id}:capture-undo"),
                    order: id.to_string(),
                    reference: o.payment.reference.clone(),
                    currency: CURRENCY.into(),
                    amount,
                })
                .await
                .map_err(provider_error)?;
            }
            return Err(refused(r));
        }
    };
    // The goods left their building: their reservation is fulfilled.
    if let (Some(_), Some(from), Some(s)) = (&event, from, o.shipments.iter().find(|s| s.id == n)) {
        if s.route.leaves_stock(from, to) {
            if let Some(r) = s
                .reservation
                .as_deref()
                .and_then(|r| ReservationId::parse(r).ok())
            {
                // Recorded as left: a fulfil not made here (the engine
                // busy, the hold not confirmed yet) is the retry job's
                // reconciliation's, never a refusal of a recorded move.
                let fulfilled = stock::transition(orders, r.clone(), Transition::Fulfil).await;
                if !matches!(fulfilled, Ok(true)) {
                    tracing::warn!(order = %id, reservation = %r, ?fulfilled, "a shipment's reservation was not fulfilled: left to the reconciliation");
                    orders.unsettled_since.failed(o.updated_ms);
                }
            }
        }
    }
    // A transfer to the pickup store made as its goods leave, received as
    // they reach the counter (after the fulfil: they left their building
    // first).
    if event.is_some() && !stock::settle_transfers(orders, &o, Some(n)).await {
        orders.unsettled_since.failed(o.updated_ms);
    }
    Ok(o)
}

/// Refuses (409 `backordered`) a move that would take shipment `n`'s
/// goods out of its building while some of its units, sold against
/// incoming supply, have not arrived, or (409 `not_released`) hold a
/// preorder before its release. Supply arriving only lowers them, and
/// time only brings the release: a move allowed here stays allowed.
async fn refuse_backordered(
    orders: &Orders,
    o: &Order,
    n: u32,
    to: ShipStatus,
) -> Result<(), ApiError> {
    let Some(s) = o.shipments.iter().find(|s| s.id == n) else {
        return Ok(());
    };
    if !s.route.leaves_stock(s.status, to) {
        return Ok(());
    }
    let Some(r) = s
        .reservation
        .as_deref()
        .and_then(|r| ReservationId::parse(r).ok())
    else {
        return Ok(());
    };
    let lines = match stock::reservation(orders, r).await? {
        Some((_, lines)) => lines,
        None => return Ok(()),
    };
    let now = orders.engine.clock().now_ms();
    let unreleased = unreleased(&lines, &orders.engine.catalog(), now);
    if let Some((sku, at)) = unreleased {
        return Err(not_released(
            &format!("shipment {n} of order {}", o.id),
            &sku,
            at,
        ));
    }
    let units: u32 = lines.iter().map(|l| l.backordered).sum();
    if units == 0 {
        return Ok(());
    }
    Err(ApiError::new(
        Code::Backordered,
        format!(
            "shipment {n} of order {} has {units} units sold against supply not arrived yet: it cannot leave before they are received",
            o.id
        ),
    )
    .with("backordered", serde_json::json!(units)))
}

/// The capture of order `o`'s payment (`amount`), under the key every
/// attempt of it shares.
pub fn capture_of(o: &Order, amount: Minor) -> Follow {
    follow_of(o, format!("{}:capture", o.id), amount)
}

fn carrier_error(e: CarrierError) -> ApiError {
    match e {
        CarrierError::Unavailable(m) => ApiError::new(Code::Unavailable, m).retry_after(30),
        CarrierError::Rejected(m) => ApiError::new(Code::InvalidTransition, m),
    }
}

/// Labels shipment `n` of `o` at the carrier of its destination, unless
/// it has a label, goes nowhere (a pickup at the store itself), has no
/// carrier, or an address is missing (the shipment is then handled by
/// hand). The label is kept on disk before the order records it, so a
/// recorded parcel always has its label; a `packed` retried after that
/// finds the label made (one made but not recorded before a crash is made
/// again: carriers charge a label only once its parcel is scanned).
async fn label(orders: &Orders, o: Order, n: u32) -> Result<Order, ApiError> {
    let Some(s) = o.shipments.iter().find(|s| s.id == n) else {
        return Ok(o);
    };
    if s.parcel.is_some() || s.route == Route::PickupHere {
        return Ok(o);
    }
    let (from, to, weight_g) = {
        let c = orders.engine.catalog();
        let from = c
            .location_by_id(s.location.as_str())
            .and_then(|l| l.address.clone());
        let to = match &o.delivery {
            Delivery::Ship { address, .. } => address.clone(),
            Delivery::Pickup { location } => c
                .location_by_id(location.as_str())
                .and_then(|l| l.address.clone()),
        };
        let weight_g: u32 = s
            .lines
            .iter()
            .map(|(l, q)| {
                let w = o
                    .lines
                    .get(*l)
                    .and_then(|line| c.sku_by_id(line.sku.as_str()).and_then(|k| k.weight_g));
                w.unwrap_or(DEFAULT_WEIGHT_G).saturating_mul(*q)
            })
            .sum();
        (from, to, weight_g)
    };
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(o);
    };
    let Some(carrier) = orders.shipping.choose(o.channel.as_deref(), &to.country) else {
        return Ok(o);
    };
    let made = carrier
        .create_label(&LabelRequest {
            reference: format!("{}/{n}", o.id),
            from,
            to,
            weight_g,
        })
        .await
        .map_err(carrier_error)?;
    orders.shipping.keep_label(&o.id, n, &made).map_err(|e| {
        ApiError::new(Code::Unavailable, format!("keeping the label: {e}")).retry_after(5)
    })?;
    let parcel = Parcel {
        carrier: carrier.name().to_string(),
        tracking: made.tracking,
        format: made.format,
    };
    tracing::info!(order = %o.id, shipment = n, carrier = %parcel.carrier, tracking = %parcel.tracking, "labelled");
    let now = orders.engine.clock().now_ms();
    let (o, _) = orders
        .engine
        .order_change(&o.id, move |o| o.decide_label(n, parcel, now))
        .await?
        .ok_or_else(|| not_found(&o.id))?
        .map_err(refused)?;
    Ok(o)
}
