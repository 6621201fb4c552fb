//! Starting an engine: recover the state, start the journal, the
//! snapshotter and the feed, share the state among the shards, start the
//! actors.

use super::*;

/// The recovered state shared among `n` shards.
struct Shares {
    /// Per stock shard: its records, its rotation counts, its recent
    /// movements, its adjustments' keys.
    stock: Vec<StockShare>,
    /// Per reservation book: its reservations.
    books: Vec<ahash::AHashMap<ReservationId, Reservation>>,
    /// Reservations waiting for supply whose ids name another book (made
    /// when the engine ran with another number of books): kept by the
    /// backorder book all the same (`Engine::book_index`).
    strays: ahash::AHashSet<ReservationId>,
    /// Per order book: its orders.
    orders: Vec<ahash::AHashMap<String, Order>>,
    /// What the orders leave at each location: today's counts, open
    /// pickups.
    locations: ahash::AHashMap<LocationId, location::LocationStart>,
}

type StockShare = (
    StockTable,
    crate::domain::rotation::RotationTable,
    crate::domain::recent_moves::RecentMoves,
    ahash::AHashMap<String, crate::domain::model::AdjustKey>,
);

/// The running actors.
struct Actors {
    stock: Vec<Addr<StockShard>>,
    books: Vec<Addr<ReservationBook>>,
    order_books: Vec<Addr<OrderBook>>,
    order_maps: Vec<order_book::OrderMap>,
    locations: Arc<Locations>,
    system: System,
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
        let (mut model, report) = match start.recovered {
            Some(r) => r,
            None => {
                let snapshot = snapshots.as_ref().and_then(|s| s.load());
                recover_model(storage.as_ref(), &dir, snapshot, snapshots.as_deref())?
            }
        };
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
        if let (Some(store), Some(policy)) = (snapshots.clone(), cfg.snapshot) {
            let (stats, stop) = (journal.stats.clone(), stop_snapshots.clone());
            let storage = storage.clone();
            let last = report.last_seq;
            threads.push(spawn("snapshotter", move || {
                run_snapshotter(store, storage, dir, stats, policy, stop, last)
            })?);
        }
        let n = if cfg.shards == 0 {
            default_shards()
        } else {
            cfg.shards
        };
        let catalog = Arc::new(RwLock::new(std::mem::take(&mut model.catalog)));
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
        let idempotency = std::mem::take(&mut model.idem).into_iter().collect();
        let transfers = std::mem::take(&mut model.transfers);
        let open = transfers.values().filter(|t| t.is_open()).count() as u64;
        metrics.transfers_open.store(open, Ordering::Relaxed);
        let transfers = tokio::sync::Mutex::new(transfers);
        let supplies = tokio::sync::Mutex::new(std::mem::take(&mut model.supplies));
        let webhooks = tokio::sync::Mutex::new(std::mem::take(&mut model.webhooks));
        let mut shares = share(model, n, &catalog.read(), clock.now_ms());
        let strays = std::mem::take(&mut shares.strays);
        let deliveries = Arc::new(AtomicU64::new(0));
        let (actors, actix_thread) = start_actors(
            shares,
            Handles {
                catalog: catalog.clone(),
                journal: journal.clone(),
                clock: clock.clone(),
                feed: feed.clone(),
                metrics: metrics.clone(),
                archive: snapshots.clone(),
                deliveries: deliveries.clone(),
            },
        )?;
        let engine = Engine(Arc::new(Inner {
            catalog,
            stock: actors.stock,
            book_inserts: actors.books.iter().map(|b| b.clone().recipient()).collect(),
            books: actors.books,
            journal,
            clock,
            metrics,
            boot_nonce: rand::random::<u64>(),
            strays,
            deliveries,
            next_id: AtomicU64::new(0),
            system: actors.system,
            actix_thread: Mutex::new(Some(actix_thread)),
            threads: Mutex::new(threads),
            stop_snapshots,
            weights: cfg.sourcing,
            locations_version: AtomicU64::new(0),
            sites: RwLock::new(None),
            order_books: actors.order_books,
            order_maps: actors.order_maps,
            locations: actors.locations,
            archive: snapshots,
            feed,
            transfers,
            supplies,
            webhooks,
        }));
        Ok((
            engine,
            Recovered {
                report,
                idempotency,
            },
        ))
    }
}

/// A named thread of the engine's.
fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, EngineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|_| EngineError::Stopped)
}

