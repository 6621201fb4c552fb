//! Carriers behind one trait: a label for a shipment (its tracking number
//! and the printable label), tracking, cancelling a label not used.
//!
//! - `fedex`: FedEx's Ship and Track APIs (OAuth client credentials).
//! - `dhl`: DHL's Parcel DE Shipping API and its Unified tracking API.
//! - `dhl_express`: DHL Express's MyDHL API (shipments and tracking).
//! - `correos`: Correos' pre-registration web service (SOAP) and tracking.
//! - `tnt`: TNT's ExpressConnect shipping and tracking (XML).

pub mod correos;
pub mod dhl;
pub mod dhl_express;
pub mod fedex;
pub mod tnt;
pub mod xml;

use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;

use crate::domain::address::Address;
use crate::domain::order::ShipStatus;
use crate::persistence::Storage;

/// A parcel to label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequest {
    /// What the carrier's records name it by: `{order}/{shipment}`.
    pub reference: String,
    pub from: Address,
    pub to: Address,
    pub weight_g: u32,
}

/// A label made: the parcel's tracking number and the label to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub tracking: String,
    /// "PDF", "ZPLII", "PNG", "XML" (TNT's, rendered by its style sheet).
    pub format: String,
    pub data: Vec<u8>,
}

impl Label {
    /// A label from a carrier's answer: its tracking number and its
    /// document in base64, both needed.
    pub fn decoded(
        carrier: &str,
        tracking: Option<&str>,
        b64: Option<&str>,
        format: Option<&str>,
    ) -> Result<Label, CarrierError> {
        use base64::Engine as _;
        let data = b64.and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok());
        match (tracking.filter(|t| !t.is_empty()), data) {
            (Some(t), Some(data)) => Ok(Label {
                tracking: t.to_string(),
                format: format.unwrap_or("PDF").to_string(),
                data,
            }),
            _ => Err(CarrierError::Rejected(format!(
                "{carrier}: no tracking number or label in the answer"
            ))),
        }
    }
}

/// Where a parcel is, as the carrier tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// The label exists; the carrier has not seen the parcel.
    Created,
    PickedUp,
    InTransit,
    OutForDelivery,
    Delivered,
    /// A delivery problem (the carrier retries or returns it).
    Exception,
    Cancelled,
    Unknown,
}

impl Tracked {
    /// The shipment status a parcel at this point has reached.
    pub fn reached(self) -> Option<ShipStatus> {
        match self {
            Tracked::PickedUp | Tracked::InTransit | Tracked::OutForDelivery => {
                Some(ShipStatus::Shipped)
            }
            Tracked::Delivered => Some(ShipStatus::Delivered),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Not reached, or it failed: try again later.
    #[error("carrier unavailable: {0}")]
    Unavailable(String),
    /// It refused the request itself (an address it cannot serve, bad
    /// credentials): retrying cannot help.
    #[error("carrier refused the request: {0}")]
    Rejected(String),
}

impl From<crate::wire::CallError> for CarrierError {
    /// Its text says when the call may have been done.
    fn from(e: crate::wire::CallError) -> Self {
        CarrierError::Unavailable(e.why)
    }
}

/// Tracking numbers asked at once at most (FedEx takes 30).
pub const TRACK_BATCH: usize = 30;

pub trait Carrier: Send + Sync {
    fn name(&self) -> &str;
    fn create_label<'a>(
        &'a self,
        r: &'a LabelRequest,
    ) -> BoxFuture<'a, Result<Label, CarrierError>>;
    /// Where each of up to `TRACK_BATCH` parcels is (those the carrier
    /// knows; the others are left out).
    fn track<'a>(
        &'a self,
        tracking: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Tracked)>, CarrierError>>;
    /// Cancels a label whose parcel the carrier has not picked up.
    fn cancel<'a>(&'a self, tracking: &'a str) -> BoxFuture<'a, Result<(), CarrierError>>;
}

