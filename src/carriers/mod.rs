//! Carriers behind one trait: a label for a shipment (its tracking number
//! and the printable label), tracking, cancelling a label not used.
//!
//! - `fedex`: FedEx's Ship and Track APIs (OAuth client credentials).
//!
//! DHL, TNT and Correos are not built yet (issue 7).

pub mod fedex;

use futures::future::BoxFuture;

use crate::domain::address::Address;
use crate::domain::order::ShipStatus;

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
    /// "PDF", "ZPLII", "PNG".
    pub format: String,
    pub data: Vec<u8>,
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
