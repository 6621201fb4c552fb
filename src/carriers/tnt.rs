//! TNT, through ExpressConnect (XML posted as the form field `xml_in`).
//! Shipping: an `ESHIPPER` document (its `LOGIN`, the `CONSIGNMENTBATCH`
//! of sender and consignment, the `ACTIVITY` to create, ship and print
//! it) answers `COMPLETE:{key}`; `GET_RESULT:{key}` answers the
//! consignment number (`CREATE/CONNUMBER`, `SUCCESS` Y) and
//! `GET_LABEL:{key}` the label, an XML document TNT's style sheet renders
//! (kept as format "XML"). Tracking: a `TrackRequest` of up to 30
//! consignment numbers answers each one's `SummaryCode` (`INT` in
//! transit, `DEL` delivered, `EXC` an exception, `CNF` not found).
//! Errors come as `<parse_error>`, `<runtime_error>` or `ERROR` elements.
//!
//! ExpressConnect cancels nothing: a consignment not collected is left
//! to lapse (TNT charges what it collects); `cancel` says so.
//!
//! `base_url`: `https://express.tnt.com/expressconnect/shipping/ship`;
//! `tracking_url`: `https://express.tnt.com/expressconnect/track.do`.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::xml::{element, escape};
use super::{Carrier, CarrierError, Label, LabelRequest, Tracked, TRACK_BATCH};
use crate::domain::address::Address;
use crate::payments::section::{http_url, string_defaults, CallsSection, Secrets};
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct TntConfig {
    pub base_url: String,
    pub tracking_url: String,
    pub company: String,
    pub password: String,
    /// The sender's TNT account number.
    pub account: String,
    /// "15N" (Express), "48N" (Economy Express)...
    pub service: String,
    pub policy: Policy,
}

/// `[carriers.tnt]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TntSection {
    #[serde(default = "base_url")]
    pub base_url: String,
    #[serde(default = "tracking_url")]
    pub tracking_url: String,
    /// The sender's TNT account number.
    pub account: String,
    #[serde(default = "service")]
    pub service: String,
    #[serde(default = "company_env")]
    pub company_env: String,
    #[serde(default = "password_env")]
    pub password_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    base_url = "https://express.tnt.com/expressconnect/shipping/ship",
    tracking_url = "https://express.tnt.com/expressconnect/track.do",
    service = "15N",
    company_env = "HOLDFAST_TNT_COMPANY",
    password_env = "HOLDFAST_TNT_PASSWORD",
}

impl TntSection {
    /// The adapter's configuration, its credentials read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<TntConfig, String> {
        let at = "carriers.tnt";
        http_url(at, &self.base_url)?;
        http_url(at, &self.tracking_url)?;
        Ok(TntConfig {
            base_url: self.base_url.clone(),
            tracking_url: self.tracking_url.clone(),
            company: secrets.get(at, &self.company_env)?,
            password: secrets.get(at, &self.password_env)?,
            account: self.account.clone(),
            service: self.service.clone(),
            policy: self.calls.policy(at)?,
        })
    }
}

pub struct Tnt {
    cfg: TntConfig,
    caller: Caller,
}

fn party(tag: &str, a: &Address, extra: &str) -> String {
    format!(
        "<{tag}><COMPANYNAME>{}</COMPANYNAME><STREETADDRESS1>{}</STREETADDRESS1>\
         <CITY>{}</CITY><POSTCODE>{}</POSTCODE><COUNTRY>{}</COUNTRY>{extra}\
         <CONTACTNAME>{}</CONTACTNAME><CONTACTTELEPHONE>{}</CONTACTTELEPHONE></{tag}>",
        escape(&a.name),
        escape(&a.street),
        escape(&a.city),
        escape(&a.postal_code),
        escape(&a.country),
        escape(&a.name),
        escape(&a.phone)
    )
}

/// An answer's refusal: the error ExpressConnect names.
fn refused(what: &str, a: &Answer) -> CarrierError {
    let text = String::from_utf8_lossy(&a.body);
    let why = element(&text, "DESCRIPTION")
        .or_else(|| element(&text, "error_reason"))
        .or_else(|| element(&text, "ERROR"))
        .unwrap_or_else(|| text.chars().take(200).collect());
    CarrierError::Rejected(format!("tnt {what} {}: {why}", a.status))
}

fn tracked(code: &str) -> Tracked {
    match code {
        "INT" => Tracked::InTransit,
        "DEL" => Tracked::Delivered,
        "EXC" => Tracked::Exception,
        _ => Tracked::Unknown,
    }
}

impl Tnt {
    pub fn new(cfg: TntConfig) -> Result<Tnt, String> {
        let caller = Caller::new("tnt", cfg.policy)?;
        Ok(Tnt { cfg, caller })
    }

    async fn post(
        &self,
        url: &str,
        xml_in: String,
        idempotent: bool,
    ) -> Result<Answer, CarrierError> {
        self.caller
            .send(idempotent, |c| {
                c.post(url).form(&[("xml_in", xml_in.as_str())])
            })
            .await
            .map_err(CarrierError::from)
    }
}

