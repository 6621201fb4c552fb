//! Adyen, through its Checkout API (v71): `POST /payments` authorizes
//! (`resultCode` `Authorised`, or `Refused` with its `refusalReason`);
//! `POST /payments/{pspReference}/captures`, `/refunds` and `/cancels`
//! follow the authorization (201, `"status": "received"`: Adyen confirms
//! each with a webhook notification later). Every request carries the
//! merchant account, `X-API-Key` and an `Idempotency-Key` (Adyen answers
//! a repeated key with its first answer); errors come as
//! `{status, errorCode, message, errorType}`.
//!
//! The shopper's payment details (the Drop-in's `paymentMethod` object,
//! with its encrypted card fields) come in the order's `payment.method`
//! and go to Adyen as they are. Actions (3-D Secure, redirects) are not
//! handled by this flow: such an answer refuses the order.
//!
//! `base_url` is the Checkout API's, version included: the test
//! environment's `https://checkout-test.adyen.com/v71`, a live one's
//! `https://{prefix}-checkout-live.adyenpayments.com/checkout/v71`.

use base64::Engine as _;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::section::{http_url, string_defaults, CallsSection, Secrets};
use super::{bounded_key, Authorization, Authorize, Follow, PaymentError, PaymentProvider};
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct AdyenConfig {
    pub base_url: String,
    pub merchant_account: String,
    pub api_key: String,
    /// Where a shopper sent to a redirect comes back: `returnUrl`, which
    /// Adyen's `POST /payments` requires of every payment (this flow
    /// refuses answers that redirect, but Adyen refuses a payment without
    /// it before deciding anything).
    pub return_url: String,
    pub policy: Policy,
}

/// `[payments.adyen]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdyenSection {
    /// The Checkout API's, version included (see the module's doc).
    pub base_url: String,
    pub merchant_account: String,
    #[serde(default = "api_key_env")]
    pub api_key_env: String,
    /// The webhook's HMAC key (hex, as Adyen's Customer Area shows it).
    #[serde(default = "hmac_key_env")]
    pub hmac_key_env: String,
    /// Where a shopper sent to a redirect comes back (`returnUrl`):
    /// required, since Adyen refuses a payment without it; checked in
    /// `AdyenSection::resolve` so its absence is named at startup.
    pub return_url: Option<String>,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    api_key_env = "HOLDFAST_ADYEN_API_KEY",
    hmac_key_env = "HOLDFAST_ADYEN_HMAC_KEY",
}

impl AdyenSection {
    /// The adapter's configuration and the webhook's HMAC key, secrets
    /// read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<(AdyenConfig, Vec<u8>), String> {
        let at = "payments.adyen";
        http_url(at, &self.base_url)?;
        let return_url = self
            .return_url
            .clone()
            .filter(|u| {
                (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= RETURN_URL_MAX
            })
            .ok_or_else(|| {
                format!(
                    "{at}.return_url is required: an http(s) URL of at most {} characters \
                     where a shopper sent to a redirect comes back (Adyen refuses \
                     every payment without returnUrl)",
                    RETURN_URL_MAX
                )
            })?;
        let config = AdyenConfig {
            base_url: self.base_url.clone(),
            merchant_account: self.merchant_account.clone(),
            api_key: secrets.get(at, &self.api_key_env)?,
            return_url,
            policy: self.calls.policy(at)?,
        };
        let key = hmac_key(&secrets.get(at, &self.hmac_key_env)?)
            .ok_or_else(|| format!("{at}: {} must hold the HMAC key in hex", self.hmac_key_env))?;
        Ok((config, key))
    }
}

pub struct Adyen {
    cfg: AdyenConfig,
    caller: Caller,
}

/// Adyen takes idempotency keys of 64 characters at most.
const IDEMPOTENCY_MAX: usize = 64;

/// Adyen takes a `returnUrl` of 8000 characters at most.
pub const RETURN_URL_MAX: usize = 8000;

/// An error answer (`{status, errorCode, message, errorType}`) as a
/// refusal: what Adyen refused, retrying cannot change.
fn refused(a: &Answer) -> PaymentError {
    let v = a.json();
    PaymentError::Rejected(format!(
        "adyen {} {}: {}",
        a.status,
        v["errorCode"].as_str().unwrap_or("?"),
        v["message"].as_str().unwrap_or("no message")
    ))
}

