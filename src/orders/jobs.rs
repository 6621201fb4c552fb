//! The workflow's background jobs, each one round every interval until
//! its task is dropped, over the engines named each round (one node's; a
//! cluster leader's):
//!
//! - `retry`: captures owed (a shipment left while its provider could not
//!   be reached), refunds owed (goods returned then) and restocks owed,
//!   made once they can be, each under its own key (never twice), after
//!   reconciling an engine's orders with their holds when they may be
//!   unsettled (`reconcile`); every `[payments] retry_every_s`.
//! - `track`: parcels followed at their carriers every `[carriers]
//!   track_every_s`: the labelled shipments still carried
//!   (`Engine::parcels_in_transit`) are asked about, `TRACK_BATCH` numbers
//!   a call; a parcel picked up or on its way moves its shipment to
//!   `shipped`, a delivered one (of a delivery) to `delivered`, through the
//!   same path as the API's events (`shipments::move_shipment`: the payment
//!   captured, the reservation fulfilled). A carrier that fails is asked
//!   again next round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::returns::follow_of;
use super::shipments::{capture_of, move_shipment};
use super::{provider, reconcile, returns, Orders};
use crate::carriers::TRACK_BATCH;
use crate::domain::order::{RefundOutcome, Route, ShipStatus};
use crate::payments::PaymentError;

/// Makes the captures and refunds owed every `every` until the task is
/// dropped, for the orders of the engines `states` names each round (one
/// node's; a cluster node's owned shards), after reconciling an engine's
/// orders with their holds when they may be unsettled (`orders::reconcile`).
pub async fn retry(states: impl Fn() -> Vec<Arc<Orders>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        for orders in states() {
            if let Some(mark) = orders.unsettled_since.get() {
                match reconcile::reconcile(&orders, mark.0).await {
                    Ok((settled, lost)) => {
                        orders.unsettled_since.settled(mark);
                        if settled + lost > 0 {
                            tracing::info!(
                                settled,
                                lost,
                                "orders' holds reconciled with their orders"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.detail, "reconciling orders' holds: tried again next round")
                    }
                }
            }
            let made = retry_once(&orders).await;
            if made > 0 {
                tracing::info!(made, "owed captures, refunds and restocks made");
            }
        }
    }
}

/// One round: the captures and refunds made. Each under the key it was
/// first tried with, so the provider never does one twice; a refund whose
/// answer is lost again where that could refund twice is recorded unclear
/// and not sent again.
pub async fn retry_once(orders: &Orders) -> usize {
    let mut made = 0;
    let owing = match orders.engine.orders_owing().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "the orders owing could not be listed: asked again next round");
            return 0;
        }
    };
    for o in owing {
        made += returns::settle_restocks(orders, &o).await;
        let id = o.id.clone();
        let Some(p) = provider(orders, &o.payment.provider) else {
            continue;
        };
        let amount = o.capture_owed();
        if amount > 0 {
            if let Err(e) = p.capture(&capture_of(&o, amount)).await {
                tracing::warn!(order = %id, error = %e, "an owed capture failed: tried again next round");
                continue;
            }
            let now = orders.engine.clock().now_ms();
            match orders
                .engine
                .order_change(&id, move |o| Ok(o.decide_capture(now)))
                .await
            {
                Ok(_) => made += 1,
                Err(e) => {
                    tracing::warn!(order = %id, error = %e, "an owed capture made but not recorded: recorded next round")
                }
            }
        }
        for r in o.payment.refunds_owed.iter().filter(|r| !r.unclear) {
            let outcome = match p.refund(&follow_of(&o, r.key.clone(), r.amount)).await {
                Ok(()) => RefundOutcome::Made,
                Err(PaymentError::Unclear(e)) => {
                    tracing::error!(order = %id, key = %r.key, error = %e, "an owed refund's answer was lost: left for the back office to settle");
                    RefundOutcome::Unclear
                }
                Err(e) => {
                    tracing::warn!(order = %id, error = %e, "an owed refund failed: tried again next round");
                    continue;
                }
            };
            let now = orders.engine.clock().now_ms();
            match orders
                .engine
                .order_change(&id, {
                    let key = r.key.clone();
                    move |o| o.decide_refund(&key, outcome, now)
                })
                .await
            {
                Ok(Some(Ok(_))) => made += usize::from(outcome == RefundOutcome::Made),
                // Settled meanwhile (the back office), or the order gone.
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(order = %id, error = %e, "an owed refund settled at the provider but not recorded: asked again next round under its key")
                }
            }
        }
    }
    made
}

/// Tracks every `every` until the task is dropped, the parcels of the
/// engines `states` names each round (one node's; a cluster node's owned
/// shards).
pub async fn track(states: impl Fn() -> Vec<Arc<Orders>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        for orders in states() {
            let moved = track_once(&orders).await;
            if moved > 0 {
                tracing::info!(moved, "tracking moved shipments");
            }
        }
    }
}

/// One round: the moves made.
pub async fn track_once(orders: &Orders) -> usize {
    let mut by_carrier: HashMap<String, Vec<_>> = HashMap::new();
    let carried = match orders.engine.parcels_in_transit().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "the parcels in transit could not be listed: asked again next round");
            return 0;
        }
    };
    for p in carried {
        by_carrier.entry(p.2.carrier.clone()).or_default().push(p);
    }
    let mut moved = 0;
    for (name, parcels) in by_carrier {
        let Some(carrier) = orders.shipping.by_name(&name) else {
            continue;
        };
        for chunk in parcels.chunks(TRACK_BATCH) {
            let numbers: Vec<String> = chunk.iter().map(|p| p.2.tracking.clone()).collect();
            let places = match carrier.track(&numbers).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(carrier = %name, error = %e, "tracking failed: asked again next round");
                    continue;
                }
            };
            for (tracking, place) in places {
                let Some((order, n, _, status, route)) =
                    chunk.iter().find(|p| p.2.tracking == tracking)
                else {
                    continue;
                };
                let Some(reached) = place.reached() else {
                    continue;
                };
                // Left its building first (a delivered parcel was shipped).
                let mut steps = Vec::new();
                if *status < ShipStatus::Shipped {
                    steps.push(ShipStatus::Shipped);
                }
                if reached == ShipStatus::Delivered && *route == Route::Deliver {
                    steps.push(ShipStatus::Delivered);
                }
                if steps.is_empty() {
                    continue;
                }
                let Ok(Some(mut o)) = orders.engine.order(order).await else {
                    continue;
                };
                for to in steps {
                    match move_shipment(orders, o, *n, to).await {
                        Ok(next) => {
                            o = next;
                            moved += 1;
                        }
                        Err(e) => {
                            tracing::warn!(%order, shipment = n, to = to.as_str(), error = %e.detail, "a tracked move failed: tried again next round");
                            break;
                        }
                    }
                }
            }
        }
    }
    moved
}
