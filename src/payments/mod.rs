//! Payments behind one trait: authorize, capture, refund, void, each
//! idempotent by a key the caller chooses (a retry after a timeout must
//! never charge twice; where a provider takes no key, its adapter says
//! how it keeps that promise, or where it cannot). `Routing`: the
//! provider of an order that names none.
//!
//! - `sandbox`: outcomes fixed by the amount, so order flows are tested end
//!   to end without a provider.
//! - `adyen`: Adyen's Checkout API (its HTTP calls through `crate::wire`:
//!   timeouts, retries with backoff, a circuit breaker).
//! - `gestpay`: GestPay (Axerve E-commerce Solutions)' REST API.
//! - `amazonpay`: Amazon Pay's API v2, requests signed (RSASSA-PSS).
//! - `scalapay`: Scalapay's API v2 (pay in 3: the shopper approves first).
//! - `section`: what the providers' and carriers' config sections share
//!   (each adapter owns its section).

pub mod adyen;
pub mod amazonpay;
pub mod gestpay;
pub mod sandbox;
pub mod scalapay;
pub mod section;

use futures::future::BoxFuture;

use crate::domain::order::Minor;

/// What an authorization asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorize {
    /// The same key again answers the first answer again.
    pub idempotency_key: String,
    pub order: String,
    pub amount: Minor,
    /// ISO 4217, e.g. "EUR".
    pub currency: String,
    /// The shopper's payment details as the checkout gave them (the
    /// order's `payment.method`: Adyen's `paymentMethod` object, say), for
    /// the providers that need them (`needs_method`).
    pub method: Option<serde_json::Value>,
}

impl Authorize {
    /// The shopper's details, which `provider` needs.
    pub fn method_for(&self, provider: &str) -> Result<&serde_json::Value, PaymentError> {
        self.method.as_ref().ok_or_else(|| {
            PaymentError::Rejected(format!("{provider} needs the shopper's payment.method"))
        })
    }

    /// The string `field` of the shopper's details (1 to `max` bytes),
    /// which `provider` needs.
    pub fn method_field(
        &self,
        provider: &str,
        field: &str,
        max: usize,
    ) -> Result<&str, PaymentError> {
        self.method_for(provider)?[field]
            .as_str()
            .filter(|v| !v.is_empty() && v.len() <= max)
            .ok_or_else(|| {
                PaymentError::Rejected(format!("{provider} needs payment.method.{field}"))
            })
    }
}

/// A capture, refund or void of an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    pub idempotency_key: String,
    /// The order it is for.
    pub order: String,
    /// The provider's reference of the authorization.
    pub reference: String,
    pub amount: Minor,
    /// ISO 4217, as authorized.
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Authorized { reference: String },
    Declined { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The provider could not be reached or answered 5xx: try again later
    /// with the same key.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// A call that is not idempotent at the provider (a GestPay refund)
    /// went unanswered and may have been done: sending it again could do
    /// it twice; what the provider did must be found out first.
    #[error("payment provider did not say whether it was done: {0}")]
    Unclear(String),
    /// The provider refused the request itself (an amount over what is
    /// left, a key reused with other parameters): retrying cannot help.
    #[error("payment provider refused the request: {0}")]
    Rejected(String),
}

impl From<crate::wire::CallError> for PaymentError {
    fn from(e: crate::wire::CallError) -> Self {
        if e.maybe_done {
            PaymentError::Unclear(e.why)
        } else {
            PaymentError::Unavailable(e.why)
        }
    }
}

/// How an order gets its payment provider when it names none, and a
/// parcel its carrier: the first rule whose channel and country (those it
/// names) are the order's, else the default.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub default: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub channel: Option<String>,
    /// ISO 3166-1 alpha-2 of where the goods go.
    pub country: Option<String>,
    /// The provider or carrier chosen.
    pub to: String,
}

impl Routing {
    /// The routing of `[{at}]` (`payments` or `carriers`) from its rules
    /// (channel, country, name) and its default, once every name they give
    /// is `configured`; else which one is not.
    pub fn checked<'a>(
        at: &str,
        rules: impl Iterator<Item = (&'a Option<String>, &'a Option<String>, &'a String)>,
        default: &Option<String>,
        configured: impl Fn(&str) -> bool,
    ) -> Result<Routing, String> {
        let rules: Vec<Rule> = rules
            .map(|(channel, country, to)| Rule {
                channel: channel.clone(),
                country: country.clone(),
                to: to.clone(),
            })
            .collect();
        for name in rules.iter().map(|r| &r.to).chain(default) {
            if !configured(name) {
                return Err(format!(
                    "{at}: {name} is named but not configured ([{at}.{name}])"
                ));
            }
        }
        Ok(Routing {
            default: default.clone(),
            rules,
        })
    }

    pub fn choose(&self, channel: Option<&str>, country: Option<&str>) -> Option<&str> {
        let fits = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        self.rules
            .iter()
            .find(|r| fits(&r.channel, channel) && fits(&r.country, country))
            .map(|r| r.to.as_str())
            .or(self.default.as_deref())
    }
}

/// `key` cut to the `max` characters a provider takes, told apart by a
/// hash of the whole when cut.
pub fn bounded_key(key: &str, max: usize) -> String {
    if key.len() <= max {
        return key.to_string();
    }
    let mut cut = max.saturating_sub(17);
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}~{:016x}",
        &key[..cut],
        crate::domain::hash::fnv1a64(key.as_bytes())
    )
}

/// A payment provider. Every call is idempotent by its key.
pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &str;
    /// Whether an authorization needs the shopper's details (`method`).
    fn needs_method(&self) -> bool {
        false
    }
    fn authorize<'a>(
        &'a self,
        r: &'a Authorize,
    ) -> BoxFuture<'a, Result<Authorization, PaymentError>>;
    fn capture<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>>;
    fn refund<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>>;
    /// Releases what is authorized and not captured.
    fn void<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rule_that_fits_chooses_else_the_default() {
        let rule = |channel: Option<&str>, country: Option<&str>, provider: &str| Rule {
            channel: channel.map(String::from),
            country: country.map(String::from),
            to: provider.into(),
        };
        let r = Routing {
            default: Some("adyen".into()),
            rules: vec![
                rule(Some("callcenter"), None, "sandbox"),
                rule(None, Some("IT"), "gestpay"),
                rule(Some("app"), Some("ES"), "amazonpay"),
            ],
        };
        assert_eq!(r.choose(Some("web"), Some("IT")), Some("gestpay"));
        assert_eq!(r.choose(Some("callcenter"), Some("IT")), Some("sandbox"));
        assert_eq!(r.choose(Some("app"), Some("ES")), Some("amazonpay"));
        assert_eq!(r.choose(Some("web"), Some("ES")), Some("adyen"));
        assert_eq!(r.choose(None, None), Some("adyen"));
        assert_eq!(Routing::default().choose(None, Some("IT")), None);
    }
}