impl Adyen {
    pub fn new(cfg: AdyenConfig) -> Result<Adyen, String> {
        let caller = Caller::new("adyen", cfg.policy)?;
        Ok(Adyen { cfg, caller })
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> Result<Answer, PaymentError> {
        let url = format!("{}{path}", self.cfg.base_url.trim_end_matches('/'));
        let key = bounded_key(key, IDEMPOTENCY_MAX);
        self.caller
            .send(true, |c| {
                c.post(&url)
                    .header("X-API-Key", &self.cfg.api_key)
                    .header("Idempotency-Key", &key)
                    .json(&body)
            })
            .await
            .map_err(PaymentError::from)
    }

    /// A capture, refund or cancel of the authorization `r.reference`.
    async fn modify(&self, what: &str, r: &Follow) -> Result<(), PaymentError> {
        // The order id as the reference: Adyen's notifications of the
        // modification name it (`merchantReference`).
        let mut body = json!({
            "merchantAccount": self.cfg.merchant_account,
            "reference": r.order,
        });
        if what != "cancels" {
            body["amount"] = json!({ "currency": r.currency, "value": r.amount });
        }
        let a = self
            .post(
                &format!("/payments/{}/{what}", r.reference),
                &r.idempotency_key,
                body,
            )
            .await?;
        match (a.status, a.json()["status"].as_str()) {
            (200 | 201, Some("received")) => Ok(()),
            (200 | 201, other) => Err(PaymentError::Rejected(format!(
                "adyen {what}: status {other:?}"
            ))),
            _ => Err(refused(&a)),
        }
    }
}

impl PaymentProvider for Adyen {
    fn name(&self) -> &str {
        "adyen"
    }

    fn needs_method(&self) -> bool {
        true
    }

    fn authorize<'a>(
        &'a self,
        r: &'a Authorize,
    ) -> BoxFuture<'a, Result<Authorization, PaymentError>> {
        Box::pin(async move {
            let method = r.method_for("adyen")?;
            let body = json!({
                "merchantAccount": self.cfg.merchant_account,
                "reference": r.order,
                "amount": { "currency": r.currency, "value": r.amount },
                "paymentMethod": method,
                "returnUrl": self.cfg.return_url,
                "shopperInteraction": "Ecommerce",
            });
            let a = self.post("/payments", &r.idempotency_key, body).await?;
            if a.status != 200 {
                return Err(refused(&a));
            }
            let v = a.json();
            let psp = v["pspReference"].as_str().unwrap_or_default().to_string();
            match v["resultCode"].as_str() {
                Some("Authorised") if !psp.is_empty() => {
                    Ok(Authorization::Authorized { reference: psp })
                }
                Some(code @ ("Refused" | "Cancelled" | "Error")) => Ok(Authorization::Declined {
                    reason: v["refusalReason"].as_str().unwrap_or(code).to_string(),
                }),
                other => Err(PaymentError::Rejected(format!(
                    "adyen answered {other:?}: payments needing a shopper action (3-D Secure, redirects) are not taken by this flow"
                ))),
            }
        })
    }

    fn capture<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.modify("captures", r))
    }

    fn refund<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.modify("refunds", r))
    }

    fn void<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.modify("cancels", r))
    }
}

/// One of Adyen's notifications (a `NotificationRequestItem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notification's own reference (for an `AUTHORISATION`, the
    /// payment's).
    pub psp_reference: String,
    /// The payment a modification's notification is about (empty for an
    /// `AUTHORISATION`).
    pub original_reference: String,
    pub merchant_account: String,
    /// The order id (holdfast sends it as the reference of the payment
    /// and of every modification).
    pub merchant_reference: String,
    pub value: i64,
    pub currency: String,
    pub event_code: String,
    pub success: bool,
}

