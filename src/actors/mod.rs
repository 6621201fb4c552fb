//! The actors and the engine that routes to them.
//!
//! - `stock_shard`: `StockShard`, the SKU actors of one shard: stock records
//!   and holds.
//! - `reservation_book`: `ReservationBook` shards: reservations, transitions,
//!   expiry.
//! - `Engine` (here): starts the actix system with one arbiter per core,
//!   recovers the state from the journal, and coordinates multi-line carts
//!   (hold every line, undo on any shortage, one journal record per cart).

pub mod reservation_book;
pub mod stock_shard;

use actix::prelude::*;
use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::domain::catalog::{Catalog, LocIdx, Location, Sku, SkuIdx};
use crate::domain::event::{Event, IdemKey};
use crate::domain::ids::{LocationId, ReservationId, SkuId};
use crate::domain::model::Model;
use crate::domain::model::{IdemEntry, Shortage, TransitionRefused};
use crate::domain::order::{Order, OrderEvent, Refused};
use crate::domain::reservation::{expires_at, Line, Reservation, SplitRefused, Status, Transition};
use crate::domain::sourcing::{
    self, LineStock, PickupRefused, Plan, PlanLine, PlanOptions, Site, Sites, Target, Weights,
};
use crate::domain::stock::{AdjustReason, AdjustRefused, StockDelta, StockRecord, StockTable};
use crate::domain::TimeMs;
use crate::feed::{Feed, Scope, Sink, Subscription};
use crate::metrics::Metrics;
use crate::persistence::journal::Replication;
use crate::persistence::recovery::recover_model;
use crate::persistence::snapshot::{run_snapshotter, SnapshotPolicy, SnapshotStore};
use crate::persistence::{Durability, Journal, JournalError, RecoveryReport, Storage};
use reservation_book::{Create, DumpBook, Get, ReservationBook, Split, Transit};
use stock_shard::{
    ApplyDeltas, Commit, Count, CountItem, Dump, FeedSnapshot, FeedSnapshotReply, Hold,
    HoldAndRecord, HoldLine, Read, RecordView, StockShard,
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

fn full<M>(e: SendError<M>) -> EngineError {
    match e {
        SendError::Full(_) => EngineError::Overloaded,
        SendError::Closed(_) => EngineError::Stopped,
    }
}

async fn reply<T>(rx: oneshot::Receiver<T>) -> Result<T, EngineError> {
    rx.await.map_err(|_| EngineError::Stopped)
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
    /// Live orders (and finished ones not passivated yet), in shards by id.
    /// Each shard's lock orders the decision, the journal append and the
    /// change alike (as the catalog's does): one order is one state
    /// machine, never two writers. ARCHITECTURE.md's `OrderActor` per order
    /// in this form: an actix actor per order would cost a mailbox and a
    /// context more than the order itself, and the lock is held only for
    /// the decision and the journal enqueue, never across an await (the
    /// durability wait comes after it is released).
    orders: Vec<Mutex<ahash::AHashMap<String, Order>>>,
    capacity: Mutex<DailyCapacity>,
    /// The order archive (in the snapshot store): passivated orders.
    /// `None` without snapshots: every order stays in memory.
    archive: Option<Arc<SnapshotStore>>,
    /// The stock feed's hub (committed changes for store apps).
    feed: Feed,
}

const DAY_MS: crate::domain::TimeMs = 86_400_000;

/// Orders taken per location and day, for `daily_capacity`, and the
/// locations that have reached theirs: a plan reads only those, not every
/// count. Lock order: the catalog before this.
#[derive(Default)]
struct DailyCapacity {
    /// (day since the epoch, UTC; orders that day)
    counts: ahash::AHashMap<LocationId, (i64, u32)>,
    /// Locations whose count reached their capacity on the day counted.
    full: ahash::AHashSet<LocationId>,
}

impl DailyCapacity {
    /// Adds `delta` orders of the day of `at_ms` to `loc`'s count: a newer
    /// day starts from zero, an older one no longer matters.
    fn add(
        &mut self,
        loc: &LocationId,
        at_ms: crate::domain::TimeMs,
        delta: i32,
        cap: Option<u32>,
    ) {
        let day = at_ms.div_euclid(DAY_MS);
        let e = self.counts.entry(loc.clone()).or_insert((day, 0));
        if day > e.0 {
            *e = (day, 0);
        }
        if day == e.0 {
            e.1 = e.1.saturating_add_signed(delta);
        }
        self.recheck(loc, cap);
    }

    /// `loc` against its (maybe new) capacity.
    fn recheck(&mut self, loc: &LocationId, cap: Option<u32>) {
        let n = self.counts.get(loc).map_or(0, |e| e.1);
        if cap.is_some_and(|c| n >= c) {
            self.full.insert(loc.clone());
        } else {
            self.full.remove(loc);
        }
    }

    /// The locations full on `day`.
    fn full_on(&self, day: i64) -> Vec<LocationId> {
        self.full
            .iter()
            .filter(|l| self.counts.get(*l).is_some_and(|e| e.0 == day))
            .cloned()
            .collect()
    }

    /// Counts `o` (`delta` +1 placed, -1 cancelled) at every location it
    /// takes capacity from.
    fn count_order(&mut self, c: &Catalog, o: &Order, delta: i32) {
        for l in o.capacity_locations() {
            let cap = c.location_by_id(l.as_str()).and_then(|x| x.daily_capacity);
            self.add(&l, o.created_ms, delta, cap);
        }
    }
}

/// Order shards: enough that two orders rarely share a lock.
const ORDER_SHARDS: usize = 64;

fn order_shard(id: &str) -> usize {
    (crate::domain::event::fnv1a64(id.as_bytes()) % ORDER_SHARDS as u64) as usize
}

/// What the stock feed may show of a scope at a moment (`feed_view`).
#[derive(Debug, Clone, Default)]
pub struct FeedView {
    /// (SKU, committed record), by shard then SKU.
    pub records: Vec<(SkuIdx, StockRecord)>,
    /// Per stock shard, its count of changes the records include.
    pub seen: Vec<u64>,
}

/// An order with this id exists already.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderExists(pub Order);

/// The engine: cheap to clone; every clone talks to the same actors.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

/// A reservation line to hold, resolved, with its index in the cart.
#[derive(Debug, Clone, Copy)]
pub struct CartLine {
    pub sku: SkuIdx,
    pub location: LocIdx,
    pub qty: u32,
}

impl Engine {
    /// Recovers the state under `data_dir/journal` and starts the actors.
    pub fn open(
        cfg: &EngineConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<(Engine, Recovered), EngineError> {
        Self::open_with(cfg, storage, clock, metrics, Start::default())
    }

    /// `open`, from a state already in memory or with a replicated journal.
    pub fn open_with(
        cfg: &EngineConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        start: Start,
    ) -> Result<(Engine, Recovered), EngineError> {
        let dir = cfg.data_dir.join("journal");
        let snapshots = match cfg.snapshot {
            Some(_) => Some(Arc::new(SnapshotStore::open(
                &cfg.data_dir.join("snapshots"),
            )?)),
            None => None,
        };
        let (model, report) = match start.recovered {
            Some(r) => r,
            None => {
                let snapshot = snapshots.as_ref().and_then(|s| s.load());
                recover_model(storage.as_ref(), &dir, snapshot, snapshots.as_deref())?
            }
        };
        let archive = snapshots.clone();
        let (journal, writer) = Journal::start_replicated(
            storage.clone(),
            dir.clone(),
            report.last_seq,
            cfg.durability,
            crate::limits::JOURNAL_SEGMENT_BYTES_MAX,
            start.replication,
        )?;
        let stop_snapshots = Arc::new(AtomicBool::new(false));
        let mut threads = vec![writer];

        if let (Some(store), Some(policy)) = (snapshots, cfg.snapshot) {
            let (stats, stop, last) = (
                journal.stats.clone(),
                stop_snapshots.clone(),
                report.last_seq,
            );
            let storage = storage.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("snapshotter".into())
                    .spawn(move || run_snapshotter(store, storage, dir, stats, policy, stop, last))
                    .map_err(|_| EngineError::Stopped)?,
            );
        }
        let n = if cfg.shards == 0 {
            default_shards()
        } else {
            cfg.shards
        };
        let catalog = Arc::new(RwLock::new(model.catalog));
        let (feed, feed_thread) = Feed::start(
            crate::feed::Journaled {
                journal: journal.clone(),
                catalog: catalog.clone(),
            },
            cfg.feed_window,
            stop_snapshots.clone(),
        )
        .map_err(|_| EngineError::Stopped)?;
        threads.push(feed_thread);
        // Split the recovered state among the shards.
        let mut stock_tables = Vec::with_capacity(n);
        let mut rest = model.stock;
        let mut rotation = model.rotation;
        rotation.forget_stale(clock.now_ms());
        let mut keys: Vec<ahash::AHashMap<String, crate::domain::model::AdjustKey>> =
            vec![Default::default(); n];
        {
            let c = catalog.read();
            for (k, a) in model.adjust_keys {
                if let Some(s) = c.sku_idx(a.sku.as_str()) {
                    keys[s as usize % n].insert(k, a);
                }
            }
        }
        for (i, keys) in keys.into_iter().enumerate() {
            stock_tables.push((
                rest.split_off(|s| s as usize % n != i),
                rotation.split_off(|s| s as usize % n != i),
                keys,
            ));
        }
        let mut books: Vec<ahash::AHashMap<ReservationId, Reservation>> =
            vec![Default::default(); n];
        for (id, r) in model.reservations {
            books[book_of(&id, n)].insert(id, r);
        }
        let idempotency = model.idem.into_iter().collect();
        let orders: Vec<Mutex<ahash::AHashMap<String, Order>>> = (0..ORDER_SHARDS)
            .map(|_| Mutex::new(Default::default()))
            .collect();
        let mut capacity = DailyCapacity::default();
        for (id, o) in model.orders {
            if o.takes_capacity() {
                capacity.count_order(&catalog.read(), &o, 1);
            }
            orders[order_shard(&id)].lock().insert(id, o);
        }

        let (tx, rx) = std::sync::mpsc::channel();
        let journal2 = journal.clone();
        let catalog2 = catalog.clone();
        let clock2 = clock.clone();
        let feed2 = feed.clone();
        let metrics2 = metrics.clone();
        let actix_thread = std::thread::Builder::new()
            .name("actix-system".into())
            .spawn(move || {
                let sys = System::new();
                sys.block_on(async move {
                    let arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
                    let stock: Vec<Addr<StockShard>> = stock_tables
                        .into_iter()
                        .enumerate()
                        .map(|(i, (table, rotation, applied))| {
                            let start = stock_shard::ShardStart {
                                table,
                                rotation,
                                applied,
                                catalog: catalog2.clone(),
                                journal: journal2.clone(),
                                clock: clock2.clone(),
                                feed: feed2.clone(),
                                index: i as u32,
                            };
                            StockShard::start_in_arbiter(&arbiters[i].handle(), move |_| {
                                StockShard::new(start)
                            })
                        })
                        .collect();
                    let books: Vec<Addr<ReservationBook>> = books
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| {
                            let (j, s, c, k, m) = (
                                journal2.clone(),
                                stock.clone(),
                                catalog2.clone(),
                                clock2.clone(),
                                metrics2.clone(),
                            );
                            ReservationBook::start_in_arbiter(&arbiters[i].handle(), move |_| {
                                ReservationBook::new(b, j, s, c, k, m)
                            })
                        })
                        .collect();
                    let _ = tx.send((stock, books, System::current(), arbiters));
                });
                sys.run().ok();
            })
            .map_err(|_| EngineError::Stopped)?;
        let (stock, books, system, _arbiters) = rx.recv().map_err(|_| EngineError::Stopped)?;
        let engine = Engine(Arc::new(Inner {
            catalog,
            stock,
            books,
            journal,
            clock,
            metrics,
            boot_nonce: rand::random::<u64>(),
            next_id: AtomicU64::new(0),
            system,
            actix_thread: Mutex::new(Some(actix_thread)),
            threads: Mutex::new(threads),
            stop_snapshots,
            weights: cfg.sourcing,
            locations_version: AtomicU64::new(0),
            sites: RwLock::new(None),
            orders,
            capacity: Mutex::new(capacity),
            archive,
            feed,
        }));
        if engine.0.archive.is_some() {
            let weak = Arc::downgrade(&engine.0);
            let stop = engine.0.stop_snapshots.clone();
            let sweeper = std::thread::Builder::new()
                .name("order-sweeper".into())
                .spawn(move || sweep_orders(weak, stop))
                .map_err(|_| EngineError::Stopped)?;
            engine.0.threads.lock().push(sweeper);
        }
        Ok((
            engine,
            Recovered {
                report,
                idempotency,
            },
        ))
    }

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
        &self.0.books[book_of(id, self.0.books.len())]
    }

    // ---- catalog -------------------------------------------------------

    /// Journals a catalog change, applies it, and waits for durability. The
    /// write lock orders the record and the change alike.
    async fn write_catalog(
        &self,
        event: Event,
        apply: impl FnOnce(&mut Catalog),
    ) -> Result<(), EngineError> {
        let durable = {
            let mut c = self.0.catalog.write();
            let d = self.0.journal.append(&event)?;
            apply(&mut c);
            d
        };
        durable.await?;
        Ok(())
    }

    pub async fn put_sku(&self, id: SkuId, sku: Sku) -> Result<(), EngineError> {
        let event = Event::SkuPut {
            sku: id.clone(),
            value: sku.clone(),
        };
        self.write_catalog(event, |c| {
            c.put_sku(id, sku);
        })
        .await
    }

    /// A bulk catalog import: one journal record for every SKU of it, so
    /// that it is applied whole or not at all.
    pub async fn put_skus(&self, skus: Vec<(SkuId, Sku)>) -> Result<(), EngineError> {
        let event = Event::SkusPut { skus: skus.clone() };
        self.write_catalog(event, |c| {
            for (id, sku) in skus {
                c.put_sku(id, sku);
            }
        })
        .await
    }

    pub async fn put_location(&self, id: LocationId, loc: Location) -> Result<(), EngineError> {
        let event = Event::LocationPut {
            location: id.clone(),
            value: loc.clone(),
        };
        let (version, capacity) = (&self.0.locations_version, &self.0.capacity);
        self.write_catalog(event, |c| {
            // A new capacity may make the location full, or not any more.
            capacity.lock().recheck(&id, loc.daily_capacity);
            c.put_location(id, loc);
            version.fetch_add(1, Ordering::Release);
        })
        .await
    }

    // ---- sourcing ------------------------------------------------------

    /// The network as the planner sees it, rebuilt only when a location
    /// was written since the last build.
    fn sites(&self) -> Arc<Sites> {
        let v = self.0.locations_version.load(Ordering::Acquire);
        if let Some((built, s)) = &*self.0.sites.read() {
            if *built == v {
                return s.clone();
            }
        }
        // Read after the version: what is built is at least version `v`; a
        // later write bumps the version and the next call rebuilds.
        let sites = Arc::new(Sites(
            self.catalog()
                .locations()
                // Today's capacity is marked per plan (`sites_now`).
                .map(|(_, l)| Site::of(l, false))
                .collect(),
        ));
        *self.0.sites.write() = Some((v, sites.clone()));
        sites
    }

    /// The network with today's full locations marked (`daily_capacity`
    /// reached). Usually none is full and the cached network serves as is.
    /// The count is checked when planning: two orders placed at the same
    /// moment can both take a location's last slot of the day.
    fn sites_now(&self) -> Arc<Sites> {
        let today = self.0.clock.now_ms().div_euclid(DAY_MS);
        let full = self.0.capacity.lock().full_on(today);
        self.sites_marking(full)
    }

    /// The network with the locations `full` marked at capacity.
    fn sites_marking(&self, full: Vec<LocationId>) -> Arc<Sites> {
        let sites = self.sites();
        if full.is_empty() {
            return sites;
        }
        let full: Vec<LocIdx> = {
            let c = self.catalog();
            full.iter()
                .filter_map(|l| c.location_idx(l.as_str()))
                .collect()
        };
        let mut marked = (*sites).clone();
        for l in full {
            if let Some(s) = marked.0.get_mut(l as usize) {
                s.at_capacity = true;
            }
        }
        Arc::new(marked)
    }

    /// What the planner reads of each of `skus`: its stock at every
    /// location with the rotation index there (every SKU's shard asked at
    /// once).
    async fn plan_stock(
        &self,
        skus: &[SkuIdx],
    ) -> Result<Vec<(SkuIdx, Vec<LineStock>)>, EngineError> {
        let records =
            futures::future::try_join_all(skus.iter().map(|&s| self.read_stock(s, None, true)))
                .await?;
        Ok(skus
            .iter()
            .zip(records)
            .map(|(&sku, recs)| {
                let v = recs
                    .iter()
                    .map(|v| LineStock {
                        location: v.record.location,
                        available: v.record.available(),
                        rotation: v.rotation,
                    })
                    .collect();
                (sku, v)
            })
            .collect())
    }

    /// Plans `lines` (SKU, quantity) for `target`: reads the stock of each
    /// SKU from its shard (every shard asked at once), then runs the
    /// planner with `[sourcing]`'s weights and the request's `options`.
    /// Holds nothing. The one way every caller plans.
    pub async fn plan(
        &self,
        lines: &[(SkuIdx, u32)],
        target: Target,
        options: PlanOptions,
    ) -> Result<Result<Plan, PickupRefused>, EngineError> {
        let mut skus: Vec<SkuIdx> = lines.iter().map(|l| l.0).collect();
        skus.sort_unstable();
        skus.dedup();
        let mut stock = self.plan_stock(&skus).await?;
        let plan_lines: Vec<PlanLine> = {
            let c = self.catalog();
            lines
                .iter()
                .map(|&(sku, qty)| PlanLine {
                    sku,
                    qty,
                    // The planner reads a SKU's stock from its first line
                    // (sourcing.rs): moved there, not copied to every line.
                    stock: stock
                        .iter_mut()
                        .find(|(s, _)| *s == sku)
                        .map(|(_, v)| std::mem::take(v))
                        .unwrap_or_default(),
                    ship_alone: c.sku(sku).is_some_and(|s| s.1.ship_alone),
                })
                .collect()
        };
        let sites = self.sites_now();
        let weights = self.0.weights.asked(options);
        Ok(sourcing::plan(
            &plan_lines,
            target,
            &sites,
            &weights,
            options.explain,
        ))
    }

    // ---- stock feed ----------------------------------------------------

    /// Follows `scope`: `sink` gets every committed change of its records
    /// from now on (see `feed`), and the answer is what the feed may show
    /// of the scope now. Changes the sink gets that the view holds already
    /// are those at or before `FeedView::seen` of their shard: drop them.
    pub async fn feed_subscribe(
        &self,
        scope: Scope,
        sink: Box<dyn Sink>,
    ) -> Result<(Subscription, FeedView), EngineError> {
        // Subscribed first: a change after the view then reaches the sink.
        let sub = self.0.feed.subscribe(scope, sink);
        let view = self.feed_view(scope).await?;
        Ok((sub, view))
    }

    /// What the feed may show of `scope` now: the committed records of
    /// every shard, once the journal holds everything they show.
    pub async fn feed_view(&self, scope: Scope) -> Result<FeedView, EngineError> {
        let n = self.0.stock.len();
        let shards: Vec<usize> = match scope {
            Scope::Sku(s) => vec![s as usize % n],
            Scope::Location(_) => (0..n).collect(),
        };
        let mut view = FeedView {
            records: Vec::new(),
            seen: vec![0; n],
        };
        for i in shards {
            let (tx, rx) = oneshot::channel();
            self.0.stock[i]
                .send(FeedSnapshot { scope, reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            let r: FeedSnapshotReply = reply(rx).await?;
            view.records.extend(r.records);
            view.seen[r.shard as usize] = r.changes;
        }
        // Every change those records show was queued to the journal before
        // this barrier: once it is durable, so are they.
        self.0.journal.barrier()?.await?;
        Ok(view)
    }

    /// Subscribers of the feed and its counters (for `/metrics`).
    pub fn feed_stats(&self) -> &Arc<crate::feed::FeedStats> {
        &self.0.feed.stats
    }

    // ---- orders --------------------------------------------------------

    /// An order: from memory, or read back from the archive if it was
    /// passivated (without bringing it back: a read changes nothing).
    pub fn order(&self, id: &str) -> Result<Option<Order>, EngineError> {
        if let Some(o) = self.0.orders[order_shard(id)].lock().get(id) {
            return Ok(Some(o.clone()));
        }
        self.archived(id)
    }

    fn archived(&self, id: &str) -> Result<Option<Order>, EngineError> {
        match &self.0.archive {
            Some(a) => Ok(a.archived_order(id, None)?),
            None => Ok(None),
        }
    }

    /// The open pickups at `location` (pay and collect orders not yet
    /// collected, cancelled or declined), oldest first, at most `limit`.
    /// A pass over the orders in memory: finished ones are passivated, so
    /// it holds about a day of orders.
    pub fn pickups_at(&self, location: &LocationId, limit: usize) -> Vec<Order> {
        use crate::domain::order::{Delivery, OrderStatus};
        let mut v: Vec<Order> = Vec::new();
        for shard in self.0.orders.iter() {
            for o in shard.lock().values() {
                let here = matches!(&o.delivery, Delivery::Pickup { location: l } if l == location);
                let open = !matches!(
                    o.status(),
                    OrderStatus::Collected
                        | OrderStatus::Cancelled
                        | OrderStatus::PaymentDeclined
                        | OrderStatus::Returned
                );
                if here && open {
                    v.push(o.clone());
                }
            }
        }
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        v.truncate(limit);
        v
    }

    /// Labelled shipments whose parcel its carrier still carries: a
    /// delivery not delivered, a transfer not shipped (at the store, the
    /// store takes over), of orders not cancelled: (order, shipment,
    /// parcel, status, route). A pass over the orders in memory.
    pub fn parcels_in_transit(
        &self,
    ) -> Vec<(
        String,
        u32,
        crate::domain::order::Parcel,
        crate::domain::order::ShipStatus,
        crate::domain::order::Route,
    )> {
        use crate::domain::order::{Route, ShipStatus};
        let mut v = Vec::new();
        for shard in self.0.orders.iter() {
            for o in shard.lock().values().filter(|o| !o.cancelled) {
                for s in &o.shipments {
                    let carried = match s.route {
                        Route::Deliver => s.status < ShipStatus::Delivered,
                        Route::Transfer => s.status < ShipStatus::Shipped,
                        Route::PickupHere => false,
                    };
                    if let (true, Some(p)) = (carried, &s.parcel) {
                        v.push((o.id.clone(), s.id, p.clone(), s.status, s.route));
                    }
                }
            }
        }
        v
    }

    /// Orders owing a capture (something left while their provider could
    /// not be reached: `Order::capture_owed`), a refund to send again
    /// (`Payment::refunds_owed`, not unclear) or a restock to another
    /// shard (`Order::restocks_owed`). A pass over the orders in
    /// memory (an order owing one is not finished, or not passivable).
    pub fn orders_owing(&self) -> Vec<Order> {
        self.0
            .orders
            .iter()
            .flat_map(|shard| {
                shard
                    .lock()
                    .values()
                    .filter(|o| {
                        o.capture_owed() > 0
                            || o.payment.refunds_owed.iter().any(|r| !r.unclear)
                            || !o.restocks_owed.is_empty()
                    })
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Orders held in memory (the rest are passivated).
    pub fn orders_in_memory(&self) -> usize {
        self.0.orders.iter().map(|s| s.lock().len()).sum()
    }

    /// Drops from memory the finished, idle orders that the snapshotter
    /// has archived exactly as they are here; returns how many. A later
    /// change reads one back first (`order_change`).
    pub fn passivate_orders(&self) -> Result<usize, EngineError> {
        let Some(archive) = &self.0.archive else {
            return Ok(0);
        };
        let now = self.0.clock.now_ms();
        let mut dropped = 0;
        for shard in self.0.orders.iter() {
            let due: Vec<String> = shard
                .lock()
                .iter()
                .filter(|(_, o)| o.is_passivable(now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let Some(kept) = archive.archived_order(&id, None)? else {
                    continue;
                };
                let mut s = shard.lock();
                if s.get(&id) == Some(&kept) {
                    s.remove(&id);
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            self.0
                .metrics
                .orders_passivated
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::info!(orders = dropped, "passivated finished orders");
        }
        Ok(dropped)
    }

    /// Places `order` with the payment's answer `then`, as one journal
    /// record. Answers once it is durable.
    pub async fn place_order(
        &self,
        order: Order,
        then: OrderEvent,
    ) -> Result<Result<Order, OrderExists>, EngineError> {
        let id = order.id.clone();
        let (placed, durable) = {
            let mut shard = self.0.orders[order_shard(&id)].lock();
            if let Some(o) = shard.get(&id) {
                return Ok(Err(OrderExists(o.clone())));
            }
            if let Some(o) = self.archived(&id)? {
                return Ok(Err(OrderExists(o)));
            }
            let events = vec![OrderEvent::Placed(Box::new(order.clone())), then];
            let durable = self.0.journal.append(&Event::Order {
                id: id.clone(),
                events: events.clone(),
            })?;
            let mut o = order;
            for e in &events[1..] {
                o.apply(e);
            }
            if o.takes_capacity() {
                let c = self.catalog();
                self.0.capacity.lock().count_order(&c, &o, 1);
            }
            shard.insert(id, o.clone());
            (o, durable)
        };
        durable.await?;
        Ok(Ok(placed))
    }

    /// Decides a change of order `id` under its shard's lock, journals it
    /// and applies it; a return's restock goes to the stock shard. `None`:
    /// no such order. The event is `None` when nothing changed.
    pub async fn order_change(
        &self,
        id: &str,
        decide: impl FnOnce(&Order) -> Result<Option<OrderEvent>, Refused>,
    ) -> Result<Option<Result<(Order, Option<OrderEvent>), Refused>>, EngineError> {
        let (o, e, durable) = {
            let mut shard = self.0.orders[order_shard(id)].lock();
            if !shard.contains_key(id) {
                // Passivated: read back into memory before it changes.
                let Some(o) = self.archived(id)? else {
                    return Ok(None);
                };
                self.0
                    .metrics
                    .orders_activated
                    .fetch_add(1, Ordering::Relaxed);
                shard.insert(id.to_string(), o);
            }
            let Some(o) = shard.get_mut(id) else {
                return Ok(None);
            };
            let e = match decide(o) {
                Err(r) => return Ok(Some(Err(r))),
                Ok(None) => return Ok(Some(Ok((o.clone(), None)))),
                Ok(Some(e)) => e,
            };
            let (durable, ticket) = self.0.journal.append_ticketed(&Event::Order {
                id: id.to_string(),
                events: vec![e.clone()],
            })?;
            // (Owed, on a cluster: another shard's stock takes them.)
            if let OrderEvent::Returned {
                lines,
                location,
                at_ms,
                restock_owed: false,
                ..
            } = &e
            {
                self.restock(o, lines, location, *at_ms, ticket);
            }
            let took = o.takes_capacity();
            o.apply(&e);
            if took && !o.takes_capacity() {
                // A cancel gives its day's capacity back.
                let c = self.catalog();
                self.0.capacity.lock().count_order(&c, o, -1);
            }
            (o.clone(), e, durable)
        };
        durable.await?;
        Ok(Some(Ok((o, Some(e)))))
    }

    /// After recovery: an order journaled as paid whose shipments' holds
    /// were not confirmed yet (the process died between the two) gets them
    /// confirmed now; one whose holds expired meanwhile has lost its stock
    /// and is named in the log. Returns (confirmed, lost).
    pub async fn reconcile_orders(&self) -> Result<(usize, usize), EngineError> {
        let pending = self.unconfirmed_holds();
        let (mut confirmed, mut lost) = (0, 0);
        for (order, r) in pending {
            match self.reservation(r.clone()).await?.map(|x| x.status) {
                Some(Status::Held) => {
                    let done = self.transition(r, Transition::Confirm).await?;
                    confirmed += usize::from(done.is_ok());
                }
                Some(Status::Expired | Status::Released) => {
                    lost += 1;
                    tracing::warn!(%order, reservation = %r, "an order's hold expired before it was confirmed: the order has lost that stock");
                }
                _ => {}
            }
        }
        Ok((confirmed, lost))
    }

    /// The holds of orders journaled as paid that nothing has moved yet:
    /// (order, reservation), the ones `reconcile_orders` asks about.
    pub fn unconfirmed_holds(&self) -> Vec<(String, ReservationId)> {
        let mut pending = Vec::new();
        for shard in &self.0.orders {
            // Only orders nothing has moved yet: once a shipment moved, its
            // holds were confirmed (the 201 came after them), and a
            // finished order's are fulfilled or released. So a start does
            // not ask the books about every order ever kept.
            let unmoved = |o: &&Order| o.status() == crate::domain::order::OrderStatus::Confirmed;
            for o in shard.lock().values().filter(unmoved) {
                for s in &o.shipments {
                    if let Some(r) = s.reservation.as_deref() {
                        if let Ok(r) = ReservationId::parse(r) {
                            pending.push((o.id.clone(), r));
                        }
                    }
                }
            }
        }
        pending
    }

    /// What the holds of the orders in memory changed at or after
    /// `since_ms` must be (`Order::hold_states`): (order, reservation,
    /// status), for a cluster's reconciliation (`http::orders::reconcile`).
    pub fn holds_to_settle(&self, since_ms: TimeMs) -> Vec<(String, ReservationId, Status)> {
        let mut v = Vec::new();
        for shard in &self.0.orders {
            for o in shard.lock().values().filter(|o| o.updated_ms >= since_ms) {
                for (r, want) in o.hold_states() {
                    if let Ok(r) = ReservationId::parse(r) {
                        v.push((o.id.clone(), r, want));
                    }
                }
            }
        }
        v
    }

    /// The stock side of a journaled return: on_hand grows where the goods
    /// came back (replay does the same from the order's record).
    fn restock(
        &self,
        o: &Order,
        lines: &[(usize, u32)],
        location: &LocationId,
        at_ms: TimeMs,
        ticket: u64,
    ) {
        let c = self.catalog();
        let Some(l) = c.location_idx(location.as_str()) else {
            return;
        };
        self.send_deltas(
            at_ms,
            Some(ticket),
            o.restock(lines)
                .filter_map(|(sku, d)| Some((c.sku_idx(sku.as_str())?, l, d))),
        );
    }

    // ---- stock ---------------------------------------------------------

    /// Counts: sets on_hand and safety_stock of records; one journal record
    /// per shard touched. Waits for mailbox room (a back-office path).
    pub async fn count(&self, items: Vec<CountItem>) -> Result<Vec<RecordView>, EngineError> {
        let n = self.0.stock.len();
        let mut per_shard: Vec<Vec<(usize, CountItem)>> = (0..n).map(|_| Vec::new()).collect();
        for (i, it) in items.into_iter().enumerate() {
            per_shard[it.sku_idx as usize % n].push((i, it));
        }
        let mut pending = Vec::new();
        for (shard, v) in per_shard.into_iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let (order, items): (Vec<usize>, Vec<CountItem>) = v.into_iter().unzip();
            let (tx, rx) = oneshot::channel();
            self.0.stock[shard]
                .send(Count { items, reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            pending.push((order, rx));
        }
        let mut out = Vec::new();
        let mut durables = Vec::new();
        for (order, rx) in pending {
            let (recs, d) = reply(rx).await??;
            durables.push(d);
            out.extend(order.into_iter().zip(recs));
        }
        for d in durables {
            d.await?;
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    pub async fn adjust(
        &self,
        sku_idx: SkuIdx,
        loc_idx: LocIdx,
        sku: SkuId,
        location: LocationId,
        delta: i64,
        reason: AdjustReason,
    ) -> Result<Result<RecordView, AdjustRefused>, EngineError> {
        self.adjust_keyed(sku_idx, loc_idx, sku, location, delta, reason, None)
            .await
    }

    /// `adjust`, applied once under `key` if given (journaled with it, so
    /// a takeover or a restart keeps it): the same adjustment asked again
    /// answers the record as it is, another under the key is refused
    /// (`AdjustRefused::key_reused`).
    #[allow(clippy::too_many_arguments)]
    pub async fn adjust_keyed(
        &self,
        sku_idx: SkuIdx,
        loc_idx: LocIdx,
        sku: SkuId,
        location: LocationId,
        delta: i64,
        reason: AdjustReason,
        key: Option<String>,
    ) -> Result<Result<RecordView, AdjustRefused>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.stock_of(sku_idx)
            .try_send(stock_shard::Adjust {
                sku_idx,
                loc_idx,
                sku,
                location,
                delta,
                reason,
                key,
                reply: tx,
            })
            .map_err(full)?;
        match reply(rx).await?? {
            Err(refused) => Ok(Err(refused)),
            Ok((rec, d)) => {
                d.await?;
                Ok(Ok(rec))
            }
        }
    }

    /// Records of `sku` as a client reads them: what was journaled.
    pub async fn stock_records(
        &self,
        sku: SkuIdx,
        locations: Option<Vec<LocIdx>>,
    ) -> Result<Vec<RecordView>, EngineError> {
        self.read_stock(sku, locations, false).await
    }

    async fn read_stock(
        &self,
        sku: SkuIdx,
        locations: Option<Vec<LocIdx>>,
        provisional: bool,
    ) -> Result<Vec<RecordView>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.stock_of(sku)
            .try_send(Read {
                sku,
                locations,
                provisional,
                reply: tx,
            })
            .map_err(full)?;
        reply(rx).await
    }

    // ---- reservations --------------------------------------------------

    /// A new id whose book is `book` (see `book_of`): a cart held in one
    /// stock shard gets the book on the same arbiter thread, so that the
    /// reservation's insert, and later its confirm or release and their
    /// stock deltas, never wake the other thread.
    fn new_reservation_id(&self, book: usize) -> ReservationId {
        let n = self.0.books.len() as u64;
        let k = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let counter = k * n + book as u64;
        let s = format!("r{:016x}{:08x}", self.0.boot_nonce, counter);
        ReservationId::parse(&s).expect("hex ids are valid")
    }

    /// Holds a cart: every line or none (or what is available with
    /// `partial`). Answers once the cart's journal record is durable.
    pub async fn reserve(
        &self,
        lines: &[CartLine],
        partial: bool,
        ttl_s: u64,
        idem: Option<IdemKey>,
    ) -> Result<Result<Reservation, Vec<Shortage>>, EngineError> {
        if lines.is_empty() {
            // The HTTP layer refuses empty carts; an empty one holds nothing.
            return Ok(Err(Vec::new()));
        }
        let n = self.0.stock.len();
        let first_shard = lines.first().map(|l| l.sku as usize % n);
        if lines
            .iter()
            .all(|l| Some(l.sku as usize % n) == first_shard)
        {
            if let Some(shard) = first_shard {
                // Cancelling this future after the send is harmless: the
                // shard completes the cart on its own.
                return self
                    .reserve_in_one_shard(shard, lines, partial, ttl_s, idem)
                    .await;
            }
        }
        // Across shards the coordinator itself undoes holds: it runs in its
        // own task so that a caller that goes away cannot leak them.
        let (me, lines) = (self.clone(), lines.to_vec());
        tokio::spawn(async move { me.reserve_across_shards(&lines, partial, ttl_s, idem).await })
            .await
            .map_err(|_| EngineError::Stopped)?
    }

    async fn reserve_across_shards(
        &self,
        lines: &[CartLine],
        partial: bool,
        ttl_s: u64,
        idem: Option<IdemKey>,
    ) -> Result<Result<Reservation, Vec<Shortage>>, EngineError> {
        let n = self.0.stock.len();
        let mut per_shard: Vec<Vec<HoldLine>> = vec![Vec::new(); n];
        for (i, l) in lines.iter().enumerate() {
            per_shard[l.sku as usize % n].push(HoldLine {
                line: i,
                sku: l.sku,
                location: l.location,
                qty: l.qty,
            });
        }
        // Ask every shard of the cart at once.
        let mut waiting = Vec::with_capacity(n);
        let mut overloaded = false;
        for (shard, hl) in per_shard.into_iter().enumerate() {
            if hl.is_empty() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            match self.0.stock[shard].try_send(Hold {
                lines: hl,
                partial,
                reply: tx,
            }) {
                Ok(()) => waiting.push(rx),
                Err(_) => overloaded = true,
            }
        }
        let mut outcomes = Vec::with_capacity(lines.len());
        for rx in waiting {
            outcomes.extend(reply(rx).await?);
        }
        let short = outcomes.iter().any(|o| o.short);
        let nothing = outcomes.iter().all(|o| o.held == 0);
        if overloaded || (short && !partial) || nothing {
            self.undo_holds(lines, &outcomes);
            if overloaded {
                self.0
                    .metrics
                    .overload_rejections
                    .fetch_add(1, Ordering::Relaxed);
                return Err(EngineError::Overloaded);
            }
            self.0
                .metrics
                .reservations_rejected
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Err(self.shortages(lines, &outcomes)));
        }
        outcomes.sort_by_key(|o| o.line);
        let now = self.0.clock.now_ms();
        let book = self.0.next_id.load(Ordering::Relaxed) as usize % self.0.books.len();
        let id = self.new_reservation_id(book);
        let held: Vec<Line> = {
            let c = self.0.catalog.read();
            outcomes
                .iter()
                .filter(|o| o.held > 0)
                .filter_map(|o| {
                    let l = &lines[o.line];
                    Some(Line {
                        sku: c.sku(l.sku)?.0.clone(),
                        location: c.location(l.location)?.0.clone(),
                        qty: o.held,
                        requested: l.qty,
                    })
                })
                .collect()
        };
        let reservation = Reservation::held(id.clone(), held, now, expires_at(now, ttl_s));
        let event = Event::held(&reservation, idem);
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.book_for(&id).try_send(Create {
            event,
            reservation: reservation.clone(),
            reply: tx,
        }) {
            self.undo_holds(lines, &outcomes);
            self.0
                .metrics
                .overload_rejections
                .fetch_add(1, Ordering::Relaxed);
            return Err(full(e));
        }
        match reply(rx).await? {
            Ok((durable, ticket)) => {
                // The holds are journaled: the feed may show them.
                let mut per_shard: Vec<Vec<(SkuIdx, LocIdx, u32)>> = vec![Vec::new(); n];
                for o in outcomes.iter().filter(|o| o.held > 0) {
                    let l = &lines[o.line];
                    per_shard[l.sku as usize % n].push((l.sku, l.location, o.held));
                }
                for (i, lines) in per_shard.into_iter().enumerate() {
                    if !lines.is_empty() {
                        // Must not be dropped: bounded by the carts in flight.
                        self.0.stock[i].do_send(Commit {
                            lines,
                            at_ms: now,
                            ticket,
                        });
                    }
                }
                durable.await?;
                self.0
                    .metrics
                    .reservations_held
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Ok(reservation))
            }
            Err(e) => {
                // Not journaled: nothing of it exists.
                self.undo_holds(lines, &outcomes);
                Err(e.into())
            }
        }
    }

    /// The fast path: every line in one stock shard, which journals the cart.
    async fn reserve_in_one_shard(
        &self,
        shard: usize,
        lines: &[CartLine],
        partial: bool,
        ttl_s: u64,
        idem: Option<IdemKey>,
    ) -> Result<Result<Reservation, Vec<Shortage>>, EngineError> {
        let names: Vec<(SkuId, LocationId)> = {
            let c = self.0.catalog.read();
            lines
                .iter()
                .filter_map(|l| Some((c.sku(l.sku)?.0.clone(), c.location(l.location)?.0.clone())))
                .collect()
        };
        if names.len() != lines.len() {
            // Lines are resolved against the catalog, which never forgets.
            return Err(EngineError::Stopped);
        }
        let hold_lines = lines
            .iter()
            .enumerate()
            .map(|(i, l)| HoldLine {
                line: i,
                sku: l.sku,
                location: l.location,
                qty: l.qty,
            })
            .collect();
        let id = self.new_reservation_id(shard);
        let (tx, rx) = oneshot::channel();
        let sent = self.0.stock[shard].try_send(HoldAndRecord {
            lines: hold_lines,
            names,
            partial,
            book: self.book_for(&id).clone(),
            id,
            now: self.0.clock.now_ms(),
            ttl_s,
            idem,
            reply: tx,
        });
        if let Err(e) = sent {
            self.0
                .metrics
                .overload_rejections
                .fetch_add(1, Ordering::Relaxed);
            return Err(full(e));
        }
        match reply(rx).await?? {
            Ok((reservation, durable)) => {
                durable.await?;
                self.0
                    .metrics
                    .reservations_held
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Ok(reservation))
            }
            Err(outcomes) => {
                self.0
                    .metrics
                    .reservations_rejected
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Err(self.shortages(lines, &outcomes)))
            }
        }
    }

    fn undo_holds(&self, lines: &[CartLine], outcomes: &[stock_shard::HoldOutcome]) {
        // Provisional holds only: on_hand untouched (the time does not
        // matter), never journaled (no ticket).
        self.send_deltas(
            0,
            None,
            outcomes.iter().filter(|o| o.held > 0).map(|o| {
                let l = &lines[o.line];
                (
                    l.sku,
                    l.location,
                    StockDelta {
                        reserved: -i64::from(o.held),
                        ..StockDelta::default()
                    },
                )
            }),
        );
    }

    /// Sends deltas already decided (journaled at `at_ms` with `ticket`,
    /// or `None`: undoing provisional holds; none is a sale) to their stock
    /// shards, one message per shard touched.
    fn send_deltas(
        &self,
        at_ms: TimeMs,
        ticket: Option<u64>,
        deltas: impl IntoIterator<Item = (SkuIdx, LocIdx, StockDelta)>,
    ) {
        let n = self.0.stock.len();
        let mut per_shard: Vec<Vec<(SkuIdx, LocIdx, StockDelta)>> = vec![Vec::new(); n];
        for d in deltas {
            per_shard[d.0 as usize % n].push(d);
        }
        for (i, d) in per_shard.into_iter().enumerate() {
            if !d.is_empty() {
                self.0.stock[i].do_send(ApplyDeltas {
                    deltas: d,
                    at_ms,
                    sale: false,
                    ticket,
                });
            }
        }
    }

    fn shortages(
        &self,
        lines: &[CartLine],
        outcomes: &[stock_shard::HoldOutcome],
    ) -> Vec<Shortage> {
        let c = self.0.catalog.read();
        let mut v: Vec<_> = outcomes
            .iter()
            .filter(|o| o.short)
            .filter_map(|o| {
                let l = &lines[o.line];
                Some((
                    o.line,
                    Shortage {
                        sku: c.sku(l.sku)?.0.clone(),
                        location: c.location(l.location)?.0.clone(),
                        requested: l.qty,
                        available: o.available,
                    },
                ))
            })
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, s)| s).collect()
    }

    pub async fn transition(
        &self,
        id: ReservationId,
        transition: Transition,
    ) -> Result<Result<Reservation, TransitionRefused>, EngineError> {
        let (tx, rx) = oneshot::channel();
        let now = self.0.clock.now_ms();
        self.book_for(&id)
            .try_send(Transit {
                id,
                transition,
                now,
                reply: tx,
            })
            .map_err(full)?;
        match reply(rx).await?? {
            Err(refused) => Ok(Err(refused)),
            Ok((r, durable)) => {
                durable.await?;
                Ok(Ok(r))
            }
        }
    }

    /// Turns the held reservation `from` into one new reservation per part
    /// (an order's shipments), expiring `ttl_s` from now: one journal
    /// record, no stock moved. Answers once it is durable.
    pub async fn split_reservation(
        &self,
        from: ReservationId,
        parts: Vec<Vec<Line>>,
        ttl_s: u64,
    ) -> Result<Result<Vec<Reservation>, SplitRefused>, EngineError> {
        let book = book_of(&from, self.0.books.len());
        // The parts live in the same book as `from`: the book inserts them
        // as it journals the split, no other actor involved.
        let into = parts
            .into_iter()
            .map(|lines| (self.new_reservation_id(book), lines))
            .collect();
        let now = self.0.clock.now_ms();
        let (tx, rx) = oneshot::channel();
        self.0.books[book]
            .try_send(Split {
                from,
                into,
                now,
                expires_at_ms: expires_at(now, ttl_s),
                reply: tx,
            })
            .map_err(full)?;
        match reply(rx).await?? {
            Err(refused) => Ok(Err(refused)),
            Ok((parts, durable)) => {
                durable.await?;
                Ok(Ok(parts))
            }
        }
    }

    pub async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.book_for(&id)
            .try_send(Get { id, reply: tx })
            .map_err(full)?;
        reply(rx).await
    }

    /// A copy of the whole state (tests, invariant checks). Not for the hot path.
    pub async fn dump(&self) -> Result<(Catalog, StockTable, Vec<Reservation>), EngineError> {
        let mut stock = StockTable::default();
        for s in &self.0.stock {
            let (tx, rx) = oneshot::channel();
            s.send(Dump { reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            for (sku, r) in reply(rx).await?.iter() {
                *stock.get_mut_or_insert(sku, r.location) = *r;
            }
        }
        let mut res = Vec::new();
        for b in &self.0.books {
            let (tx, rx) = oneshot::channel();
            b.send(DumpBook { reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            res.extend(reply(rx).await?);
        }
        Ok((self.0.catalog.read().clone(), stock, res))
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

/// The engine's order sweeper: every `ORDER_SWEEP_EVERY_S`, drops the
/// orders the snapshotter archived. Holds the engine weakly: it ends with
/// the engine or on `stop`.
fn sweep_orders(engine: std::sync::Weak<Inner>, stop: Arc<AtomicBool>) {
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if last.elapsed() < std::time::Duration::from_secs(crate::limits::ORDER_SWEEP_EVERY_S) {
            continue;
        }
        last = std::time::Instant::now();
        let Some(inner) = engine.upgrade() else {
            return;
        };
        if let Err(e) = Engine(inner).passivate_orders() {
            tracing::warn!(error = %e, "order sweep failed; orders stay in memory");
        }
    }
}

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
