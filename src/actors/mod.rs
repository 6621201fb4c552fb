//! The actors and the engine that routes to them.
//!
//! - `stock_shard`: `StockShard`, the SKU actors of one shard: stock records
//!   and holds.
//! - `reservation_book`: `ReservationBook` shards: reservations, transitions,
//!   expiry.
//! - `order_book`: `OrderBook` shards: orders, their changes, passivation.
//! - `location`: `LocationActor`, one per location: today's capacity
//!   count, open pickups.
//! - `Engine` (here): starts the actix system with one arbiter per two
//!   cores and recovers the state from the journal; its methods, one file
//!   per concern:
//!   - `start`: recovery, the journal, the snapshotter, the actors;
//!   - `carts`: holds of multi-line carts (every line held, undone on any
//!     shortage, one journal record per cart) and their transitions;
//!   - `stock`: counts, adjustments and reads of stock records;
//!   - `catalog_writes`: SKUs and locations;
//!   - `planning`: sourcing plans over live stock and today's capacity;
//!   - `orders`: the order books' side: routing, passes over every
//!     order, reconciling their holds;
//!   - `feed_views`: the stock feed's subscriptions and first views;
//!   - `transfers`: transfers between locations (their book, shipments
//!     held across shards as carts are, receipts);
//!   - `supplies`: incoming supply (its book, deliveries, cancels);
//!   - `events`: reads of the published events (written by the
//!     snapshotter's copy);
//!   - `webhooks`: webhook subscriptions (made, deleted, how far
//!     delivered), each step journaled.

mod carts;
mod catalog_writes;
mod events;
mod feed_views;
pub mod location;
pub mod order_book;
mod orders;
mod planning;
pub mod reservation_book;
mod start;
mod stock;
pub mod stock_shard;
mod supplies;
mod transfers;
mod webhooks;

pub use carts::CartLine;
pub use events::{EventFilter, EventsRead};
pub use feed_views::FeedView;
pub use order_book::OrderExists;
pub use orders::ParcelCarried;
pub use stock::HistoryRead;
pub use stock_shard::Adjustment;
pub use webhooks::WebhookRefused;

use actix::prelude::*;
use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::domain::catalog::{Catalog, LocIdx, Location, Sku, SkuIdx, SupplySale};
use crate::domain::event::{Event, IdemKey};
use crate::domain::history::By;
use crate::domain::ids::{LocationId, ReservationId, SkuId};
use crate::domain::model::Model;
use crate::domain::model::{IdemEntry, Shortage, TransitionRefused};
use crate::domain::order::{Order, OrderEvent, Refused};
use crate::domain::recent_moves::LateCountRefused;
use crate::domain::reservation::{expires_at, Line, Reservation, SplitRefused, Status, Transition};
use crate::domain::sourcing::{
    self, LineStock, PickupRefused, Plan, PlanLine, PlanOptions, Site, Sites, Target, Weights,
};
use crate::domain::stock::{AdjustReason, AdjustRefused, StockDelta, StockRecord, StockTable};
use crate::domain::TimeMs;
use crate::feed::{Feed, Scope, Sink, Subscription};
use crate::metrics::Metrics;
use crate::persistence::journal::{Durable, Replication};
use crate::persistence::recovery::recover_model;
use crate::persistence::snapshot::{run_snapshotter, SnapshotPolicy, SnapshotStore};
use crate::persistence::{Durability, Journal, JournalError, RecoveryReport, Storage};
use crate::problem::{ApiError, Code};
use location::{LiveState, LiveView, LocationActor, Locations};
use order_book::{
    order_book_of, ChangeOrder, InMemory, OrderBook, Passivate, PlaceOrder, ScanOrders,
};
use reservation_book::{Create, DumpBook, Get, ReservationBook, Split, Transit};
use stock_shard::{
    Count, CountItem, Dump, FeedSnapshot, FeedSnapshotReply, Hold, HoldAndRecord, HoldLine, Read,
    RecordView, StockShard,
};

/// A write could not be taken; nothing about the client's input is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A mailbox or the journal queue is full: retry shortly (503).
    #[error("the engine is at capacity")]
    Overloaded,
    /// The journal failed; the engine refuses writes until restarted (503).
    #[error("storage: {0}")]
    Storage(JournalError),
    #[error("the engine is shutting down")]
    Stopped,
}

impl From<JournalError> for EngineError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Full => EngineError::Overloaded,
            e => EngineError::Storage(e),
        }
    }
}