/// The carriers of a server and how one is chosen for a parcel: the first
/// rule that fits the order's channel and the destination's country, else
/// the default.
#[derive(Clone)]
pub struct Shipping {
    pub carriers: Vec<(String, Arc<dyn Carrier>)>,
    pub routing: crate::payments::Routing,
    /// Where labels are kept (`{data_dir}/labels`), through the storage
    /// the journal uses.
    pub labels: PathBuf,
    pub storage: Arc<dyn Storage>,
}

impl Shipping {
    pub fn by_name(&self, name: &str) -> Option<Arc<dyn Carrier>> {
        self.carriers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
    }

    /// The carrier for a parcel of an order of `channel` to `country`, if
    /// any is configured for it.
    pub fn choose(&self, channel: Option<&str>, country: &str) -> Option<Arc<dyn Carrier>> {
        self.by_name(self.routing.choose(channel, Some(country))?)
    }

    /// The file of a shipment's label.
    fn label_path(&self, order: &str, shipment: u32, format: &str) -> PathBuf {
        let ext = match format {
            "PDF" => "pdf",
            "PNG" => "png",
            "XML" => "xml",
            _ => "zpl",
        };
        self.labels.join(format!("{order}.{shipment}.{ext}"))
    }

    /// Keeps a shipment's label durably (written, fdatasynced, its
    /// directory entry synced) before the order records its parcel: a
    /// recorded parcel always has its label. A write cut by a crash leaves
    /// a label no order names, written again when the shipment is packed
    /// again.
    pub fn keep_label(&self, order: &str, shipment: u32, label: &Label) -> std::io::Result<()> {
        self.storage.create_dir_all(&self.labels)?;
        let mut f = self
            .storage
            .create(&self.label_path(order, shipment, &label.format))?;
        f.write_all(&label.data)?;
        f.sync_data()?;
        self.storage.sync_dir(&self.labels)
    }

    /// A shipment's label as kept.
    pub fn label(&self, order: &str, shipment: u32, format: &str) -> std::io::Result<Vec<u8>> {
        self.storage.read(&self.label_path(order, shipment, format))
    }
}

/// A field's text in `parts` pieces of at most `max` characters each, cut
/// at spaces where it can be (a carrier's name or street continued in its
/// next field): a label the carrier refuses for a long field leaves a paid
/// order unshipped. What does not fit the last piece is cut off there.
pub fn fit(text: &str, max: usize, parts: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() && out.len() < parts {
        let last = out.len() + 1 == parts;
        let piece: String = if rest.chars().count() <= max || last {
            rest.chars().take(max).collect()
        } else {
            let head: String = rest.chars().take(max + 1).collect();
            // The last space within the limit (a word is not split), or
            // a hard cut for a word longer than the field.
            match head.rfind(' ').filter(|i| *i > 0) {
                Some(i) => head[..i].to_string(),
                None => head.chars().take(max).collect(),
            }
        };
        rest = rest[piece.len()..].trim_start();
        out.push(piece.trim_end().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn long_fields_are_cut_at_spaces_into_the_next_field() {
        assert_eq!(fit("Via Roma 1", 50, 2), vec!["Via Roma 1"]);
        assert_eq!(fit("aaa bbb ccc", 7, 2), vec!["aaa bbb", "ccc"]);
        assert_eq!(fit("aaa bbb ccc", 5, 2), vec!["aaa", "bbb c"]);
        assert_eq!(fit("abcdefgh", 3, 3), vec!["abc", "def", "gh"]);
        // Characters, not bytes.
        assert_eq!(fit("ñññ ñ", 3, 1), vec!["ñññ"]);
        assert_eq!(fit("Ángeles Ruiz", 8, 2), vec!["Ángeles", "Ruiz"]);
        assert!(fit("", 5, 2).is_empty());
        for piece in fit(&"word ".repeat(40), 35, 3) {
            assert!(piece.chars().count() <= 35, "{piece}");
        }
    }
}
