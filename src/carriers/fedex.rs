//! FedEx, through its REST APIs: OAuth (`POST /oauth/token`, client
//! credentials, a bearer token kept until a minute before it expires and
//! fetched again after a 401), Ship (`POST /ship/v1/shipments`: the
//! tracking number and the label, base64, in
//! `output.transactionShipments[0].pieceResponses[0]`; `PUT
//! /ship/v1/shipments/cancel`), Track (`POST /track/v1/trackingnumbers`,
//! up to 30 numbers: `latestStatusDetail.code` of each). Errors come as
//! `{"errors": [{"code", "message"}]}`.
//!
//! A new shipment takes no idempotency key at FedEx: it is retried only
//! when it surely did nothing (`wire`); a label made twice after a lost
//! answer is not charged until the parcel is scanned.
//!
//! `base_url`: `https://apis-sandbox.fedex.com` (test), `https://apis.fedex.com`.

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use super::{Carrier, CarrierError, Label, LabelRequest, Tracked, TRACK_BATCH};
use crate::domain::address::Address;
use crate::payments::section::{http_url, string_defaults, CallsSection, Secrets};
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct FedexConfig {
    pub base_url: String,
    pub account_number: String,
    pub client_id: String,
    pub client_secret: String,
    /// `serviceType`, e.g. "FEDEX_INTERNATIONAL_PRIORITY".
    pub service_type: String,
    pub policy: Policy,
}

/// `[carriers.fedex]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedexSection {
    pub base_url: String,
    pub account_number: String,
    #[serde(default = "client_id_env")]
    pub client_id_env: String,
    #[serde(default = "client_secret_env")]
    pub client_secret_env: String,
    #[serde(default = "service_type")]
    pub service_type: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    client_id_env = "HOLDFAST_FEDEX_CLIENT_ID",
    client_secret_env = "HOLDFAST_FEDEX_CLIENT_SECRET",
    service_type = "FEDEX_INTERNATIONAL_PRIORITY",
}

impl FedexSection {
    /// The adapter's configuration, its client credentials read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<FedexConfig, String> {
        let at = "carriers.fedex";
        http_url(at, &self.base_url)?;
        Ok(FedexConfig {
            base_url: self.base_url.clone(),
            account_number: self.account_number.clone(),
            client_id: secrets.get(at, &self.client_id_env)?,
            client_secret: secrets.get(at, &self.client_secret_env)?,
            service_type: self.service_type.clone(),
            policy: self.calls.policy(at)?,
        })
    }
}

pub struct Fedex {
    cfg: FedexConfig,
    caller: Caller,
    /// The bearer token and when to fetch another.
    token: Mutex<Option<(String, Instant)>>,
}

/// FedEx's error answer as a refusal.
fn refused(a: &Answer) -> CarrierError {
    let v = a.json();
    let e = &v["errors"][0];
    CarrierError::Rejected(format!(
        "fedex {} {}: {}",
        a.status,
        e["code"].as_str().unwrap_or("?"),
        e["message"].as_str().unwrap_or("no message")
    ))
}

fn party(a: &Address) -> Value {
    json!({
        "contact": {"personName": a.name, "phoneNumber": a.phone},
        "address": {
            // Three street lines of 35 characters, a city of 35 (the
            // Ship API's PartyAddress).
            "streetLines": super::fit(&a.street, 35, 3),
            "city": super::fit(&a.city, 35, 1).concat(),
            "postalCode": a.postal_code,
            "countryCode": a.country,
        },
    })
}

