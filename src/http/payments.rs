//! Payments beside the order's own steps:
//!
//! - `POST /v1/payments/scalapay/checkouts`: a Scalapay order for the
//!   shopper to approve before the order is placed (Scalapay's pay in 3
//!   starts at Scalapay): its `token` (the order names it in
//!   `payment.method.token`), the `checkout_url` to send the shopper to,
//!   and when it expires. Channel and admin tokens.
//!
//! The captures and refunds owed are made by `orders::jobs::retry`.

use serde_json::{json, Value};

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{parse_object, Errors};
use super::{AppState, Request};
use crate::domain::order::parse_minor;
use crate::limits::CHECKOUT_URL_MAX;
use crate::orders::provider_error;
use crate::payments::scalapay::CheckoutRequest;

pub async fn scalapay_checkout(state: &AppState, req: &Request) -> ApiResult {
    req.principal.require_channel()?;
    let Some(scalapay) = &state.orders.scalapay else {
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
            Some(Value::Object(r)) => e.string(r, k, "redirect", CHECKOUT_URL_MAX, true),
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
