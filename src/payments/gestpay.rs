//! GestPay (Axerve E-commerce Solutions), through its REST API
//! (`/api/v1/payment/...`, `Authorization: apikey {key}`): an
//! authorization is `payment/create` (amount, currency, our
//! `shopTransactionID`: its `paymentToken`) then `payment/submit` with
//! that token and the shopper's details (the order's `payment.method`: the
//! `paymentTypeDetails` object, a card token from Axerve's page, say):
//! `transactionResult` `OK` (its `bankTransactionID` is the reference) or
//! `KO`. Then `payment/capture` (settle), `payment/refund`,
//! `payment/cancel` (an authorization not captured). Every answer is
//! `{"error": {"code", "description"}, "payload": {...}}`, code "0" when
//! done.
//!
//! GestPay takes no idempotency key: the `shopTransactionID` (our key,
//! cut to 50 characters) is ours, so before creating a payment the adapter
//! asks `payment/detail` for it: a retry after a lost answer finds the
//! first authorization instead of making a second. A capture answered
//! "already notified" (66) was made before. Calls that are not
//! idempotent are retried only when they surely did nothing (`wire`).
//!
//! `base_url`: `https://sandbox.gestpay.net` (test), `https://ecomms2s.sella.it`.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::section::{http_url, string_defaults, CallsSection, Secrets};
use super::{bounded_key, Authorization, Authorize, Follow, PaymentError, PaymentProvider};
use crate::domain::order::format_minor;
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct GestpayConfig {
    pub base_url: String,
    pub shop_login: String,
    pub api_key: String,
    pub policy: Policy,
}

/// `[payments.gestpay]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GestpaySection {
    pub base_url: String,
    pub shop_login: String,
    #[serde(default = "api_key_env")]
    pub api_key_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    api_key_env = "HOLDFAST_GESTPAY_API_KEY",
}

impl GestpaySection {
    /// The adapter's configuration, its key read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<GestpayConfig, String> {
        let at = "payments.gestpay";
        http_url(at, &self.base_url)?;
        Ok(GestpayConfig {
            base_url: self.base_url.clone(),
            shop_login: self.shop_login.clone(),
            api_key: secrets.get(at, &self.api_key_env)?,
            policy: self.calls.policy(at)?,
        })
    }
}

pub struct Gestpay {
    cfg: GestpayConfig,
    caller: Caller,
}

/// GestPay's `shopTransactionID` is 50 characters at most.
const SHOP_TRANSACTION_MAX: usize = 50;

/// "Preauthorization already notified": a capture made before.
const ALREADY_CAPTURED: &str = "66";

/// An answer's `error.code` and `error.description`.
fn error_of(v: &Value) -> (String, String) {
    (
        v["error"]["code"].as_str().unwrap_or("?").to_string(),
        v["error"]["description"]
            .as_str()
            .unwrap_or("no description")
            .to_string(),
    )
}

fn refused(what: &str, a: &Answer) -> PaymentError {
    let (code, description) = error_of(&a.json());
    PaymentError::Rejected(format!("gestpay {what} {}: {code} {description}", a.status))
}

impl Gestpay {
    pub fn new(cfg: GestpayConfig) -> Result<Gestpay, String> {
        let caller = Caller::new("gestpay", cfg.policy)?;
        Ok(Gestpay { cfg, caller })
    }

    async fn post(
        &self,
        op: &str,
        body: Value,
        token: Option<&str>,
        idempotent: bool,
    ) -> Result<Answer, PaymentError> {
        let url = format!(
            "{}/api/v1/payment/{op}",
            self.cfg.base_url.trim_end_matches('/')
        );
        self.caller
            .send(idempotent, |c| {
                let r = c
                    .post(&url)
                    .header("Authorization", format!("apikey {}", self.cfg.api_key))
                    .json(&body);
                match token {
                    Some(t) => r.header("paymentToken", t),
                    None => r,
                }
            })
            .await
            .map_err(PaymentError::from)
    }

