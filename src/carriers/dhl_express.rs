//! DHL Express, through the MyDHL API (REST, JSON, HTTP Basic with the
//! API key and secret). `POST {base}/shipments` labels a parcel
//! (`shipmentTrackingNumber`, the label in `documents[]` of `typeCode`
//! `label`, base64); `GET {base}/shipments/{number}/tracking
//! ?trackingView=all-checkpoints` tracks one (`shipments[0].events[]`,
//! the last `typeCode` saying where it is: `PU` picked up, `OK`
//! delivered...). MyDHL API voids no shipment: a label not used is not
//! billed (a pickup, which holdfast never books, is what would be
//! cancelled). Errors: problem+json, `{"instance", "detail", "title",
//! "status", "additionalDetails": [...]}`.
//!
//! `base_url`: `https://express.api.dhl.com/mydhlapi/test` (test),
//! `https://express.api.dhl.com/mydhlapi`.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Carrier, CarrierError, Label, LabelRequest, Tracked, TRACK_BATCH};
use crate::domain::address::Address;
use crate::payments::section::{http_url, string_defaults, CallsSection, Secrets};
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct DhlExpressConfig {
    pub base_url: String,
    pub api_key: String,
    pub api_secret: String,
    /// The shipper's DHL Express account number.
    pub account_number: String,
    /// "P" (Express Worldwide), "N" (domestic), "U" (Worldwide EU)...
    pub product_code: String,
    pub policy: Policy,
}

/// `[carriers.dhl_express]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhlExpressSection {
    pub base_url: String,
    pub account_number: String,
    #[serde(default = "product_code")]
    pub product_code: String,
    #[serde(default = "api_key_env")]
    pub api_key_env: String,
    #[serde(default = "api_secret_env")]
    pub api_secret_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    product_code = "P",
    api_key_env = "HOLDFAST_DHL_EXPRESS_API_KEY",
    api_secret_env = "HOLDFAST_DHL_EXPRESS_API_SECRET",
}

impl DhlExpressSection {
    /// The adapter's configuration, its key and secret read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<DhlExpressConfig, String> {
        let at = "carriers.dhl_express";
        http_url(at, &self.base_url)?;
        Ok(DhlExpressConfig {
            base_url: self.base_url.clone(),
            api_key: secrets.get(at, &self.api_key_env)?,
            api_secret: secrets.get(at, &self.api_secret_env)?,
            account_number: self.account_number.clone(),
            product_code: self.product_code.clone(),
            policy: self.calls.policy(at)?,
        })
    }
}

pub struct DhlExpress {
    cfg: DhlExpressConfig,
    caller: Caller,
}

/// A party of the shipment: its postal address and contact.
fn party(a: &Address) -> Value {
    json!({
        "postalAddress": {
            "postalCode": a.postal_code,
            "cityName": a.city,
            "countryCode": a.country,
            // MyDHL API takes 45 characters a line.
            "addressLine1": a.street.chars().take(45).collect::<String>(),
        },
        "contactInformation": {
            "phone": a.phone,
            "companyName": a.name,
            "fullName": a.name,
        },
    })
}

/// MyDHL API's problem as a refusal: its title, detail and the first of
/// its additional details.
fn refused(a: &Answer) -> CarrierError {
    let v = a.json();
    CarrierError::Rejected(format!(
        "dhl_express {} {}: {} {}",
        a.status,
        v["title"].as_str().unwrap_or("?"),
        v["detail"].as_str().unwrap_or(""),
        v["additionalDetails"][0].as_str().unwrap_or("")
    ))
}

/// `2026-11-27T10:00:00 GMT+00:00`, as MyDHL API takes a shipping time.
fn planned_at(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    format!("{} GMT+00:00", t.format(&f).unwrap_or_default())
}

/// DHL Express's checkpoint codes, as a parcel's place.
fn tracked(code: &str) -> Tracked {
    match code {
        "PU" => Tracked::PickedUp,
        "PL" | "DF" | "AF" | "AR" | "CC" | "CR" | "RR" | "TR" => Tracked::InTransit,
        "WC" => Tracked::OutForDelivery,
        "OK" => Tracked::Delivered,
        "CA" | "NH" | "BA" | "RT" | "OH" => Tracked::Exception,
        _ => Tracked::Unknown,
    }
}

