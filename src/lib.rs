//! holdfast: the order-management and stock-reservation engine.
//!
//! # Layout (data flows down; nothing below imports what is above)
//! - `config`: one typed configuration (TOML + environment overrides).
//! - `cluster`: `cluster.toml` and the shard logs on Redis (leases, streams).
//! - `http`: one route table, auth, validation, problem+json answers;
//!   handlers parse, authorize, call and render.
//! - `webhooks`: delivery of the published events to subscriptions
//!   (signed, in order, at least once), over the engine and `wire`.
//! - `orders`: the order workflow (place, ship, cancel, return, refund,
//!   the background jobs) over the engine, payments and carriers.
//! - `actors`: actix actors that own domain state and talk to the journal.
//! - `persistence`: the journal (append, group commit, recovery) and snapshots.
//! - `payments`: the `PaymentProvider` trait and its providers (the sandbox,
//!   Adyen, GestPay, Amazon Pay, Scalapay) and how an order gets one.
//! - `carriers`: the `Carrier` trait and its carriers (FedEx, DHL, Correos,
//!   TNT) and how a parcel gets one.
//! - `wire`: how adapters call the outside (timeouts, retries, a circuit).
//! - `collections`: maps and queues that grow without a pause.
//! - `domain`: pure logic: no I/O, no clock reads.
//! - `problem`: the API's errors (RFC 9457 problems) and their codes.
//! - `limits`: every bound, with what it costs.
//! - `clock`: the only place that reads the wall clock.

pub mod actors;
pub mod carriers;
pub mod clock;
pub mod cluster;
pub mod collections;
pub mod config;
pub mod domain;
pub mod feed;
pub mod http;
pub mod import;
pub mod limits;
pub mod metrics;
pub mod orders;
pub mod payments;
pub mod persistence;
pub mod problem;
pub mod server;
pub mod webhooks;
pub mod wire;