/// The body of `POST /ship/v1/shipments` for `r` under `cfg`: one
/// package, so `totalWeight` (which the Ship API requires: international
/// shipments need it) is its weight, in its unit (KG), with the one
/// decimal FedEx reads, rounded up so a parcel is never declared lighter
/// than it is (100 g at least, as before).
fn ship_request(cfg: &FedexConfig, r: &LabelRequest) -> Value {
    let kg = f64::from(r.weight_g.max(1).div_ceil(100)) / 10.0;
    json!({
        "labelResponseOptions": "LABEL",
        "accountNumber": {"value": cfg.account_number},
        "requestedShipment": {
            "shipper": party(&r.from),
            "recipients": [party(&r.to)],
            "serviceType": cfg.service_type,
            "packagingType": "YOUR_PACKAGING",
            "pickupType": "USE_SCHEDULED_PICKUP",
            "shippingChargesPayment": {"paymentType": "SENDER"},
            "labelSpecification": {"imageType": "PDF", "labelStockType": "PAPER_85X11_TOP_HALF_LABEL"},
            "totalWeight": kg,
            "requestedPackageLineItems": [{
                "customerReferences": [{"customerReferenceType": "CUSTOMER_REFERENCE", "value": r.reference}],
                "weight": {"units": "KG", "value": kg},
            }],
        },
    })
}

/// FedEx's status codes, as a parcel's place.
fn tracked(code: &str) -> Tracked {
    match code {
        "OC" | "IN" => Tracked::Created,
        "PU" | "PX" => Tracked::PickedUp,
        "IT" | "AR" | "DP" | "AF" | "CC" | "PL" | "AA" | "AD" | "EA" | "ED" | "EO" => {
            Tracked::InTransit
        }
        "OD" => Tracked::OutForDelivery,
        "DL" => Tracked::Delivered,
        "DE" | "SE" | "CD" | "DY" | "RS" => Tracked::Exception,
        "CA" => Tracked::Cancelled,
        _ => Tracked::Unknown,
    }
}

impl Fedex {
    pub fn new(cfg: FedexConfig) -> Result<Fedex, String> {
        let caller = Caller::new("fedex", cfg.policy)?;
        Ok(Fedex {
            cfg,
            caller,
            token: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    /// A bearer token: the one kept, or a new one.
    async fn token(&self) -> Result<String, CarrierError> {
        if let Some((t, until)) = self.token.lock().as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let url = self.url("/oauth/token");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.cfg.client_id.as_str()),
            ("client_secret", self.cfg.client_secret.as_str()),
        ];
        let a = self
            .caller
            .send(true, |c| c.post(&url).form(&form))
            .await
            .map_err(CarrierError::from)?;
        let v = a.json();
        let (200, Some(token)) = (a.status, v["access_token"].as_str()) else {
            return Err(refused(&a));
        };
        // Kept until a minute before FedEx says it expires (an hour).
        let life = v["expires_in"].as_u64().unwrap_or(3600).saturating_sub(60);
        *self.token.lock() = Some((
            token.to_string(),
            Instant::now() + Duration::from_secs(life),
        ));
        Ok(token.to_string())
    }

    /// Calls `method path` with `body` under a bearer token; a 401 (the
    /// token expired early, or was revoked) fetches another, once.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        idempotent: bool,
        reference: &str,
    ) -> Result<Answer, CarrierError> {
        let url = self.url(path);
        for fresh in [false, true] {
            if fresh {
                *self.token.lock() = None;
            }
            let token = self.token().await?;
            let a = self
                .caller
                .send(idempotent, |c| {
                    c.request(method.clone(), &url)
                        .bearer_auth(&token)
                        .header("x-locale", "en_US")
                        .header("x-customer-transaction-id", reference)
                        .json(body)
                })
                .await
                .map_err(CarrierError::from)?;
            if a.status != 401 || fresh {
                return Ok(a);
            }
        }
        Err(CarrierError::Rejected("fedex: unauthorized".into()))
    }
}

impl Carrier for Fedex {
    fn name(&self) -> &str {
        "fedex"
    }

