//! Journal record bodies: facts, each with a stable name. Replay applies them;
//! it never decides again.
//!
//! Format stability: the enum is encoded by rmp-serde with its variant names
//! (`#[serde(tag)]` is not used so that the encoding stays compact). Renaming a
//! variant or a field breaks old journals: add new variants instead.

use serde::{Deserialize, Serialize};

use super::catalog::{Location, Sku};
use super::history::By;
// The hash moved below `order`, which uses it too; named here as before.
pub use super::hash::fnv1a64;
use super::ids::{LocationId, ReservationId, SkuId};
use super::reservation::{Conversion, Line, Reservation, Status};
use super::stock::{AdjustReason, Bucket};
use super::TimeMs;

/// Version of the record body format, written in each segment header.
pub const EVENT_FORMAT_VERSION: u32 = 1;

/// A count of one record, with the deltas it applied at the time (replay adds
/// the deltas, so it does not depend on the interleaving with other writers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub sku: SkuId,
    pub location: LocationId,
    pub on_hand: i64,
    pub safety_stock: i64,
    pub on_hand_delta: i64,
    pub safety_stock_delta: i64,
    /// When the count was taken, if earlier than it was recorded (a count
    /// as of a time): `on_hand` is the figure counted then, and the delta
    /// includes what moved since. `None`: taken when recorded (and in
    /// records written before the field existed).
    #[serde(default)]
    pub counted_at: Option<TimeMs>,
}

/// The idempotency key that created a reservation, so that the key survives a
/// restart (api.md: remembered at least 24 hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemKey {
    /// FNV-1a of the token: the token itself is never written to disk.
    pub scope: u64,
    pub key: String,
    /// FNV-1a of the request body.
    pub body_hash: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    SkuPut {
        sku: SkuId,
        value: Sku,
    },
    LocationPut {
        location: LocationId,
        value: Location,
    },
    /// One count or a batch of them, applied as one record.
    Counted {
        items: Vec<Count>,
        /// When (for the rotation window). Records written before the
        /// field existed decode as 0: outside any window.
        #[serde(default)]
        at_ms: TimeMs,
        /// Whose word (added later: none in older records).
        #[serde(default)]
        by: Option<By>,
    },
    Adjusted {
        sku: SkuId,
        location: LocationId,
        delta: i64,
        reason: AdjustReason,
        /// When (for the rotation window); 0 in older records.
        #[serde(default)]
        at_ms: TimeMs,
        /// The key it is applied once under (an order's restock on a
        /// cluster: `AdjustKey`); none in older records.
        #[serde(default)]
        key: Option<String>,
        /// Whose word (added later: none in older records).
        #[serde(default)]
        by: Option<By>,
        /// What the person adjusting wrote beside the reason (added
        /// later), at most `ADJUST_NOTE_MAX` bytes.
        #[serde(default)]
        note: Option<String>,
        /// Units into (positive) or out of a bucket of unsellable stock
        /// (added later: none in older records). With a `delta` of 0 it
        /// only sets units apart or back.
        #[serde(default)]
        unsellable: Option<(Bucket, i64)>,
    },
    /// A whole cart: the unit of atomicity of a multi-line reservation.
    ReservationHeld {
        id: ReservationId,
        lines: Vec<Line>,
        created_ms: TimeMs,
        expires_at_ms: TimeMs,
        idem: Option<IdemKey>,
        /// Whose word (added later: none in older records).
        #[serde(default)]
        by: Option<By>,
    },
    /// Confirmed, released, expired or fulfilled.
    ReservationStatus {
        id: ReservationId,
        status: Status,
        at_ms: TimeMs,
        /// Whose word: none for the engine's own (an expiry) and in
        /// older records.
        #[serde(default)]
        by: Option<By>,
    },
    ReservationExtended {
        id: ReservationId,
        expires_at_ms: TimeMs,
        at_ms: TimeMs,
    },
    /// A bulk catalog import: every SKU of it, applied as one record.
    /// (Added after the first journal format: new variants go last, so
    /// older records keep their variant index.)
    SkusPut {
        skus: Vec<(SkuId, Sku)>,
    },
    /// Facts about one order, applied together (placing an order and its
    /// payment's answer are one record).
    Order {
        id: String,
        events: Vec<super::order::OrderEvent>,
    },
    /// A held reservation turned into an order's reservations: `from` is
    /// released and each of `into` holds a part of its lines, in one
    /// record. No stock moves: every unit stays reserved throughout, so
    /// no other buyer can take it in between.
    ReservationSplit {
        from: ReservationId,
        into: Vec<(ReservationId, Vec<Line>)>,
        at_ms: TimeMs,
        expires_at_ms: TimeMs,
    },
    /// A step of a transfer between two locations (`domain::transfer`),
    /// decided by its book: the stock it moves follows from the step and
    /// the transfer as requested.
    Transfer {
        id: String,
        step: TransferFact,
        at_ms: TimeMs,
        by: Option<By>,
    },
    /// A step of incoming supply at a location (`domain::supply`),
    /// decided by its book: the stock it moves follows from the step and
    /// the supply as expected.
    Supply {
        id: String,
        step: SupplyFact,
        at_ms: TimeMs,
        by: Option<By>,
    },
    /// A step of a webhook subscription (`domain::webhook`): moves no
    /// stock and publishes nothing.
    Webhook {
        id: String,
        fact: super::webhook::WebhookFact,
        at_ms: TimeMs,
    },
}