impl DhlExpress {
    pub fn new(cfg: DhlExpressConfig) -> Result<DhlExpress, String> {
        let caller = Caller::new("dhl_express", cfg.policy)?;
        Ok(DhlExpress { cfg, caller })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url.trim_end_matches('/'))
    }
}

impl Carrier for DhlExpress {
    fn name(&self) -> &str {
        "dhl_express"
    }

    fn create_label<'a>(
        &'a self,
        r: &'a LabelRequest,
    ) -> BoxFuture<'a, Result<Label, CarrierError>> {
        Box::pin(async move {
            // Ready now: MyDHL API wants the time with its offset named.
            let planned = planned_at(time::OffsetDateTime::now_utc());
            let body = json!({
                "plannedShippingDateAndTime": planned,
                "pickup": {"isRequested": false},
                "productCode": self.cfg.product_code,
                "accounts": [{"typeCode": "shipper", "number": self.cfg.account_number}],
                "outputImageProperties": {
                    "encodingFormat": "pdf",
                    "imageOptions": [{"typeCode": "label", "templateName": "ECOM26_84_001"}],
                },
                "customerReferences": [{"value": r.reference.chars().take(35).collect::<String>(), "typeCode": "CU"}],
                "customerDetails": {
                    "shipperDetails": party(&r.from),
                    "receiverDetails": party(&r.to),
                },
                "content": {
                    "packages": [{
                        "weight": f64::from(r.weight_g.max(100)) / 1000.0,
                        "dimensions": {"length": 30, "width": 20, "height": 15},
                    }],
                    "isCustomsDeclarable": false,
                    "description": "Retail goods",
                    "incoterm": "DAP",
                    "unitOfMeasurement": "metric",
                },
            });
            let url = self.url("/shipments");
            // No idempotency key at MyDHL API: sent again only when surely
            // not done.
            let a = self
                .caller
                .send(false, |c| {
                    c.post(&url)
                        .basic_auth(&self.cfg.api_key, Some(&self.cfg.api_secret))
                        .json(&body)
                })
                .await
                .map_err(CarrierError::from)?;
            if a.status != 201 && a.status != 200 {
                return Err(refused(&a));
            }
            let v = a.json();
            let label = v["documents"]
                .as_array()
                .and_then(|d| d.iter().find(|x| x["typeCode"] == "label"));
            Label::decoded(
                "dhl_express",
                v["shipmentTrackingNumber"].as_str(),
                label.and_then(|l| l["content"].as_str()),
                label.and_then(|l| l["imageFormat"].as_str()).map(|f| {
                    if f.eq_ignore_ascii_case("pdf") {
                        "PDF"
                    } else {
                        f
                    }
                }),
            )
        })
    }

    fn track<'a>(
        &'a self,
        tracking: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Tracked)>, CarrierError>> {
        Box::pin(async move {
            // One shipment a call.
            let mut out = Vec::new();
            for t in tracking.iter().take(TRACK_BATCH) {
                let url = self.url(&format!("/shipments/{t}/tracking"));
                let a = self
                    .caller
                    .send(true, |c| {
                        c.get(&url)
                            .query(&[("trackingView", "all-checkpoints")])
                            .basic_auth(&self.cfg.api_key, Some(&self.cfg.api_secret))
                    })
                    .await
                    .map_err(CarrierError::from)?;
                match a.status {
                    200 => {
                        let v = a.json();
                        let events = v["shipments"][0]["events"].as_array();
                        // Checkpoints come oldest first: the last says where.
                        let place = match events.and_then(|e| e.last()) {
                            Some(e) => tracked(e["typeCode"].as_str().unwrap_or("")),
                            None => Tracked::Created,
                        };
                        out.push((t.clone(), place));
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
            Err(CarrierError::Rejected(format!(
                "dhl_express: MyDHL API voids no shipment: {tracking} is not billed if not used"
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_checkpoints_map() {
        let t = time::macros::datetime!(2026-11-27 10:05:09 UTC);
        assert_eq!(planned_at(t), "2026-11-27T10:05:09 GMT+00:00");
        assert_eq!(
            tracked("PU").reached(),
            Some(crate::domain::order::ShipStatus::Shipped)
        );
        assert_eq!(tracked("OK"), Tracked::Delivered);
        assert_eq!(tracked("WC"), Tracked::OutForDelivery);
        assert_eq!(tracked("zz"), Tracked::Unknown);
    }
}