    fn create_label<'a>(
        &'a self,
        r: &'a LabelRequest,
    ) -> BoxFuture<'a, Result<Label, CarrierError>> {
        Box::pin(async move {
            let body = ship_request(&self.cfg, r);
            let a = self
                .call(
                    reqwest::Method::POST,
                    "/ship/v1/shipments",
                    &body,
                    false,
                    &r.reference,
                )
                .await?;
            if a.status != 200 {
                return Err(refused(&a));
            }
            let v = a.json();
            let shipment = &v["output"]["transactionShipments"][0];
            let piece = &shipment["pieceResponses"][0];
            let doc = &piece["packageDocuments"][0];
            Label::decoded(
                "fedex",
                piece["trackingNumber"]
                    .as_str()
                    .or_else(|| shipment["masterTrackingNumber"].as_str()),
                doc["encodedLabel"].as_str(),
                doc["docType"].as_str(),
            )
        })
    }

    fn track<'a>(
        &'a self,
        tracking: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Tracked)>, CarrierError>> {
        Box::pin(async move {
            let info: Vec<Value> = tracking
                .iter()
                .take(TRACK_BATCH)
                .map(|t| json!({"trackingNumberInfo": {"trackingNumber": t}}))
                .collect();
            let body = json!({"includeDetailedScans": false, "trackingInfo": info});
            let a = self
                .call(
                    reqwest::Method::POST,
                    "/track/v1/trackingnumbers",
                    &body,
                    true,
                    "track",
                )
                .await?;
            if a.status != 200 {
                return Err(refused(&a));
            }
            let v = a.json();
            let results = v["output"]["completeTrackResults"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok(results
                .iter()
                .filter_map(|r| {
                    let number = r["trackingNumber"].as_str()?;
                    let code = r["trackResults"][0]["latestStatusDetail"]["code"].as_str()?;
                    Some((number.to_string(), tracked(code)))
                })
                .collect())
        })
    }

    fn cancel<'a>(&'a self, tracking: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            let body = json!({
                "accountNumber": {"value": self.cfg.account_number},
                "emailShipment": false,
                "deletionControl": "DELETE_ALL_PACKAGES",
                "trackingNumber": tracking,
            });
            let a = self
                .call(
                    reqwest::Method::PUT,
                    "/ship/v1/shipments/cancel",
                    &body,
                    true,
                    tracking,
                )
                .await?;
            match (a.status, a.json()["output"]["cancelledShipment"].as_bool()) {
                (200, Some(true)) => Ok(()),
                (200, _) => Err(CarrierError::Rejected(format!(
                    "fedex: {tracking} not cancelled"
                ))),
                _ => Err(refused(&a)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FedEx's Ship API requires `requestedShipment.totalWeight`
    /// (fedex_ship_track_v1.json; international shipments need it), in
    /// the unit of the package's weight, with one decimal: never less
    /// than the parcel weighs.
    #[test]
    fn a_ship_request_carries_the_total_weight() {
        let cfg = FedexConfig {
            base_url: "https://apis-sandbox.fedex.com".into(),
            account_number: "740561073".into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            service_type: "FEDEX_INTERNATIONAL_PRIORITY".into(),
            policy: Policy::default(),
        };
        let address = Address {
            name: "Ana Ruiz".into(),
            street: "Calle Mayor 5".into(),
            city: "Madrid".into(),
            postal_code: "28013".into(),
            country: "ES".into(),
            phone: "+34911234567".into(),
        };
        for (weight_g, kg) in [(1200, 1.2), (1201, 1.3), (30, 0.1), (25_000, 25.0)] {
            let r = LabelRequest {
                reference: "O-1/1".into(),
                from: address.clone(),
                to: address.clone(),
                weight_g,
            };
            let body = ship_request(&cfg, &r);
            let s = &body["requestedShipment"];
            assert_eq!(s["totalWeight"].as_f64(), Some(kg), "{weight_g} g: {body}");
            assert_eq!(
                s["requestedPackageLineItems"][0]["weight"],
                json!({"units": "KG", "value": kg}),
                "{weight_g} g"
            );
        }
    }

    #[test]
    fn status_codes_map_to_places_and_statuses() {
        use crate::domain::order::ShipStatus;
        assert_eq!(tracked("OC").reached(), None);
        assert_eq!(tracked("PU").reached(), Some(ShipStatus::Shipped));
        assert_eq!(tracked("IT").reached(), Some(ShipStatus::Shipped));
        assert_eq!(tracked("OD").reached(), Some(ShipStatus::Shipped));
        assert_eq!(tracked("DL").reached(), Some(ShipStatus::Delivered));
        assert_eq!(tracked("DE"), Tracked::Exception);
        assert_eq!(tracked("??"), Tracked::Unknown);
    }
}