    /// The outcome of an authorization under `shop_id` made before, if
    /// GestPay has one.
    async fn earlier(&self, shop_id: &str) -> Result<Option<Authorization>, PaymentError> {
        let body = json!({"shopLogin": self.cfg.shop_login, "shopTransactionID": shop_id});
        let a = self.post("detail", body, None, true).await?;
        let v = a.json();
        if error_of(&v).0 != "0" {
            return Ok(None); // none under that id
        }
        Ok(outcome(&v["payload"]).ok())
    }

    /// A capture, refund or cancel of the authorization `r.reference`.
    async fn follow(&self, op: &str, r: &Follow) -> Result<(), PaymentError> {
        let mut body = json!({
            "shopLogin": self.cfg.shop_login,
            "bankTransactionID": r.reference,
        });
        if op == "cancel" {
            body["cancelReason"] = json!("order cancelled");
        } else {
            body["amount"] = json!(format_minor(r.amount));
            body["currency"] = json!(r.currency);
        }
        if op == "refund" {
            body["refundReason"] = json!("goods returned");
        }
        // A cancel asked twice finds nothing to cancel the second time:
        // only it is sent again after an unclear failure.
        let a = self.post(op, body, None, op == "cancel").await?;
        let v = a.json();
        let (code, _) = error_of(&v);
        match (code.as_str(), v["payload"]["transactionResult"].as_str()) {
            ("0", Some("OK")) => Ok(()),
            (ALREADY_CAPTURED, _) if op == "capture" => Ok(()),
            _ => Err(refused(op, &a)),
        }
    }
}

/// A submit's (or a detail's) payload as an outcome; `Err` when it holds
/// none (a 3-D Secure or redirect step is needed).
fn outcome(p: &Value) -> Result<Authorization, String> {
    match p["transactionResult"].as_str() {
        Some("OK") => Ok(Authorization::Authorized {
            reference: p["bankTransactionID"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }),
        Some("KO") => Ok(Authorization::Declined {
            reason: p["transactionErrorDescription"]
                .as_str()
                .filter(|d| !d.is_empty())
                .unwrap_or("declined")
                .to_string(),
        }),
        _ => Err(p["transactionErrorDescription"]
            .as_str()
            .unwrap_or("no result")
            .to_string()),
    }
}

impl PaymentProvider for Gestpay {
    fn name(&self) -> &str {
        "gestpay"
    }

    fn needs_method(&self) -> bool {
        true
    }

    fn authorize<'a>(
        &'a self,
        r: &'a Authorize,
    ) -> BoxFuture<'a, Result<Authorization, PaymentError>> {
        Box::pin(async move {
            let details = r.method_for("gestpay")?;
            let shop_id = bounded_key(&r.idempotency_key, SHOP_TRANSACTION_MAX);
            if let Some(done) = self.earlier(&shop_id).await? {
                return Ok(done);
            }
            let create = json!({
                "shopLogin": self.cfg.shop_login,
                "amount": format_minor(r.amount),
                "currency": r.currency,
                "shopTransactionID": shop_id,
            });
            let a = self.post("create", create, None, false).await?;
            let v = a.json();
            let token = match (
                error_of(&v).0.as_str(),
                v["payload"]["paymentToken"].as_str(),
            ) {
                ("0", Some(t)) => t.to_string(),
                _ => return Err(refused("create", &a)),
            };
            let submit = json!({"shopLogin": self.cfg.shop_login, "paymentTypeDetails": details});
            let a = self.post("submit", submit, Some(&token), false).await?;
            let v = a.json();
            let (code, _) = error_of(&v);
            match outcome(&v["payload"]) {
                Ok(o) => Ok(o),
                Err(why) if code == "0" => Err(PaymentError::Rejected(format!(
                    "gestpay: {why}: payments needing a shopper step (3-D Secure, redirects) are not taken by this flow"
                ))),
                Err(_) => Err(refused("submit", &a)),
            }
        })
    }

    fn capture<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.follow("capture", r))
    }

    fn refund<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.follow("refund", r))
    }

    fn void<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(self.follow("cancel", r))
    }
}
