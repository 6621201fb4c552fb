//! Journal record bodies: facts, each with a stable name. Replay applies them;
//! it never decides again.
//!
//! Format stability: the enum is encoded by rmp-serde with its variant names
//! (`#[serde(tag)]` is not used so that the encoding stays compact). Renaming a
//! variant or a field breaks old journals: add new variants instead.

use serde::{Deserialize, Serialize};

use super::catalog::{Location, Sku};
use super::ids::{LocationId, ReservationId, SkuId};
use super::reservation::{Line, Reservation, Status};
use super::stock::AdjustReason;
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
    },
    Adjusted {
        sku: SkuId,
        location: LocationId,
        delta: i64,
        reason: AdjustReason,
    },
    /// A whole cart: the unit of atomicity of a multi-line reservation.
    ReservationHeld {
        id: ReservationId,
        lines: Vec<Line>,
        created_ms: TimeMs,
        expires_at_ms: TimeMs,
        idem: Option<IdemKey>,
    },
    /// Confirmed, released, expired or fulfilled.
    ReservationStatus {
        id: ReservationId,
        status: Status,
        at_ms: TimeMs,
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
}

impl Event {
    /// The record of a reservation just held: the whole cart in one record.
    pub fn held(r: &Reservation, idem: Option<IdemKey>) -> Event {
        Event::ReservationHeld {
            id: r.id.clone(),
            lines: r.lines.clone(),
            created_ms: r.created_ms,
            expires_at_ms: r.expires_at_ms,
            idem,
        }
    }
}

/// FNV-1a, 64 bits: a stable hash for the idempotency scope and body (stable
/// across builds and versions, unlike the std or ahash hashers).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
