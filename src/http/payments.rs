//! Payments beside the order's own steps:
//!
//! - `POST /v1/payments/scalapay/checkouts`: a Scalapay order for the
//!   shopper to approve before the order is placed (Scalapay's pay in 3
//!   starts at Scalapay): its `token` (the order names it in
//!   `payment.method.token`), the `checkout_url` to send the shopper to,
//!   and when it expires. Channel and admin tokens.
//! - `retry`: captures owed (a shipment left while its provider could not
//!   be reached) and refunds owed (goods returned then) made once the
//!   provider answers, every `[payments] retry_every_s`, each under its own
//!   key (never twice).

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{parse_object, Errors};
use super::orders::{capture_of, follow_of, provider, provider_error};
use super::{AppState, Request};
use crate::domain::order::{parse_minor, RefundOutcome};
use crate::payments::scalapay::CheckoutRequest;
use crate::payments::PaymentError;

/// A URL's length at most.
const URL_MAX: usize = 500;

pub async fn scalapay_checkout(state: &AppState, req: &Request) -> ApiResult {
    req.principal.require_channel()?;
    let Some(scalapay) = &state.scalapay else {
        return Err(ApiError::new(
            Code::NotFound,
            "scalapay is not configured here",
        ));
    };
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let reference = e.id(&m, "reference", "", true);
    let amount = match m.get("amount") {
        Some(Value::String(a)) => match parse_minor(a).filter(|v| *v > 0) {
            Some(v) => Some(v),
            None => {
                e.add(
                    "amount",
                    "must be a positive decimal amount, e.g. \"59.90\"",
                );
                None
            }
        },
        _ => {
            e.add("amount", "is required: a decimal string, e.g. \"59.90\"");
            None
        }
    };
    let consumer = match m.get("consumer") {
        Some(Value::Object(c)) => {
            let given = e.string(c, "given_names", "consumer", 100, true);
            let surname = e.string(c, "surname", "consumer", 100, true);
            let email = e.string(c, "email", "consumer", 200, true);
            given.zip(surname).zip(email)
        }
        _ => {
            e.add("consumer", "is required: {given_names, surname, email}");
            None
        }
    };
    let shipping = e.address(&m, "shipping", "");
    let mut url = |k: &str| {
        let u = match m.get("redirect") {
            Some(Value::Object(r)) => e.string(r, k, "redirect", URL_MAX, true),
            _ => None,
        };
        if let Some(u) = &u {
            if !u.starts_with("https://") && !u.starts_with("http://") {
                e.add(format!("redirect.{k}"), "must be an http(s) URL");
                return None;
            }
        }
        u
    };
    let (confirm, cancel) = (url("confirm_url"), url("cancel_url"));
    if !matches!(m.get("redirect"), Some(Value::Object(_))) {
        e.add("redirect", "is required: {confirm_url, cancel_url}");
    }
    e.into_result()?;
    let (
        Some(reference),
        Some(amount),
        Some(((given, surname), email)),
        Some(confirm),
        Some(cancel),
    ) = (reference, amount, consumer, confirm, cancel)
    else {
        return Err(ApiError::new(Code::ValidationFailed, "checkout"));
    };
    let c = scalapay
        .checkout(&CheckoutRequest {
            reference,
            amount,
            currency: "EUR".into(),
            given_names: given,
            surname,
            email,
            shipping,
            confirm_url: confirm,
            cancel_url: cancel,
        })
        .await
        .map_err(provider_error)?;
    Ok(json_response(
        201,
        &json!({"token": c.token, "checkout_url": c.checkout_url, "expires": c.expires}),
    ))
}

/// Makes the captures and refunds owed every `every` until the task is
/// dropped, for the orders of the engines `states` names each round (one
/// node's; a cluster node's owned shards), after reconciling an engine's
/// orders with their holds when they may be unsettled (`orders::reconcile`).
pub async fn retry(states: impl Fn() -> Vec<Arc<AppState>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        for state in states() {
            if let Some(mark) = state.unsettled_since.get() {
                match super::orders::reconcile(&state, mark.0).await {
                    Ok((settled, lost)) => {
                        state.unsettled_since.settled(mark);
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
            let made = retry_once(&state).await;
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
pub async fn retry_once(state: &AppState) -> usize {
    let mut made = 0;
    for o in state.engine.orders_owing() {
        made += super::orders::settle_restocks(state, &o).await;
        let id = o.id.clone();
        let Some(p) = provider(state, &o.payment.provider) else {
            continue;
        };
        let amount = o.capture_owed();
        if amount > 0 {
            if let Err(e) = p.capture(&capture_of(&o, amount)).await {
                tracing::warn!(order = %id, error = %e, "an owed capture failed: tried again next round");
                continue;
            }
            let now = state.engine.clock().now_ms();
            match state
                .engine
                .order_change(&id, |o| Ok(o.decide_capture(now)))
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
            let now = state.engine.clock().now_ms();
            match state
                .engine
                .order_change(&id, |o| o.decide_refund(&r.key, outcome, now))
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
