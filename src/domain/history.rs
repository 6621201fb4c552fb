//! A stock record's movement history (api.md, Movement history): what each
//! committed fact did to each record, why, and on whose word.
//!
//! One derivation: `Model::apply_noting` notes every record a fact moves
//! (`Moved`), and `cause` names why from the fact alone. Whoever applies
//! the journal (the snapshotter's copy on a leader and on a follower)
//! joins the two into `Movement`s; `persistence::history` keeps them
//! outside the journal, which is trimmed behind snapshots.

use serde::{Deserialize, Serialize};

use super::catalog::{LocIdx, SkuIdx};
use super::event::{Event, SupplyFact, TransferFact};
use super::ids::LocationId;
use super::order::OrderEvent;
use super::reservation::Status;
use super::stock::{AdjustReason, Bucket, StockDelta, StockRecord, Unsellable};
use super::TimeMs;

/// What kind of step moved a record (api.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    Count,
    Adjustment,
    Hold,
    Confirm,
    Release,
    Expiry,
    Fulfil,
    Return,
    TransferOut,
    TransferIn,
    Receipt,
    Unsellable,
}

impl MoveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveKind::Count => "count",
            MoveKind::Adjustment => "adjustment",
            MoveKind::Hold => "hold",
            MoveKind::Confirm => "confirm",
            MoveKind::Release => "release",
            MoveKind::Expiry => "expiry",
            MoveKind::Fulfil => "fulfil",
            MoveKind::Return => "return",
            MoveKind::TransferOut => "transfer_out",
            MoveKind::TransferIn => "transfer_in",
            MoveKind::Receipt => "receipt",
            MoveKind::Unsellable => "unsellable",
        }
    }
}

/// Whose word a change was made on: a token's role, and a store token's
/// location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct By {
    pub role: ByRole,
    pub location: Option<LocationId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ByRole {
    Admin,
    Channel,
    Store,
}

impl ByRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ByRole::Admin => "admin",
            ByRole::Channel => "channel",
            ByRole::Store => "store",
        }
    }
}

/// A record as a fact left it, noted by `Model::apply_noting`: the delta
/// it applied and the record after it; `applied` is false for a step
/// noted without a change of the record (a confirm's lines), true for
/// every change, a zero delta's included (its version moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub sku: SkuIdx,
    pub location: LocIdx,
    pub delta: StockDelta,
    pub after: StockRecord,
    pub applied: bool,
}

/// Why a fact moved stock: a movement but for the record's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause<'a> {
    pub at_ms: TimeMs,
    pub kind: MoveKind,
    pub reason: Option<AdjustReason>,
    /// The reservation, order or adjustment key.
    pub reference: Option<&'a str>,
    pub by: Option<&'a By>,
    pub note: Option<&'a str>,
}

impl Cause<'_> {
    fn of(at_ms: TimeMs, kind: MoveKind) -> Self {
        Cause {
            at_ms,
            kind,
            reason: None,
            reference: None,
            by: None,
            note: None,
        }
    }
}

