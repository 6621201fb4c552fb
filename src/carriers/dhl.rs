//! DHL Parcel Germany, through its Parcel DE Shipping API (v2) and the
//! Shipment Tracking - Unified API. Every call carries the `dhl-api-key`
//! header; shipping calls Basic authentication too (the business
//! customer's user). `POST {base}/orders?docFormat=PDF` labels a parcel
//! (`items[0].shipmentNo`, `items[0].label.b64`); `DELETE
//! {base}/orders?profile=&shipment=` cancels one not yet handed over; `GET
//! {tracking_url}?trackingNumber=` tracks one (`shipments[0].status.
//! statusCode`: pre-transit, transit, delivered, failure). Countries are
//! ISO 3166-1 alpha-3 on the wire. Errors: `{"status": {"title",
//! "statusCode", "detail"}, "items": [{"validationMessages": [...]}]}`.
//!
//! `base_url`: `https://api-sandbox.dhl.com/parcel/de/shipping/v2`
//! (test), `https://api-eu.dhl.com/parcel/de/shipping/v2`; `tracking_url`:
//! `https://api-eu.dhl.com/track/shipments`. `profile`: the user group
//! profile, sent with every label and every cancel (the cancel requires
//! it: DHL cancels only shipments of billing numbers the profile may use).

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Carrier, CarrierError, Label, LabelRequest, Tracked, TRACK_BATCH};
use crate::domain::address::Address;
use crate::payments::section::{http_url, string_defaults, CallsSection, Secrets};
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct DhlConfig {
    pub base_url: String,
    pub tracking_url: String,
    pub api_key: String,
    pub user: String,
    pub password: String,
    /// The 14-digit billing number (EKP, product procedure, participation).
    pub billing_number: String,
    /// "V01PAK" (DHL Paket), "V53WPAK" (international), ...
    pub product: String,
    /// The user group profile entitled to the billing number
    /// ("STANDARD_GRUPPENPROFIL" when the account has no dedicated one).
    pub profile: String,
    pub policy: Policy,
}

/// `[carriers.dhl]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhlSection {
    pub base_url: String,
    #[serde(default = "tracking_url")]
    pub tracking_url: String,
    pub billing_number: String,
    #[serde(default = "product")]
    pub product: String,
    /// The user group profile sent with every label and cancel (DHL's
    /// standard one unless the account has a dedicated one).
    #[serde(default = "profile")]
    pub profile: String,
    #[serde(default = "api_key_env")]
    pub api_key_env: String,
    #[serde(default = "user_env")]
    pub user_env: String,
    #[serde(default = "password_env")]
    pub password_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    tracking_url = "https://api-eu.dhl.com/track/shipments",
    product = "V01PAK",
    profile = "STANDARD_GRUPPENPROFIL",
    api_key_env = "HOLDFAST_DHL_API_KEY",
    user_env = "HOLDFAST_DHL_USER",
    password_env = "HOLDFAST_DHL_PASSWORD",
}

impl DhlSection {
    /// The adapter's configuration, its credentials read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<DhlConfig, String> {
        let at = "carriers.dhl";
        http_url(at, &self.base_url)?;
        http_url(at, &self.tracking_url)?;
        // DHL takes a profile of 35 characters at most.
        if !(1..=35).contains(&self.profile.chars().count()) {
            return Err(format!("{at}.profile must have 1 to 35 characters"));
        }
        Ok(DhlConfig {
            base_url: self.base_url.clone(),
            tracking_url: self.tracking_url.clone(),
            api_key: secrets.get(at, &self.api_key_env)?,
            user: secrets.get(at, &self.user_env)?,
            password: secrets.get(at, &self.password_env)?,
            billing_number: self.billing_number.clone(),
            product: self.product.clone(),
            profile: self.profile.clone(),
            policy: self.calls.policy(at)?,
        })
    }
}

pub struct Dhl {
    cfg: DhlConfig,
    caller: Caller,
}

/// ISO 3166-1 alpha-2 to alpha-3, for the countries a European retailer
/// ships to.
fn alpha3(country: &str) -> Option<&'static str> {
    const TABLE: [(&str, &str); 32] = [
        ("AT", "AUT"),
        ("BE", "BEL"),
        ("BG", "BGR"),
        ("CH", "CHE"),
        ("CY", "CYP"),
        ("CZ", "CZE"),
        ("DE", "DEU"),
        ("DK", "DNK"),
        ("EE", "EST"),
        ("ES", "ESP"),
        ("FI", "FIN"),
        ("FR", "FRA"),
        ("GB", "GBR"),
        ("GR", "GRC"),
        ("HR", "HRV"),
        ("HU", "HUN"),
        ("IE", "IRL"),
        ("IT", "ITA"),
        ("LT", "LTU"),
        ("LU", "LUX"),
        ("LV", "LVA"),
        ("MT", "MLT"),
        ("NL", "NLD"),
        ("NO", "NOR"),
        ("PL", "POL"),
        ("PT", "PRT"),
        ("RO", "ROU"),
        ("SE", "SWE"),
        ("SI", "SVN"),
        ("SK", "SVK"),
        ("US", "USA"),
        ("IS", "ISL"),
    ];
    TABLE.iter().find(|(a, _)| *a == country).map(|(_, b)| *b)
}