/// The answer to a write the engine could not take.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded => ApiError::new(
                Code::Unavailable,
                "the engine is at capacity; retry shortly",
            )
            .retry_after(1),
            EngineError::Storage(crate::persistence::JournalError::Replication(err)) => {
                tracing::warn!(error = %err, "write refused: not replicated");
                ApiError::new(
                    Code::Unavailable,
                    "the write could not be replicated (the cluster's leader is changing or Redis is unreachable); nothing was done, retry shortly",
                )
                .retry_after(1)
            }
            EngineError::Storage(crate::persistence::JournalError::ReplicationUnknown(err)) => {
                tracing::warn!(error = %err, "write not acknowledged: its replication's outcome is unknown");
                ApiError::new(
                    Code::OutcomeUnknown,
                    "Redis did not answer the write's replication: it may or may not have been applied; send it again with an Idempotency-Key to apply it once",
                )
                .retry_after(1)
            }
            EngineError::Storage(crate::persistence::JournalError::WriteUnknown(err)) => {
                tracing::error!(error = %err, "write failed part way: storage failure");
                ApiError::new(
                    Code::OutcomeUnknown,
                    "storage failed while writing: the write may or may not have been applied (it may be found when the server restarts); writes are refused until then",
                )
                .retry_after(30)
            }
            EngineError::Storage(err) => {
                tracing::error!(error = %err, "write refused: storage failure");
                ApiError::new(
                    Code::Unavailable,
                    "storage is failing; writes are refused until the server is restarted",
                )
                .retry_after(30)
            }
            EngineError::Stopped => ApiError::new(
                Code::Unavailable,
                "the engine is stopping (the server shuts down, or this cluster node no longer leads)",
            )
            .retry_after(1),
        }
    }
}

fn full<M>(e: SendError<M>) -> EngineError {
    match e {
        SendError::Full(_) => EngineError::Overloaded,
        SendError::Closed(_) => EngineError::Stopped,
    }
}

async fn reply<T>(rx: oneshot::Receiver<T>) -> Result<T, EngineError> {
    rx.await.map_err(|_| EngineError::Stopped)
}

/// What an actor that journals a change replies: the change with its
/// journal record's durability, or a refusal; or the journal's failure.
type Decision<T, R> = Result<Result<(T, Durable), R>, JournalError>;

