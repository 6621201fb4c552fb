//! Orders' holds made what their orders say, after a failure between an
//! order's record and its stock operation, or a takeover.

use super::{stock, Orders};
use crate::domain::reservation::{Status, Transition};
use crate::domain::TimeMs;
use crate::limits::TAKEOVER_SETTLE_MS;
use crate::problem::ApiError;

/// Since when an engine's orders' holds may not be what the orders say
/// (`Orders::unsettled_since`), and how many failures marked it (a
/// pass of `reconcile` clears it only if none came meanwhile: the order
/// of one may have changed after the pass read the orders).
pub struct Unsettled(parking_lot::Mutex<(TimeMs, u64)>);

impl Default for Unsettled {
    fn default() -> Self {
        Unsettled(parking_lot::Mutex::new((TimeMs::MAX, 0)))
    }
}

impl Unsettled {
    /// A shard taken over at `now`.
    pub fn since_takeover(now: TimeMs) -> Self {
        Unsettled(parking_lot::Mutex::new((now - TAKEOVER_SETTLE_MS, 0)))
    }
    /// A stock operation of an order changed at `at` failed.
    pub fn failed(&self, at: TimeMs) {
        let mut m = self.0.lock();
        m.0 = m.0.min(at);
        m.1 += 1;
    }
    /// Since when, and the mark's count, if unsettled.
    pub fn get(&self) -> Option<(TimeMs, u64)> {
        let m = *self.0.lock();
        (m.0 != TimeMs::MAX).then_some(m)
    }
    /// Reconciled as of mark `seen` (`get`): settled, unless marked since.
    pub fn settled(&self, seen: (TimeMs, u64)) {
        let mut m = self.0.lock();
        if *m == seen {
            m.0 = TimeMs::MAX;
        }
    }
}

/// The holds of the orders changed at or after `since` made what their
/// orders say (`Order::hold_states`): a paid order's held holds confirmed,
/// a shipment that left fulfilled, a cancelled order's released; a hold
/// that expired before its order was confirmed is named lost; a transfer
/// to a pickup store made (`Order::transfers_owed`). On one node
/// at its start (`Engine::reconcile_orders`) an order's holds are its own
/// engine's; on a cluster they are in other shards, and a node that takes
/// a shard over, or an engine whose order's stock operation failed, asks
/// them here. Returns (settled, lost).
pub async fn reconcile(orders: &Orders, since: TimeMs) -> Result<(usize, usize), ApiError> {
    let (mut settled, mut lost) = (0, 0);
    for (order, r, want) in orders.engine.holds_to_settle(since).await? {
        let now = stock::status(orders, r.clone()).await?;
        let steps: &[Transition] = match (now, want) {
            (Some(Status::Held), Status::Confirmed) => &[Transition::Confirm],
            (Some(Status::Held), Status::Fulfilled) => &[Transition::Confirm, Transition::Fulfil],
            (Some(Status::Confirmed), Status::Fulfilled) => &[Transition::Fulfil],
            (Some(Status::Held | Status::Confirmed), Status::Released) => &[Transition::Release],
            (Some(Status::Expired | Status::Released), Status::Confirmed | Status::Fulfilled) => {
                lost += 1;
                tracing::warn!(%order, reservation = %r, "an order's hold expired before it was confirmed: the order has lost that stock");
                &[]
            }
            _ => &[],
        };
        for t in steps {
            stock::transition(orders, r.clone(), *t).await?;
        }
        settled += usize::from(!steps.is_empty());
    }
    for want in orders.engine.order_transfers_unsettled(since).await? {
        orders.engine.settle_order_transfer(want).await?;
        settled += 1;
    }
    Ok((settled, lost))
}

#[cfg(test)]
mod tests {
    use super::Unsettled;

    /// A pass settles the mark it read, not one a failure moved meanwhile
    /// (that failure's order may have changed after the pass read them).
    #[test]
    fn a_failure_during_a_pass_keeps_its_engine_unsettled() {
        let u = Unsettled::default();
        assert_eq!(u.get(), None);
        u.failed(500);
        let seen = u.get().expect("unsettled");
        assert_eq!(seen.0, 500);
        u.failed(700);
        u.settled(seen);
        assert_eq!(u.get().map(|m| m.0), Some(500), "the later failure is kept");
        let seen = u.get().expect("unsettled");
        u.settled(seen);
        assert_eq!(u.get(), None);
        let t = Unsettled::since_takeover(10_000_000);
        assert!(t.get().is_some_and(|m| m.0 < 10_000_000));
    }
}