/// Why `e` moves stock, if it can: the rest of a movement is what
/// `apply_noting` notes.
pub fn cause(e: &Event) -> Option<Cause<'_>> {
    Some(match e {
        Event::Counted { at_ms, by, .. } => Cause {
            by: by.as_ref(),
            ..Cause::of(*at_ms, MoveKind::Count)
        },
        Event::Adjusted {
            delta,
            reason,
            at_ms,
            key,
            by,
            note,
            unsellable,
            ..
        } => Cause {
            reason: Some(*reason),
            reference: key.as_deref(),
            by: by.as_ref(),
            note: note.as_deref(),
            // Units set apart or back, on_hand unmoved.
            ..Cause::of(
                *at_ms,
                if *delta == 0 && unsellable.is_some() {
                    MoveKind::Unsellable
                } else {
                    MoveKind::Adjustment
                },
            )
        },
        Event::ReservationHeld {
            id, created_ms, by, ..
        } => Cause {
            reference: Some(id.as_str()),
            by: by.as_ref(),
            ..Cause::of(*created_ms, MoveKind::Hold)
        },
        Event::ReservationStatus {
            id,
            status,
            at_ms,
            by,
        } => {
            let kind = match status {
                Status::Held => return None,
                Status::Confirmed => MoveKind::Confirm,
                Status::Released => MoveKind::Release,
                Status::Expired => MoveKind::Expiry,
                Status::Fulfilled => MoveKind::Fulfil,
            };
            Cause {
                reference: Some(id.as_str()),
                by: by.as_ref(),
                ..Cause::of(*at_ms, kind)
            }
        }
        Event::Order { id, events } => {
            let at_ms = events.iter().find_map(|e| match e {
                OrderEvent::Returned { at_ms, .. } => Some(*at_ms),
                _ => None,
            })?;
            Cause {
                reference: Some(id.as_str()),
                ..Cause::of(at_ms, MoveKind::Return)
            }
        }
        // A transfer's shipment moves both ends (off the sender's on_hand,
        // in transit at the receiver's), its receipt the receiver's.
        Event::Transfer {
            id,
            step,
            at_ms,
            by,
            ..
        } => {
            let kind = match step {
                TransferFact::Shipped | TransferFact::ForOrder { .. } => MoveKind::TransferOut,
                TransferFact::Received { .. } => MoveKind::TransferIn,
                TransferFact::Requested { .. } | TransferFact::Cancelled => return None,
            };
            Cause {
                reference: Some(id.as_str()),
                by: by.as_ref(),
                ..Cause::of(*at_ms, kind)
            }
        }
        // A supply's delivery; its announcement and cancel move only
        // incoming units, which movements do not tell.
        Event::Supply {
            id,
            step: SupplyFact::Received { .. },
            at_ms,
            by,
        } => Cause {
            reference: Some(id.as_str()),
            by: by.as_ref(),
            ..Cause::of(*at_ms, MoveKind::Receipt)
        },
        Event::Supply { .. } | Event::Webhook { .. } => return None,
        // A split or an extension moves no units; a catalog write none.
        Event::ReservationSplit { .. }
        | Event::ReservationExtended { .. }
        | Event::SkuPut { .. }
        | Event::SkusPut { .. }
        | Event::LocationPut { .. } => return None,
    })
}

/// One movement as the history keeps it (its record and place are its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub at_ms: TimeMs,
    pub kind: MoveKind,
    pub on_hand: i64,
    pub reserved: i64,
    pub delta_on_hand: i64,
    pub delta_reserved: i64,
    pub reason: Option<AdjustReason>,
    pub reference: Option<String>,
    pub by: Option<By>,
    pub note: Option<String>,
    /// The record's unsellable units after it, if any (added later).
    #[serde(default)]
    pub unsellable: Option<Unsellable>,
    /// The units it moved into (or out of) a bucket (added later).
    #[serde(default)]
    pub delta_unsellable: Option<(Bucket, i64)>,
    /// The record's units in transit after it, and its change (added
    /// later).
    #[serde(default)]
    pub in_transit: i64,
    #[serde(default)]
    pub delta_in_transit: i64,
}

impl Movement {
    pub fn new(c: &Cause<'_>, m: &Moved) -> Movement {
        // A shipment is a transfer out at the sender and, at the receiver
        // (units now in transit to it), a transfer in.
        let kind = match c.kind {
            MoveKind::TransferOut if m.delta.in_transit > 0 => MoveKind::TransferIn,
            k => k,
        };
        Movement {
            at_ms: c.at_ms,
            kind,
            on_hand: m.after.on_hand,
            reserved: m.after.reserved,
            delta_on_hand: m.delta.on_hand,
            delta_reserved: m.delta.reserved,
            reason: c.reason,
            reference: c.reference.map(str::to_string),
            by: c.by.cloned(),
            note: c.note.map(str::to_string),
            unsellable: Some(m.after.unsellable).filter(|u| !u.is_empty()),
            delta_unsellable: m.delta.unsellable,
            in_transit: m.after.in_transit,
            delta_in_transit: m.delta.in_transit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Movements kept before the unsellable fields existed still read.
    #[test]
    fn movements_kept_before_the_buckets_decode() {
        #[derive(Serialize)]
        struct Old {
            at_ms: TimeMs,
            kind: MoveKind,
            on_hand: i64,
            reserved: i64,
            delta_on_hand: i64,
            delta_reserved: i64,
            reason: Option<AdjustReason>,
            reference: Option<String>,
            by: Option<By>,
            note: Option<String>,
        }
        let old = Old {
            at_ms: 7,
            kind: MoveKind::Count,
            on_hand: 5,
            reserved: 1,
            delta_on_hand: 5,
            delta_reserved: 0,
            reason: None,
            reference: None,
            by: None,
            note: None,
        };
        let bytes = rmp_serde::to_vec(&old).expect("encode");
        let m: Movement = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(
            (m.at_ms, m.on_hand, m.unsellable, m.delta_unsellable),
            (7, 5, None, None)
        );
    }
}