/// An actor's decision: a refusal at once, a change once its journal
/// record is durable.
async fn durable_reply<T, R>(
    rx: oneshot::Receiver<Decision<T, R>>,
) -> Result<Result<T, R>, EngineError> {
    match reply(rx).await?? {
        Err(refused) => Ok(Err(refused)),
        Ok((changed, durable)) => {
            durable.await?;
            Ok(Ok(changed))
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Arbiters (threads) for the actors; 0: one per core.
    pub shards: usize,
    /// `None`: no snapshots (the journal alone; tests on simulated storage).
    pub snapshot: Option<SnapshotPolicy>,
    /// The sourcing planner's weights (`[sourcing]`).
    pub sourcing: Weights,
    /// The stock feed's window (`[feed] window_ms`).
    pub feed_window: std::time::Duration,
}

/// How an engine starts beyond its configuration.
#[derive(Default)]
pub struct Start {
    /// The state at the journal's last record, already in memory (a
    /// follower of a cluster shard taking it over): no replay.
    pub recovered: Option<(Model, RecoveryReport)>,
    /// The journal's replication (a cluster shard's owner).
    pub replication: Option<Replication>,
}

/// What recovery found, for the HTTP layer to seed itself with.
pub struct Recovered {
    pub report: RecoveryReport,
    pub idempotency: Vec<((u64, String), IdemEntry)>,
}

struct Inner {
    catalog: Arc<RwLock<Catalog>>,
    stock: Vec<Addr<StockShard>>,
    books: Vec<Addr<ReservationBook>>,
    /// Reservations kept by the backorder book though their ids name
    /// another (`start::share`): fixed at start.
    strays: ahash::AHashSet<ReservationId>,
    /// Supply deliveries the backorder book has journaled, counted after
    /// their records' changes are sent: a cart sold ahead that a delivery
    /// overtook between its hold and its record is held again
    /// (`reserve_across_shards`).
    deliveries: Arc<AtomicU64>,
    /// Each book's address as the stock shards' fast path sends to it
    /// (`stock_shard::Insert`), made once.
    book_inserts: Vec<Recipient<stock_shard::Insert>>,
    journal: Journal,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Reservation ids: a random per-process prefix and a counter.
    boot_nonce: u64,
    next_id: AtomicU64,
    system: System,
    actix_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The journal writer and the snapshotter.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    stop_snapshots: Arc<AtomicBool>,
    weights: Weights,
    /// Grows with every location written: the planner's `Sites` are rebuilt
    /// from the catalog when it has moved.
    locations_version: AtomicU64,
    sites: RwLock<Option<(u64, Arc<Sites>)>>,
    /// Live orders (and finished ones not passivated yet), in books by id.
    order_books: Vec<Addr<OrderBook>>,
    /// Their orders in memory, read without a message (each book is the
    /// only writer of its own).
    order_maps: Vec<order_book::OrderMap>,
    /// The location actors: today's capacity counts, open pickups.
    locations: Arc<Locations>,
    /// The order archive (in the snapshot store): passivated orders.
    /// `None` without snapshots: every order stays in memory.
    archive: Option<Arc<SnapshotStore>>,
    /// The stock feed's hub (committed changes for store apps).
    feed: Feed,
    /// Transfers between locations (`transfers`): one writer at a time.
    transfers: tokio::sync::Mutex<crate::domain::transfer::Transfers>,
    /// Incoming supply (`supplies`): one writer at a time.
    supplies: tokio::sync::Mutex<crate::domain::supply::Supplies>,
    /// Webhook subscriptions (`webhooks`): one writer at a time.
    webhooks: tokio::sync::Mutex<crate::domain::webhook::Webhooks>,
}

/// The engine: cheap to clone; every clone talks to the same actors.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

impl Engine {
    /// Stops the actors. Every acknowledged write is already durable.
    pub fn shutdown(&self) {
        self.0.system.stop();
        if let Some(actix) = self.0.actix_thread.lock().take() {
            let _ = actix.join();
        }
        // The journal writer ends when the last handle drops (with the
        // engine); the snapshotter is told to stop.
        self.0.stop_snapshots.store(true, Ordering::Relaxed);
        let threads: Vec<_> = self.0.threads.lock().drain(..).collect();
        for t in threads.into_iter().skip(1) {
            let _ = t.join();
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }
    pub fn journal(&self) -> &Journal {
        &self.0.journal
    }
    /// Its snapshot store (`None`: snapshots are off).
    pub fn snapshots(&self) -> Option<&Arc<SnapshotStore>> {
        self.0.archive.as_ref()
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }
    pub fn catalog(&self) -> parking_lot::RwLockReadGuard<'_, Catalog> {
        self.0.catalog.read()
    }

    fn stock_of(&self, sku: SkuIdx) -> &Addr<StockShard> {
        &self.0.stock[sku as usize % self.0.stock.len()]
    }
    /// How many reservation books the engine has (`book_of`).
    pub fn books(&self) -> usize {
        self.0.books.len()
    }

    fn book_for(&self, id: &ReservationId) -> &Addr<ReservationBook> {
        &self.0.books[self.book_index(id)]
    }

    /// The book that keeps reservation `id`: the one its id names, or
    /// the backorder book for a stray (`Inner::strays`).
    fn book_index(&self, id: &ReservationId) -> usize {
        if self.0.strays.contains(id) {
            return BACKORDER_BOOK;
        }
        book_of(id, self.0.books.len())
    }
}

/// Actor threads by default: one for every two cores, at least one.
///
/// The HTTP runtime already has a worker per core, and the journal writer
/// its own thread; an actor thread per core as well put twice as many busy
/// threads as cores, and every hop between them became a context switch.
/// Measured on the 2-core machine (BENCHMARKS.md, "Actor threads"): one
/// actor thread instead of two took server CPU per checkout request from
/// ~35 to ~29 us and context switches per request from ~1.3 to ~0.85, and
/// raised closed-loop throughput by ~10 %. `[server] shards` (or
/// `HOLDFAST_SHARDS`) overrides it.
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// The book that keeps every reservation with a line that may be sold
/// against incoming supply: one actor sees them all, in the order they
/// came, and converts them first-in first-out when supply arrives
/// (`reservation_book::Receive`).
pub const BACKORDER_BOOK: usize = 0;

/// The book (of `n`) that keeps reservation `id`.
pub fn book_of(id: &ReservationId, n: usize) -> usize {
    let s = id.as_str();
    // Ids of the sharded cluster carried a `{shard}.` prefix: skipped, so
    // that journals written then still find their books.
    let counter = s
        .rsplit('.')
        .next()
        .unwrap_or(s)
        .strip_prefix('r')
        .and_then(|rest| rest.get(16..))
        .filter(|counter| !counter.is_empty())
        .and_then(|counter| u64::from_str_radix(counter, 16).ok());
    match counter {
        Some(c) => (c % n as u64) as usize,
        None => (crate::domain::event::fnv1a64(s.as_bytes()) % n as u64) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ReservationId {
        ReservationId::parse(s).expect("a valid id")
    }

    #[test]
    fn an_id_we_make_names_its_book_and_any_other_id_is_hashed() {
        // counter 0x0b = 11: book 11 % 2 = 1 of 2, 11 % 3 = 2 of 3.
        let ours = id("r0123456789abcdef0000000b");
        assert_eq!(book_of(&ours, 2), 1);
        assert_eq!(book_of(&ours, 3), 2);
        for other in [
            "r1",
            "rzzzzzzzzzzzzzzzzzzzzzz",
            "abc",
            "r0123456789abcdefxyz",
        ] {
            let other = id(other);
            let b = book_of(&other, 4);
            assert!(b < 4);
            assert_eq!(b, book_of(&other, 4), "a pure function of the id");
        }
    }
}
