//! Parcels followed at their carriers: every `[carriers] track_every_s`,
//! the labelled shipments still carried (`Engine::parcels_in_transit`)
//! are asked about, 30 numbers a call; a parcel picked up or on its way
//! moves its shipment to `shipped`, a delivered one (of a delivery) to
//! `delivered`, through the same path as the API's events
//! (`orders::move_shipment`: the payment captured, the reservation
//! fulfilled). A carrier that fails is asked again next round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::orders::move_shipment;
use super::AppState;
use crate::carriers::TRACK_BATCH;
use crate::domain::order::{Route, ShipStatus};

/// Tracks every `every` until the task is dropped, the parcels of the
/// engines `states` names each round (one node's; a cluster node's owned
/// shards).
pub async fn run(states: impl Fn() -> Vec<Arc<AppState>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        for state in states() {
            let moved = track_once(&state).await;
            if moved > 0 {
                tracing::info!(moved, "tracking moved shipments");
            }
        }
    }
}

/// One round: the moves made.
pub async fn track_once(state: &AppState) -> usize {
    let mut by_carrier: HashMap<String, Vec<_>> = HashMap::new();
    for p in state.engine.parcels_in_transit() {
        by_carrier.entry(p.2.carrier.clone()).or_default().push(p);
    }
    let mut moved = 0;
    for (name, parcels) in by_carrier {
        let Some(carrier) = state.shipping.by_name(&name) else {
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
                let Ok(Some(mut o)) = state.engine.order(order) else {
                    continue;
                };
                for to in steps {
                    match move_shipment(state, o, *n, to).await {
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
