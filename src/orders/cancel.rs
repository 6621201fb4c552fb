//! Cancelling an order before anything left: its authorization voided,
//! its holds released, its labels cancelled.

use super::{not_found, provider, provider_error, refused, stock, Orders, CURRENCY};
use crate::domain::ids::ReservationId;
use crate::domain::order::{Order, OrderEvent};
use crate::domain::reservation::Transition;
use crate::payments::Follow;
use crate::problem::ApiError;

/// Cancels order `id`: the order as recorded cancelled, or why not.
pub async fn cancel(orders: &Orders, id: &str) -> Result<Order, ApiError> {
    let now = orders.engine.clock().now_ms();
    let o = orders
        .engine
        .order(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(OrderEvent::Cancelled { voided: true, .. }) =
        o.decide_cancel(now).map_err(refused)?
    {
        // A free order was never sent to the provider: nothing to void.
        let sent = !o.payment.reference.is_empty();
        if let Some(p) = provider(orders, &o.payment.provider).filter(|_| sent) {
            p.void(&Follow {
                idempotency_key: format!("{id}:void"),
                order: id.to_string(),
                reference: o.payment.reference.clone(),
                currency: CURRENCY.into(),
                // What a void releases (a provider that charged at once,
                // Scalapay, refunds it).
                amount: o.payment.authorized,
            })
            .await
            .map_err(provider_error)?;
        }
    }
    let (o, _) = orders
        .engine
        .order_change(id, move |o| o.decide_cancel(now))
        .await?
        .ok_or_else(|| not_found(id))?
        .map_err(refused)?;
    for s in &o.shipments {
        if let Some(r) = s
            .reservation
            .as_deref()
            .and_then(|r| ReservationId::parse(r).ok())
        {
            // Released at once; a held one would also expire by its TTL.
            let released = stock::transition(orders, r.clone(), Transition::Release).await;
            if let Err(e) = released {
                // Recorded as cancelled: the retry job's reconciliation
                // releases it (a 503 would say the cancel was not made).
                tracing::warn!(order = %o.id, reservation = %r, error = %e.detail, "a cancelled order's hold was not released: left to the reconciliation");
                orders.unsettled_since.failed(o.updated_ms);
            }
        }
        // A label made for it is cancelled at its carrier (nothing has
        // left, so nothing was picked up); a failure is logged: an unused
        // label is not charged.
        if let Some(p) = &s.parcel {
            if let Some(c) = orders.shipping.by_name(&p.carrier) {
                if let Err(e) = c.cancel(&p.tracking).await {
                    tracing::warn!(order = %o.id, tracking = %p.tracking, error = %e, "could not cancel a label");
                }
            }
        }
    }
    Ok(o)
}