fn party(a: &Address) -> Result<Value, CarrierError> {
    let country = alpha3(&a.country)
        .ok_or_else(|| CarrierError::Rejected(format!("dhl: no route to country {}", a.country)))?;
    // DHL's field limits (ContactAddress): a name of 3 x 50 characters, a
    // street of 50 continued in an additional line of 60, a city of 40, a
    // phone of 20 (without its spaces first).
    let mut party = json!({
        "postalCode": a.postal_code,
        "country": country,
    });
    for (key, text) in ["name1", "name2", "name3"]
        .iter()
        .zip(super::fit(&a.name, 50, 3))
    {
        party[*key] = json!(text);
    }
    for (key, text) in ["addressStreet", "additionalAddressInformation1"]
        .iter()
        .zip(super::fit(&a.street, 50, 2))
    {
        party[*key] = json!(text);
    }
    let phone: String = a.phone.split_whitespace().collect();
    party["city"] = json!(super::fit(&a.city, 40, 1).concat());
    party["phone"] = json!(super::fit(&phone, 20, 1).concat());
    Ok(party)
}

/// DHL's error answer as a refusal: its title, detail, and the first
/// validation message with the field it names.
fn refused(a: &Answer) -> CarrierError {
    let v = a.json();
    let first = &v["items"][0]["validationMessages"][0];
    CarrierError::Rejected(format!(
        "dhl {} {}: {} {} {}",
        a.status,
        v["status"]["title"]
            .as_str()
            .or(v["title"].as_str())
            .unwrap_or("?"),
        v["status"]["detail"]
            .as_str()
            .or(v["detail"].as_str())
            .unwrap_or(""),
        first["property"].as_str().unwrap_or(""),
        first["validationMessage"].as_str().unwrap_or("")
    ))
}

/// The Unified API's status codes, as a parcel's place.
fn tracked(code: &str) -> Tracked {
    match code {
        "pre-transit" => Tracked::Created,
        "transit" => Tracked::InTransit,
        "delivered" => Tracked::Delivered,
        "failure" => Tracked::Exception,
        _ => Tracked::Unknown,
    }
}

impl Dhl {
    pub fn new(cfg: DhlConfig) -> Result<Dhl, String> {
        let caller = Caller::new("dhl", cfg.policy)?;
        Ok(Dhl { cfg, caller })
    }

    fn orders(&self) -> String {
        format!("{}/orders", self.cfg.base_url.trim_end_matches('/'))
    }
}

impl Carrier for Dhl {
    fn name(&self) -> &str {
        "dhl"
    }

    fn create_label<'a>(
        &'a self,
        r: &'a LabelRequest,
    ) -> BoxFuture<'a, Result<Label, CarrierError>> {
        Box::pin(async move {
            let body = json!({
                "profile": self.cfg.profile,
                "shipments": [{
                    "product": self.cfg.product,
                    "billingNumber": self.cfg.billing_number,
                    // DHL takes 8 to 35 characters.
                    "refNo": format!("{:-<8}", r.reference).chars().take(35).collect::<String>(),
                    "shipper": party(&r.from)?,
                    "consignee": party(&r.to)?,
                    "details": {"weight": {"uom": "g", "value": r.weight_g.max(100)}},
                }],
            });
            let url = self.orders();
            // No idempotency key at DHL: sent again only when surely not done.
            let a = self
                .caller
                .send(false, |c| {
                    c.post(&url)
                        .query(&[("docFormat", "PDF")])
                        .basic_auth(&self.cfg.user, Some(&self.cfg.password))
                        .header("dhl-api-key", &self.cfg.api_key)
                        .json(&body)
                })
                .await
                .map_err(CarrierError::from)?;
            if a.status != 200 {
                return Err(refused(&a));
            }
            let v = a.json();
            let item = &v["items"][0];
            Label::decoded(
                "dhl",
                item["shipmentNo"].as_str(),
                item["label"]["b64"].as_str(),
                item["label"]["fileFormat"].as_str(),
            )
        })
    }

    fn track<'a>(
        &'a self,
        tracking: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Tracked)>, CarrierError>> {
        Box::pin(async move {
            // The Unified API answers one number a call.
            let mut out = Vec::new();
            for t in tracking.iter().take(TRACK_BATCH) {
                let a = self
                    .caller
                    .send(true, |c| {
                        c.get(&self.cfg.tracking_url)
                            .query(&[("trackingNumber", t.as_str())])
                            .header("DHL-API-Key", &self.cfg.api_key)
                    })
                    .await
                    .map_err(CarrierError::from)?;
                match a.status {
                    200 => {
                        let v = a.json();
                        if let Some(code) = v["shipments"][0]["status"]["statusCode"].as_str() {
                            out.push((t.clone(), tracked(code)));
                        }
                    }
                    404 => {} // not known (yet)
                    _ => return Err(refused(&a)),
                }
            }
            Ok(out)
        })
    }

    fn cancel<'a>(&'a self, tracking: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            let url = self.orders();
            let a = self
                .caller
                .send(true, |c| {
                    // The profile is required: the label's, so the
                    // shipment is one it may cancel.
                    c.delete(&url)
                        .query(&[
                            ("profile", self.cfg.profile.as_str()),
                            ("shipment", tracking),
                        ])
                        .basic_auth(&self.cfg.user, Some(&self.cfg.password))
                        .header("dhl-api-key", &self.cfg.api_key)
                })
                .await
                .map_err(CarrierError::from)?;
            let v = a.json();
            match (a.status, v["items"][0]["sstatus"]["statusCode"].as_u64()) {
                (200, Some(200)) => Ok(()),
                _ => Err(refused(&a)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_and_statuses_map() {
        assert_eq!(alpha3("DE"), Some("DEU"));
        assert_eq!(alpha3("ES"), Some("ESP"));
        assert_eq!(alpha3("XX"), None);
        assert_eq!(tracked("transit"), Tracked::InTransit);
        assert_eq!(tracked("delivered"), Tracked::Delivered);
        assert_eq!(tracked("pre-transit").reached(), None);
    }
}
