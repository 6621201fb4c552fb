//! The order workflow, from cart to doorstep or pickup counter (api.md,
//! Orders), over the engine and the payment and carrier traits; the HTTP
//! handlers parse, authorize, call these and render what they answer.
//!
//! Placing an order (`place`): plan it (the sourcing planner), hold each
//! shipment's lines as its own reservation (all shipments or none: the ones
//! held are released if another fails, then the cart is planned again),
//! authorize the payment, journal the order with the payment's answer as
//! one record, then confirm the reservations. A declined payment releases
//! every hold: nothing stays held. Moving a shipment out of its building
//! fulfils its reservation (on_hand falls) and, the first time, captures
//! the payment (`shipments`); a cancel releases the holds and voids the
//! authorization (`cancel`); a return restocks where the goods came back
//! (in the order's own journal record) and refunds (`returns`). Provider
//! calls carry idempotency keys derived from the order, so a retry never
//! charges twice. What could not be done at once (a provider down, a hold
//! not settled) is made by the background jobs (`jobs`), after
//! reconciling the orders' holds with them (`reconcile`).
//!
//! - `stock`: where an order's stock goes, and the one plan-then-hold loop.
//! - `view`: an order as the API shows it.

pub mod cancel;
pub mod jobs;
pub mod place;
pub mod reconcile;
pub mod returns;
pub mod shipments;
pub mod stock;
pub mod view;

use std::sync::Arc;

use crate::actors::Engine;
use crate::domain::order::Refused;
use crate::payments::{PaymentError, PaymentProvider};
use crate::problem::{ApiError, Code};
pub use reconcile::Unsettled;

/// What the workflow works with: the engine, the payment providers, the
/// carriers, and whether its orders' holds may need reconciling.
pub struct Orders {
    pub engine: Engine,
    /// Payment providers by the name an order gives.
    pub payments: Vec<(String, Arc<dyn PaymentProvider>)>,
    /// Scalapay's own side (the checkouts its shoppers approve), when
    /// configured.
    pub scalapay: Option<Arc<crate::payments::scalapay::Scalapay>>,
    /// How an order naming no provider gets one.
    pub payment_routing: crate::payments::Routing,
    /// The carriers that label and track shipments.
    pub shipping: crate::carriers::Shipping,
    /// Since when its orders' holds may not be what the orders say
    /// (`reconcile`, by the retry job; `i64::MAX`: they are): a leader's
    /// since a while before it took over, any engine's since a stock
    /// operation of an order failed after the order recorded it.
    pub unsettled_since: Unsettled,
}

/// Orders are priced in euros (api.md: `unit_price` has no currency).
pub(crate) const CURRENCY: &str = "EUR";

pub(crate) fn refused(r: Refused) -> ApiError {
    ApiError::new(Code::InvalidTransition, r.to_string())
}

pub fn provider_error(e: PaymentError) -> ApiError {
    match e {
        PaymentError::Unavailable(m) | PaymentError::Unclear(m) => {
            ApiError::new(Code::Unavailable, m).retry_after(5)
        }
        PaymentError::Rejected(m) => ApiError::new(Code::InvalidTransition, m),
    }
}

pub fn provider(orders: &Orders, name: &str) -> Option<Arc<dyn PaymentProvider>> {
    orders
        .payments
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no order {id}"))
}
