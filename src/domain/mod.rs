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
pub mod recent_moves;
pub mod reservation;
pub mod rotation;
pub mod sourcing;
pub mod stock;
pub mod supply;
pub mod transfer;

pub use ids::*;

/// Milliseconds since the Unix epoch. Time enters the domain only as a value.
pub type TimeMs = i64;
