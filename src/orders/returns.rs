//! Returns and refunds: the goods back in stock where they came back (in
//! the order's own journal record), the refund made, or owed when the
//! provider cannot be reached; a refund whose answer was lost settled by
//! the back office.

use super::{not_found, provider, provider_error, refused, stock, Orders, CURRENCY};
use crate::domain::ids::LocationId;
use crate::domain::order::{Minor, Order, OrderEvent, OwedRefund, RefundOutcome};
use crate::payments::{Follow, PaymentError};
use crate::problem::{ApiError, Code, FieldError};

/// Takes back `wanted` ((index in the request, SKU, qty)) of order `id` at
/// `location`: the order as recorded, or why not.
pub async fn take(
    orders: &Orders,
    id: &str,
    location: LocationId,
    wanted: &[(usize, String, u32)],
) -> Result<Order, ApiError> {
    let now = orders.engine.clock().now_ms();
    let o = orders
        .engine
        .order(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    // Each returned SKU against the order's lines of it, first line first.
    let mut asked: Vec<(usize, u32)> = Vec::new();
    for (i, sku, qty) in wanted {
        let line = o
            .lines
            .iter()
            .position(|l| l.sku.as_str() == sku)
            .ok_or_else(|| {
                ApiError::validation(vec![FieldError {
                    field: format!("lines[{i}].sku"),
                    message: format!("{sku} is not in order {id}"),
                }])
            })?;
        asked.push((line, *qty));
    }
    let decided = o
        .decide_return(&asked, location.clone(), now)
        .map_err(refused)?;
    // The goods are back at the counter: a provider that cannot be
    // reached does not send them away again. The return is recorded owing
    // its refund, made later by the retry loop under the same key; one
    // whose answer was lost where sending it again could refund twice is
    // recorded unclear, for the back office to settle.
    let mut owed = None;
    if let OrderEvent::Returned { refund, .. } = &decided {
        if *refund > 0 {
            let p = provider(orders, &o.payment.provider).ok_or_else(|| {
                ApiError::new(Code::Unavailable, "payment provider gone").retry_after(5)
            })?;
            let key = o.refund_key(*refund);
            match p.refund(&follow_of(&o, key.clone(), *refund)).await {
                Ok(()) => {}
                Err(e @ PaymentError::Rejected(_)) => return Err(provider_error(e)),
                Err(e) => {
                    let unclear = matches!(e, PaymentError::Unclear(_));
                    tracing::warn!(order = %id, error = %e, unclear, "refund owed: the return is recorded, the refund made once the provider answers");
                    owed = Some(OwedRefund {
                        key,
                        amount: *refund,
                        unclear,
                    });
                }
            }
        }
    }
    let (o, _) = orders
        .engine
        .order_change(id, move |o| {
            let mut e = o.decide_return(&asked, location, now)?;
            if let OrderEvent::Returned {
                owed: w, refund, ..
            } = &mut e
            {
                // What was decided again is what was sent (a return
                // racing this one would have changed the amount).
                *w = owed.clone().filter(|_| *refund > 0).map(|x| OwedRefund {
                    amount: *refund,
                    ..x
                });
            }
            Ok(Some(e))
        })
        .await?
        .ok_or_else(|| not_found(id))?
        .map_err(refused)?;
    let o = if o.restocks_owed.is_empty() {
        o
    } else {
        settle_restocks(orders, &o).await;
        orders.engine.order(id).await?.unwrap_or(o)
    };
    Ok(o)
}

/// What the provider's back office shows of an owed refund whose answer
/// was lost (`key`): `made` (it counts as refunded) or not (owed again:
/// the retry job makes it).
pub async fn settle_refund(
    orders: &Orders,
    id: &str,
    key: &str,
    made: bool,
) -> Result<Order, ApiError> {
    let outcome = if made {
        RefundOutcome::Made
    } else {
        RefundOutcome::NotMade
    };
    let now = orders.engine.clock().now_ms();
    let (o, _) = orders
        .engine
        .order_change(id, {
            let key = key.to_string();
            move |o| o.decide_refund(&key, outcome, now)
        })
        .await?
        .ok_or_else(|| not_found(id))?
        .map_err(refused)?;
    Ok(o)
}

/// Makes the restocks `o` owes (`Order::restocks_owed`): each a keyed
/// adjustment of its SKU's stock, recorded made on the order once its
/// shard took it; one that fails stays owed for the retry loop. Returns
/// how many were made.
pub async fn settle_restocks(orders: &Orders, o: &Order) -> usize {
    let mut made = 0;
    for r in &o.restocks_owed {
        if let Err(e) = stock::restock(orders, r).await {
            tracing::warn!(order = %o.id, key = %r.key, error = %e.detail, "a restock owed: made by the retry loop");
            continue;
        }
        let now = orders.engine.clock().now_ms();
        match orders
            .engine
            .order_change(&o.id, {
                let key = r.key.clone();
                move |o| Ok(o.decide_restocked(&key, now))
            })
            .await
        {
            Ok(_) => made += 1,
            // Made under its key: sent again, it is not made twice.
            Err(e) => {
                tracing::warn!(order = %o.id, key = %r.key, error = %e, "a restock made but not recorded: recorded next round")
            }
        }
    }
    made
}

/// The provider's call about `o`'s payment for `amount` under `key`.
pub fn follow_of(o: &Order, key: String, amount: Minor) -> Follow {
    Follow {
        idempotency_key: key,
        order: o.id.clone(),
        reference: o.payment.reference.clone(),
        currency: CURRENCY.into(),
        amount,
    }
}
