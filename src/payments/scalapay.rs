//! Scalapay (pay in 3), through its API v2 (`Authorization: Bearer
//! {key}`). The shopper approves at Scalapay: the checkout first asks
//! holdfast for a Scalapay order (`POST /v1/payments/scalapay/checkouts`
//! -> `POST /v2/orders`: a `token` and the `checkoutUrl` to send the
//! shopper to), then places the order naming that token
//! (`payment.method.token`). Placing it captures the approved Scalapay
//! order (`POST /v2/payments/capture`: `status` `APPROVED`, the token is
//! the reference), which charges the shopper's first instalment: with
//! Scalapay the money moves when the order is placed, so the capture when
//! it ships moves none. Refunds: `POST /v2/payments/{token}/refund` (a
//! cancel refunds the whole amount), each with our key as
//! `merchantRefundReference`.
//!
//! An approval for another amount than the order's is refunded at once
//! and the order refused. Errors: `{"errorCode", "message"}` (or
//! `{"message"}`).
//!
//! `base_url`: `https://integration.api.scalapay.com` (test),
//! `https://api.scalapay.com`.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::section::{http_url, string_defaults, CallsSection, Secrets};
use super::{bounded_key, Authorization, Authorize, Follow, PaymentError, PaymentProvider};
use crate::domain::address::Address;
use crate::domain::order::{format_minor, Minor};
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct ScalapayConfig {
    pub base_url: String,
    pub api_key: String,
    pub policy: Policy,
}

/// `[payments.scalapay]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalapaySection {
    pub base_url: String,
    #[serde(default = "api_key_env")]
    pub api_key_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    api_key_env = "HOLDFAST_SCALAPAY_API_KEY",
}

impl ScalapaySection {
    /// The adapter's configuration, its key read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<ScalapayConfig, String> {
        let at = "payments.scalapay";
        http_url(at, &self.base_url)?;
        Ok(ScalapayConfig {
            base_url: self.base_url.clone(),
            api_key: secrets.get(at, &self.api_key_env)?,
            policy: self.calls.policy(at)?,
        })
    }
}

pub struct Scalapay {
    cfg: ScalapayConfig,
    caller: Caller,
}

/// What the checkout asks Scalapay to approve.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// The order id it will be placed under.
    pub reference: String,
    pub amount: Minor,
    pub currency: String,
    pub given_names: String,
    pub surname: String,
    pub email: String,
    pub shipping: Option<Address>,
    /// Where Scalapay sends the shopper back.
    pub confirm_url: String,
    pub cancel_url: String,
}

/// Scalapay's answer: the token to place the order with, and where the
/// shopper approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub token: String,
    pub checkout_url: String,
    pub expires: String,
}

fn money(amount: Minor, currency: &str) -> Value {
    json!({"amount": format_minor(amount), "currency": currency})
}

/// "12.50" as 1250.
fn minor(v: &Value) -> Option<Minor> {
    crate::domain::order::parse_minor(v["amount"].as_str()?)
}

fn refused(what: &str, a: &Answer) -> PaymentError {
    let v = a.json();
    PaymentError::Rejected(format!(
        "scalapay {what} {}: {} {}",
        a.status,
        v["errorCode"].as_str().unwrap_or(""),
        v["message"].as_str().unwrap_or("no message")
    ))
}

impl Scalapay {
    pub fn new(cfg: ScalapayConfig) -> Result<Scalapay, String> {
        let caller = Caller::new("scalapay", cfg.policy)?;
        Ok(Scalapay { cfg, caller })
    }

    async fn post(
        &self,
        path: &str,
        body: &Value,
        idempotent: bool,
    ) -> Result<Answer, PaymentError> {
        let url = format!("{}{path}", self.cfg.base_url.trim_end_matches('/'));
        self.caller
            .send(idempotent, |c| {
                c.post(&url).bearer_auth(&self.cfg.api_key).json(body)
            })
            .await
            .map_err(PaymentError::from)
    }

