//! `[payments]`: the providers besides the sandbox, each section read by
//! its adapter (`AdyenSection` in `payments::adyen`, say), and how an
//! order that names none gets one.

use serde::Deserialize;

use crate::payments::adyen::{AdyenConfig, AdyenSection};
use crate::payments::amazonpay::{AmazonPayConfig, AmazonPaySection};
use crate::payments::gestpay::{GestpayConfig, GestpaySection};
use crate::payments::scalapay::{ScalapayConfig, ScalapaySection};
use crate::payments::section::Secrets;
use crate::payments::Routing;

/// The payment providers besides the sandbox (always there). Secrets
/// never sit in the file: each names the environment variable that holds
/// it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsSection {
    /// The provider of an order that names none and no rule fits.
    pub default: Option<String>,
    /// `[[payments.rules]]`: `channel` and/or `country` -> `provider`.
    #[serde(default)]
    pub rules: Vec<PaymentRule>,
    /// How often captures owed (a provider down when the goods left) are
    /// tried again; 30 when absent.
    pub retry_every_s: Option<u64>,
    pub adyen: Option<AdyenSection>,
    pub gestpay: Option<GestpaySection>,
    pub amazonpay: Option<AmazonPaySection>,
    pub scalapay: Option<ScalapaySection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRule {
    pub channel: Option<String>,
    pub country: Option<String>,
    pub provider: String,
}

/// The providers configured, secrets read.
#[derive(Debug, Clone, Default)]
pub struct Payments {
    /// Adyen's, and its webhook HMAC key.
    pub adyen: Option<(AdyenConfig, Vec<u8>)>,
    pub gestpay: Option<GestpayConfig>,
    pub amazonpay: Option<AmazonPayConfig>,
    pub scalapay: Option<ScalapayConfig>,
    pub routing: Routing,
    pub retry_every: std::time::Duration,
}

impl PaymentsSection {
    /// The providers configured, secrets read, and the routing checked
    /// (every provider a rule or the default names is configured), or why
    /// not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<Payments, String> {
        let mut payments = Payments {
            adyen: secrets.resolve(&self.adyen, AdyenSection::resolve)?,
            gestpay: secrets.resolve(&self.gestpay, GestpaySection::resolve)?,
            amazonpay: secrets.resolve(&self.amazonpay, AmazonPaySection::resolve)?,
            scalapay: secrets.resolve(&self.scalapay, ScalapaySection::resolve)?,
            ..Payments::default()
        };
        let rules = self
            .rules
            .iter()
            .map(|r| (&r.channel, &r.country, &r.provider));
        let routing = Routing::checked("payments", rules, &self.default, |n| self.configured(n))?;
        let retry = self.retry_every_s.unwrap_or(30);
        if !(1..=3600).contains(&retry) {
            return Err("payments.retry_every_s must be 1..=3600".into());
        }
        payments.retry_every = std::time::Duration::from_secs(retry);
        payments.routing = routing;
        Ok(payments)
    }

    /// Whether the provider `name` is there to route to.
    fn configured(&self, name: &str) -> bool {
        match name {
            "sandbox" => true,
            "adyen" => self.adyen.is_some(),
            "gestpay" => self.gestpay.is_some(),
            "amazonpay" => self.amazonpay.is_some(),
            "scalapay" => self.scalapay.is_some(),
            _ => false,
        }
    }
}