impl Notification {
    /// The payment it is about.
    pub fn payment(&self) -> &str {
        if self.original_reference.is_empty() {
            &self.psp_reference
        } else {
            &self.original_reference
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("not an Adyen notification: {0}")]
    Malformed(String),
    /// A signature missing or not the HMAC of the item with our key.
    #[error("notification {0}: the HMAC signature does not match")]
    Forged(String),
}

/// What Adyen signs of an item: eight fields joined by `:`.
fn signed_data(item: &Value) -> String {
    let text = |k: &str| item[k].as_str().unwrap_or_default().to_string();
    let value = match &item["amount"]["value"] {
        Value::Number(n) => n.to_string(),
        v => v.as_str().unwrap_or_default().to_string(),
    };
    [
        text("pspReference"),
        text("originalReference"),
        text("merchantAccountCode"),
        text("merchantReference"),
        value,
        item["amount"]["currency"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        text("eventCode"),
        text("success"),
    ]
    .join(":")
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The `hmacSignature` of an item under `key` (base64).
pub fn sign(item: &Value, key: &[u8]) -> String {
    let mut m = mac(key);
    m.update(signed_data(item).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// The key as Adyen's Customer Area shows it: hex.
pub fn hmac_key(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.is_empty() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The items of a notification body (`{"live", "notificationItems":
/// [{"NotificationRequestItem": {...}}]}`), every one's signature checked
/// (in constant time) before any is returned.
pub fn notifications(body: &[u8], key: &[u8]) -> Result<Vec<Notification>, NotificationError> {
    let bad = |m: &str| NotificationError::Malformed(m.to_string());
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let items = v["notificationItems"]
        .as_array()
        .ok_or_else(|| bad("no notificationItems"))?;
    let mut out = Vec::with_capacity(items.len());
    for wrapped in items {
        let item = &wrapped["NotificationRequestItem"];
        let psp = item["pspReference"]
            .as_str()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("an item without pspReference"))?;
        let given = item["additionalData"]["hmacSignature"]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| NotificationError::Forged(psp.to_string()))?;
        let mut m = mac(key);
        m.update(signed_data(item).as_bytes());
        m.verify_slice(&given)
            .map_err(|_| NotificationError::Forged(psp.to_string()))?;
        let text = |k: &str| item[k].as_str().unwrap_or_default().to_string();
        out.push(Notification {
            psp_reference: psp.to_string(),
            original_reference: text("originalReference"),
            merchant_account: text("merchantAccountCode"),
            merchant_reference: text("merchantReference"),
            value: item["amount"]["value"].as_i64().unwrap_or(0),
            currency: item["amount"]["currency"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            event_code: text("eventCode"),
            success: item["success"].as_str() == Some("true"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_is_taken_only_with_its_signature() {
        let key = hmac_key("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056")
            .expect("hex");
        let mut item = json!({
            "pspReference": "7914073381342284", "originalReference": "",
            "merchantAccountCode": "TestMerchant", "merchantReference": "TestPayment-1407325143704",
            "amount": {"value": 1130, "currency": "EUR"}, "eventCode": "AUTHORISATION",
            "success": "true", "additionalData": {}
        });
        assert_eq!(
            signed_data(&item),
            "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
        );
        item["additionalData"]["hmacSignature"] = json!(sign(&item, &key));
        let body = json!({"live": "false", "notificationItems": [{"NotificationRequestItem": item.clone()}]});
        let got = notifications(body.to_string().as_bytes(), &key).expect("signed");
        assert_eq!(
            (got[0].payment(), got[0].success),
            ("7914073381342284", true)
        );
        // Any field changed, or another key: forged.
        item["amount"]["value"] = json!(1);
        let body = json!({"notificationItems": [{"NotificationRequestItem": item}]});
        assert!(matches!(
            notifications(body.to_string().as_bytes(), &key),
            Err(NotificationError::Forged(_))
        ));
        assert!(hmac_key("abc").is_none() && hmac_key("zz").is_none());
    }

    #[test]
    fn long_idempotency_keys_are_cut_and_told_apart() {
        assert_eq!(
            bounded_key("O-1:authorize", IDEMPOTENCY_MAX),
            "O-1:authorize"
        );
        let a = bounded_key(&format!("{}:authorize:1", "x".repeat(70)), IDEMPOTENCY_MAX);
        let b = bounded_key(&format!("{}:authorize:2", "x".repeat(70)), IDEMPOTENCY_MAX);
        assert!(a.len() <= 64 && b.len() <= 64, "{a} {b}");
        assert_ne!(a, b);
    }
}