impl Carrier for Tnt {
    fn name(&self) -> &str {
        "tnt"
    }

    fn create_label<'a>(
        &'a self,
        r: &'a LabelRequest,
    ) -> BoxFuture<'a, Result<Label, CarrierError>> {
        Box::pin(async move {
            let date = time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!("[day]/[month]/[year]"))
                .map_err(|e| CarrierError::Rejected(e.to_string()))?;
            let kg = format!("{:.3}", f64::from(r.weight_g.max(100)) / 1000.0);
            let conref = escape(&r.reference);
            let doc = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ESHIPPER>\
                 <LOGIN><COMPANY>{}</COMPANY><PASSWORD>{}</PASSWORD><APPID>EC</APPID><APPVERSION>3.1</APPVERSION></LOGIN>\
                 <CONSIGNMENTBATCH>{}\
                 <CONSIGNMENT><CONREF>{conref}</CONREF><DETAILS>{}<CUSTOMERREF>{conref}</CUSTOMERREF>\
                 <CONTYPE>N</CONTYPE><PAYMENTIND>S</PAYMENTIND><ITEMS>1</ITEMS><TOTALWEIGHT>{kg}</TOTALWEIGHT>\
                 <SERVICE>{}</SERVICE><PACKAGE><ITEMS>1</ITEMS><DESCRIPTION>Parcel</DESCRIPTION><WEIGHT>{kg}</WEIGHT></PACKAGE>\
                 </DETAILS></CONSIGNMENT></CONSIGNMENTBATCH>\
                 <ACTIVITY><CREATE><CONREF>{conref}</CONREF></CREATE><SHIP><CONREF>{conref}</CONREF></SHIP>\
                 <PRINT><LABEL><CONREF>{conref}</CONREF></LABEL></PRINT></ACTIVITY></ESHIPPER>",
                escape(&self.cfg.company),
                escape(&self.cfg.password),
                party(
                    "SENDER",
                    &r.from,
                    &format!(
                        "<ACCOUNT>{}</ACCOUNT><COLLECTION><SHIPDATE>{date}</SHIPDATE></COLLECTION>",
                        escape(&self.cfg.account)
                    )
                ),
                party("RECEIVER", &r.to, ""),
                escape(&self.cfg.service),
            );
            // No idempotency key: sent again only when surely not done.
            let a = self.post(&self.cfg.base_url, doc, false).await?;
            let text = String::from_utf8_lossy(&a.body).to_string();
            let Some(key) = text.trim().strip_prefix("COMPLETE:") else {
                return Err(refused("ESHIPPER", &a));
            };
            let key = key.trim().to_string();
            let a = self
                .post(&self.cfg.base_url, format!("GET_RESULT:{key}"), true)
                .await?;
            let result = String::from_utf8_lossy(&a.body).to_string();
            if element(&result, "SUCCESS").as_deref() != Some("Y") {
                return Err(refused("GET_RESULT", &a));
            }
            let number = element(&result, "CONNUMBER").filter(|n| !n.is_empty());
            let a = self
                .post(&self.cfg.base_url, format!("GET_LABEL:{key}"), true)
                .await?;
            let label = String::from_utf8_lossy(&a.body).to_string();
            match (a.status, number) {
                (200, Some(tracking)) if label.contains("<labelResponse") => Ok(Label {
                    tracking,
                    format: "XML".into(),
                    data: label.into_bytes(),
                }),
                _ => Err(refused("GET_LABEL", &a)),
            }
        })
    }

    fn track<'a>(
        &'a self,
        tracking: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Tracked)>, CarrierError>> {
        Box::pin(async move {
            let numbers: String = tracking
                .iter()
                .take(TRACK_BATCH)
                .map(|t| format!("<ConsignmentNumber>{}</ConsignmentNumber>", escape(t)))
                .collect();
            let doc = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><TrackRequest locale=\"en_US\" version=\"3.1\">\
                 <SearchCriteria marketType=\"INTERNATIONAL\">{numbers}</SearchCriteria>\
                 <LevelOfDetail><Summary/></LevelOfDetail></TrackRequest>"
            );
            let a = self.post(&self.cfg.tracking_url, doc, true).await?;
            if a.status != 200 {
                return Err(refused("TrackRequest", &a));
            }
            let text = String::from_utf8_lossy(&a.body).to_string();
            // One piece per consignment (each ends with its closing tag).
            Ok(text
                .split("</Consignment>")
                .filter_map(|c| {
                    let number = element(c, "ConsignmentNumber")?;
                    let code = element(c, "SummaryCode")?;
                    (code != "CNF").then(|| (number, tracked(&code)))
                })
                .collect())
        })
    }

    fn cancel<'a>(&'a self, tracking: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            Err(CarrierError::Rejected(format!(
                "tnt: ExpressConnect cancels nothing: consignment {tracking} lapses if not collected"
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_codes_map_to_places() {
        assert_eq!(tracked("INT"), Tracked::InTransit);
        assert_eq!(tracked("DEL"), Tracked::Delivered);
        assert_eq!(tracked("EXC"), Tracked::Exception);
        assert_eq!(tracked("???"), Tracked::Unknown);
    }
}