/// Shares the recovered state among `n` shards: stock, rotation counts,
/// recent movements and adjustment keys by SKU, reservations by book, orders by id (counting
/// today's capacity from them).
fn share(model: Model, n: usize, c: &Catalog, now: TimeMs) -> Shares {
    let mut rest = model.stock;
    let mut rotation = model.rotation;
    rotation.forget_stale(now);
    let mut moves = model.moves;
    moves.forget_stale(now);
    let mut keys: Vec<ahash::AHashMap<String, crate::domain::model::AdjustKey>> =
        vec![Default::default(); n];
    for (k, a) in model.adjust_keys {
        if let Some(s) = c.sku_idx(a.sku.as_str()) {
            keys[s as usize % n].insert(k, a);
        }
    }
    let stock = keys
        .into_iter()
        .enumerate()
        .map(|(i, keys)| {
            (
                rest.split_off(|s| s as usize % n != i),
                rotation.split_off(|s| s as usize % n != i),
                moves.split_off(|s| s as usize % n != i),
                keys,
            )
        })
        .collect();
    let mut books: Vec<ahash::AHashMap<ReservationId, Reservation>> = vec![Default::default(); n];
    let mut strays = ahash::AHashSet::new();
    for (id, r) in model.reservations {
        // One book sees every reservation waiting for supply, whatever
        // number of books its id was made for.
        let mut book = book_of(&id, n);
        if book != BACKORDER_BOOK && reservation_book::waits_for_supply(&r) {
            book = BACKORDER_BOOK;
            strays.insert(id.clone());
        }
        books[book].insert(id, r);
    }
    let locations = location::LocationStart::of_orders(model.orders.values());
    let mut orders: Vec<ahash::AHashMap<String, Order>> = vec![Default::default(); n];
    for (id, o) in model.orders {
        orders[order_book_of(&id, n)].insert(id, o);
    }
    Shares {
        stock,
        books,
        strays,
        orders,
        locations,
    }
}

/// What every actor shares.
struct Handles {
    catalog: Arc<RwLock<Catalog>>,
    journal: Journal,
    clock: Arc<dyn Clock>,
    feed: Feed,
    metrics: Arc<Metrics>,
    archive: Option<Arc<SnapshotStore>>,
    /// Deliveries the backorder book has journaled (`Inner::deliveries`).
    deliveries: Arc<AtomicU64>,
}

/// Starts the actix system on its own thread, one arbiter per shard, each
/// running that shard's `StockShard`, `ReservationBook` and `OrderBook`;
/// the location actors are spread over the same arbiters.
fn start_actors(
    shares: Shares,
    h: Handles,
) -> Result<(Actors, std::thread::JoinHandle<()>), EngineError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = spawn("actix-system", move || {
        let sys = System::new();
        sys.block_on(async move {
            let arbiters: Vec<Arbiter> = (0..shares.stock.len()).map(|_| Arbiter::new()).collect();
            let handles: Vec<ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
            let stock = start_stock(shares.stock, &handles, &h);
            let books: Vec<Addr<ReservationBook>> = shares
                .books
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    let (j, s, c, k, m, d) = (
                        h.journal.clone(),
                        stock.clone(),
                        h.catalog.clone(),
                        h.clock.clone(),
                        h.metrics.clone(),
                        h.deliveries.clone(),
                    );
                    ReservationBook::start_in_arbiter(&handles[i], move |_| {
                        ReservationBook::new(b, j, s, c, k, (m, d))
                    })
                })
                .collect();
            let locations = Arc::new(Locations::start(
                shares.locations,
                handles.clone(),
                h.catalog.clone(),
            ));
            let (order_books, order_maps) = shares
                .orders
                .into_iter()
                .enumerate()
                .map(|(i, orders)| {
                    let start = order_book::OrderBookStart {
                        orders,
                        journal: h.journal.clone(),
                        archive: h.archive.clone(),
                        stock: stock.clone(),
                        locations: locations.clone(),
                        catalog: h.catalog.clone(),
                        clock: h.clock.clone(),
                        metrics: h.metrics.clone(),
                    };
                    let (book, map) = OrderBook::new(start);
                    (OrderBook::start_in_arbiter(&handles[i], move |_| book), map)
                })
                .unzip();
            let actors = Actors {
                stock,
                books,
                order_books,
                order_maps,
                locations,
                system: System::current(),
            };
            let _ = tx.send((actors, arbiters));
        });
        sys.run().ok();
    })?;
    let (actors, _arbiters) = rx.recv().map_err(|_| EngineError::Stopped)?;
    Ok((actors, thread))
}

/// Starts each stock shard on its arbiter.
fn start_stock(
    shares: Vec<StockShare>,
    arbiters: &[ArbiterHandle],
    h: &Handles,
) -> Vec<Addr<StockShard>> {
    shares
        .into_iter()
        .enumerate()
        .map(|(i, (table, rotation, moves, applied))| {
            let start = stock_shard::ShardStart {
                table,
                rotation,
                moves,
                applied,
                catalog: h.catalog.clone(),
                journal: h.journal.clone(),
                clock: h.clock.clone(),
                feed: h.feed.clone(),
                metrics: h.metrics.clone(),
                index: i as u32,
            };
            StockShard::start_in_arbiter(&arbiters[i], move |_| StockShard::new(start))
        })
        .collect()
}
