//! Pure logic of the engine: no I/O, no actix, no clock reads.
//!
//! - `ids`: validated identifiers (`SkuId`, `LocationId`, `ReservationId`, ...).
//! - `catalog`: SKUs and locations, interned to dense indices.
//! - `stock`: one stock record and the decisions on it (hold, count, adjust).
//! - `reservation`: a reservation's lines, status and transitions.
//! - `order`: the order state machine: shipments, payment, cancel, returns.
//! - `rotation`: the rotation index of a record (sales over average stock).
//! - `recent_moves`: each record's recent on_hand movements and last
//!   count, for counts taken earlier than they arrive.
//! - `sourcing`: the fulfilment planner: which location serves which line.
//! - `transfer`: a transfer of stock between two locations, its steps and
//!   the records each moves.
//! - `book`: transfers and supplies by id, bounded alike in the engine
//!   and in replay.
//! - `supply`: incoming supply (a purchase order, an advance shipping
//!   notice) at a location, its receipts and the records each moves.
//! - `event`: the journal record bodies: facts that replay applies.
//! - `published`: the events published to the rest of the business, derived
//!   from each fact in commit order.
//! - `history`: what each fact did to each stock record, and why (the
//!   movement history's entries).
//! - `hash`: a stable hash (idempotency scopes, restock keys, shards).
//! - `model`: the whole engine state in one struct, decide + apply; the
//!   reference the actors and the property tests are held to.

pub mod address;
pub mod book;
pub mod catalog;
pub mod event;
pub mod hash;
pub mod history;
pub mod ids;
pub mod model;
pub mod order;
pub mod published;
pub mod recent_moves;
pub mod reservation;
pub mod rotation;
pub mod sourcing;
pub mod stock;
pub mod supply;
pub mod transfer;
pub mod webhook;

pub use ids::*;

/// Milliseconds since the Unix epoch. Time enters the domain only as a value.
pub type TimeMs = i64;

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-24T14:20:00.000Z`.
pub fn rfc3339(ms: TimeMs) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}