/// A supply's step as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplyFact {
    Expected {
        location: LocationId,
        expected_ms: TimeMs,
        lines: Vec<(SkuId, u32)>,
    },
    /// A delivery: what arrived, per SKU, under the client's key if any.
    Received {
        lines: Vec<(SkuId, u32)>,
        key: Option<String>,
        /// The units sold against this supply that it brought, converted
        /// into reserved units on hand first-in first-out
        /// (`reservation::decide_conversions`; added later: none in
        /// older records).
        #[serde(default)]
        converted: Vec<Conversion>,
    },
    Cancelled,
}

impl SupplyFact {
    /// The step it records (none for the supply's announcement itself).
    pub fn step(&self) -> Option<super::supply::SupplyStep> {
        use super::supply::SupplyStep;
        match self {
            SupplyFact::Expected { .. } => None,
            SupplyFact::Received { lines, key, .. } => {
                Some(SupplyStep::Receive(lines.clone(), key.clone()))
            }
            SupplyFact::Cancelled => Some(SupplyStep::Cancel),
        }
    }
}

/// A transfer's step as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferFact {
    Requested {
        from: LocationId,
        to: LocationId,
        lines: Vec<(SkuId, u32)>,
    },
    Shipped,
    /// What arrived, per SKU (a SKU not named: none).
    Received {
        lines: Vec<(SkuId, u32)>,
    },
    Cancelled,
    /// An order's transfer, made shipped as its goods leave for the
    /// pickup store (added later: new variants go last).
    ForOrder {
        from: LocationId,
        to: LocationId,
        lines: Vec<(SkuId, u32)>,
        order: String,
        shipment: u32,
    },
}

impl TransferFact {
    /// The step it records (none for the request itself).
    pub fn step(&self) -> Option<super::transfer::TransferStep> {
        use super::transfer::TransferStep;
        match self {
            TransferFact::Requested { .. } | TransferFact::ForOrder { .. } => None,
            TransferFact::Shipped => Some(TransferStep::Ship),
            TransferFact::Received { lines } => Some(TransferStep::Receive(lines.clone())),
            TransferFact::Cancelled => Some(TransferStep::Cancel),
        }
    }
}

impl Event {
    /// The record of a reservation just held: the whole cart in one
    /// record, on `by`'s word.
    pub fn held(r: &Reservation, idem: Option<IdemKey>, by: Option<By>) -> Event {
        Event::ReservationHeld {
            id: r.id.clone(),
            lines: r.lines.clone(),
            created_ms: r.created_ms,
            expires_at_ms: r.expires_at_ms,
            idem,
            by,
        }
    }
}

/// Units sold by an adjustment: a sale takes stock out.
pub fn sold_by_adjustment(reason: AdjustReason, delta: i64) -> u32 {
    if reason == AdjustReason::Sale && delta < 0 {
        u32::try_from(-delta).unwrap_or(u32::MAX)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written before `at_ms` existed still decode (as 0).
    #[test]
    fn older_stock_records_decode_with_time_zero() {
        #[derive(Serialize)]
        enum Old {
            #[allow(dead_code)]
            SkuPut,
            #[allow(dead_code)]
            LocationPut,
            Counted {
                items: Vec<Count>,
            },
            Adjusted {
                sku: SkuId,
                location: LocationId,
                delta: i64,
                reason: AdjustReason,
            },
        }
        let sku = SkuId::parse("A1").expect("id");
        let location = LocationId::parse("S1").expect("id");
        let old = rmp_serde::to_vec(&Old::Adjusted {
            sku: sku.clone(),
            location: location.clone(),
            delta: -2,
            reason: AdjustReason::Sale,
        })
        .expect("encode");
        let e: Event = rmp_serde::from_slice(&old).expect("decode");
        assert_eq!(
            e,
            Event::Adjusted {
                sku: sku.clone(),
                location: location.clone(),
                delta: -2,
                reason: AdjustReason::Sale,
                at_ms: 0,
                key: None,
                by: None,
                note: None,
                unsellable: None,
            }
        );
        let old = rmp_serde::to_vec(&Old::Counted { items: vec![] }).expect("encode");
        let e: Event = rmp_serde::from_slice(&old).expect("decode");
        assert_eq!(
            e,
            Event::Counted {
                items: vec![],
                at_ms: 0,
                by: None,
            }
        );
        assert_eq!(sold_by_adjustment(AdjustReason::Sale, -3), 3);
        assert_eq!(sold_by_adjustment(AdjustReason::Damage, -3), 0);
        assert_eq!(sold_by_adjustment(AdjustReason::Sale, 3), 0);
    }
}
