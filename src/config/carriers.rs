//! `[carriers]`: the carriers that label and track shipments, each
//! section read by its adapter (`FedexSection` in `carriers::fedex`, say),
//! and how a parcel gets one.

use serde::Deserialize;

use crate::carriers::correos::{CorreosConfig, CorreosSection};
use crate::carriers::dhl::{DhlConfig, DhlSection};
use crate::carriers::dhl_express::{DhlExpressConfig, DhlExpressSection};
use crate::carriers::fedex::{FedexConfig, FedexSection};
use crate::carriers::tnt::{TntConfig, TntSection};
use crate::payments::section::Secrets;
use crate::payments::Routing;

/// The carriers that label and track shipments (none: shipments move by
/// the API's events alone).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CarriersSection {
    /// The carrier of a parcel no rule names.
    pub default: Option<String>,
    /// By the order's channel and/or the destination's country, the
    /// first that fits: `[[carriers.rules]] channel = "app" country =
    /// "ES" carrier = "fedex"`.
    pub rules: Vec<CarrierRule>,
    /// How often parcels in transit are tracked.
    pub track_every_s: u64,
    pub fedex: Option<FedexSection>,
    pub dhl: Option<DhlSection>,
    pub dhl_express: Option<DhlExpressSection>,
    pub correos: Option<CorreosSection>,
    pub tnt: Option<TntSection>,
}

impl Default for CarriersSection {
    fn default() -> Self {
        CarriersSection {
            default: None,
            rules: Vec::new(),
            track_every_s: 300,
            fedex: None,
            dhl: None,
            dhl_express: None,
            correos: None,
            tnt: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierRule {
    pub channel: Option<String>,
    pub country: Option<String>,
    pub carrier: String,
}

/// The carriers configured, secrets read, and how one is chosen.
#[derive(Debug, Clone, Default)]
pub struct Carriers {
    pub fedex: Option<FedexConfig>,
    pub dhl: Option<DhlConfig>,
    pub dhl_express: Option<DhlExpressConfig>,
    pub correos: Option<CorreosConfig>,
    pub tnt: Option<TntConfig>,
    /// The rules and the default of `[carriers]`.
    pub routing: Routing,
    pub track_every: std::time::Duration,
}

impl CarriersSection {
    /// The carriers configured, secrets read, after the routing is
    /// checked (every carrier a rule or the default names is configured),
    /// or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<Carriers, String> {
        if !(1..=86_400).contains(&self.track_every_s) {
            return Err("carriers.track_every_s must be 1..=86400".into());
        }
        let rules = self
            .rules
            .iter()
            .map(|r| (&r.channel, &r.country, &r.carrier));
        let routing = Routing::checked("carriers", rules, &self.default, |n| self.configured(n))?;
        Ok(Carriers {
            fedex: secrets.resolve(&self.fedex, FedexSection::resolve)?,
            dhl: secrets.resolve(&self.dhl, DhlSection::resolve)?,
            dhl_express: secrets.resolve(&self.dhl_express, DhlExpressSection::resolve)?,
            correos: secrets.resolve(&self.correos, CorreosSection::resolve)?,
            tnt: secrets.resolve(&self.tnt, TntSection::resolve)?,
            routing,
            track_every: std::time::Duration::from_secs(self.track_every_s),
        })
    }

    /// Whether the carrier `name` is there to route to.
    fn configured(&self, name: &str) -> bool {
        match name {
            "fedex" => self.fedex.is_some(),
            "dhl" => self.dhl.is_some(),
            "dhl_express" => self.dhl_express.is_some(),
            "correos" => self.correos.is_some(),
            "tnt" => self.tnt.is_some(),
            _ => false,
        }
    }
}