    /// A Scalapay order for the shopper to approve.
    pub async fn checkout(&self, r: &CheckoutRequest) -> Result<Checkout, PaymentError> {
        let mut body = json!({
            "totalAmount": money(r.amount, &r.currency),
            "consumer": {"givenNames": r.given_names, "surname": r.surname, "email": r.email},
            "items": [{"name": format!("Order {}", r.reference), "sku": r.reference, "quantity": 1,
                       "price": money(r.amount, &r.currency)}],
            "merchant": {"redirectConfirmUrl": r.confirm_url, "redirectCancelUrl": r.cancel_url},
            "merchantReference": r.reference,
            "type": "online",
            "product": "pay-in-3",
        });
        if let Some(a) = &r.shipping {
            body["shipping"] = json!({
                "name": a.name, "line1": a.street, "suburb": a.city, "postcode": a.postal_code,
                "countryCode": a.country, "phoneNumber": a.phone,
            });
        }
        // A second order for the same cart is harmless (the shopper
        // approves one): sent again after an unclear failure too.
        let a = self.post("/v2/orders", &body, true).await?;
        let v = a.json();
        match (a.status, v["token"].as_str(), v["checkoutUrl"].as_str()) {
            (200 | 201, Some(t), Some(u)) => Ok(Checkout {
                token: t.to_string(),
                checkout_url: u.to_string(),
                expires: v["expires"].as_str().unwrap_or_default().to_string(),
            }),
            _ => Err(refused("orders", &a)),
        }
    }

    async fn refund_of(&self, r: &Follow, amount: Minor) -> Result<(), PaymentError> {
        let body = json!({
            "refundAmount": money(amount, &r.currency),
            "merchantReference": r.order,
            "merchantRefundReference": bounded_key(&r.idempotency_key, 50),
        });
        // Sent again only when surely not done.
        let a = self
            .post(
                &format!("/v2/payments/{}/refund", r.reference),
                &body,
                false,
            )
            .await?;
        match (a.status, a.json()["refundToken"].as_str()) {
            (200 | 201, Some(_)) => Ok(()),
            _ => Err(refused("refund", &a)),
        }
    }
}

impl PaymentProvider for Scalapay {
    fn name(&self) -> &str {
        "scalapay"
    }

    fn needs_method(&self) -> bool {
        true
    }

    fn authorize<'a>(
        &'a self,
        r: &'a Authorize,
    ) -> BoxFuture<'a, Result<Authorization, PaymentError>> {
        Box::pin(async move {
            let token = r.method_field("scalapay", "token", 64)?.to_string();
            let body = json!({"token": token, "merchantReference": r.order});
            // Capturing an approved order again answers it again.
            let a = self.post("/v2/payments/capture", &body, true).await?;
            let v = a.json();
            match (a.status, v["status"].as_str()) {
                (200, Some("APPROVED")) => {}
                (_, Some("DECLINED")) => {
                    return Ok(Authorization::Declined {
                        reason: v["message"].as_str().unwrap_or("declined").to_string(),
                    })
                }
                _ => return Err(refused("capture", &a)),
            }
            if minor(&v["totalAmount"]) != Some(r.amount) {
                // Approved for another cart: the money goes back.
                let back = Follow {
                    idempotency_key: format!("{}:mismatch", r.idempotency_key),
                    order: r.order.clone(),
                    reference: token.clone(),
                    amount: 0,
                    currency: r.currency.clone(),
                };
                if let Some(approved) = minor(&v["totalAmount"]) {
                    self.refund_of(&back, approved).await?;
                }
                return Err(PaymentError::Rejected(format!(
                    "scalapay: {token} was approved for {}, the order is {}",
                    v["totalAmount"]["amount"].as_str().unwrap_or("?"),
                    format_minor(r.amount)
                )));
            }
            Ok(Authorization::Authorized { reference: token })
        })
    }

    /// Nothing to move: Scalapay charged when the order was placed.
    fn capture<'a>(&'a self, _: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async { Ok(()) })
    }

    fn refund<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.refund_of(r, r.amount))
    }

    /// A cancel refunds the whole amount (it was charged when placed).
    fn void<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.refund_of(r, r.amount))
    }
}
