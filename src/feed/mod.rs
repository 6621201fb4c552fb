//! The stock feed (api.md, Stock feed): committed changes of stock records
//! for store apps. The stock shards hand each change to the feed's thread
//! through a bounded queue (never blocking a shard: a full queue makes
//! every subscriber resync instead); the thread holds changes until the
//! journal has made them durable and fans them out (`hub`).

pub mod hub;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use hub::{Change, Scope, Sink};

use crate::clock::rfc3339;
use crate::domain::catalog::Catalog;
use crate::domain::stock::StockRecord;
use crate::persistence::Journal;
use parking_lot::RwLock;

/// Changes and requests queued for the feed's thread at most.
pub const FEED_QUEUE_MAX: usize = 65_536;

/// How long the thread waits for the journal between looks: the extra
/// delay a change can see after its record is durable.
const TICK: Duration = Duration::from_millis(2);

enum Msg {
    Change(Change),
    Subscribe {
        scope: Scope,
        sink: Box<dyn Sink>,
        lagging: Arc<AtomicBool>,
        id: Arc<AtomicU64>,
    },
    Unsubscribe(Arc<AtomicU64>),
}

/// The handle the shards and the readers hold: cheap to clone.
#[derive(Clone)]
pub struct Feed {
    tx: Sender<Msg>,
    /// A change could not be queued: the thread resyncs everyone.
    overflow: Arc<AtomicBool>,
    pub stats: Arc<FeedStats>,
}

#[derive(Debug, Default)]
pub struct FeedStats {
    pub changes: AtomicU64,
    pub released: AtomicU64,
    pub dropped: AtomicU64,
    pub subscribers: AtomicU64,
}

/// A subscription: dropping it unsubscribes.
pub struct Subscription {
    feed: Feed,
    /// Filled by the thread (`u64::MAX` until then).
    id: Arc<AtomicU64>,
    pub lagging: Arc<AtomicBool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Must arrive: a blocking send on a bounded queue the thread drains.
        let _ = self.feed.tx.send(Msg::Unsubscribe(self.id.clone()));
    }
}

impl Feed {
    /// Starts the feed's thread; it ends on `stop` or when every handle
    /// is gone.
    pub fn start(
        journal: Journal,
        catalog: Arc<RwLock<Catalog>>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Feed, std::thread::JoinHandle<()>)> {
        let (tx, rx) = bounded(FEED_QUEUE_MAX);
        let feed = Feed {
            tx,
            overflow: Arc::new(AtomicBool::new(false)),
            stats: Arc::default(),
        };
        let (overflow, stats) = (feed.overflow.clone(), feed.stats.clone());
        let handle = std::thread::Builder::new()
            .name("feed".into())
            .spawn(move || run(rx, journal, catalog, overflow, stats, stop))?;
        Ok((feed, handle))
    }

    /// A change from a stock shard. Never blocks: when the queue is full
    /// the change is dropped and every subscriber resyncs.
    pub fn change(&self, c: Change) {
        self.stats.changes.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Change(c)) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.overflow.store(true, Ordering::Release);
        }
    }

    /// Follows `scope` into `sink`. Subscribe before reading the snapshot:
    /// what changes after it then reaches the sink.
    pub fn subscribe(&self, scope: Scope, sink: Box<dyn Sink>) -> Subscription {
        let lagging = Arc::new(AtomicBool::new(false));
        let id = Arc::new(AtomicU64::new(u64::MAX));
        let _ = self.tx.send(Msg::Subscribe {
            scope,
            sink,
            lagging: lagging.clone(),
            id: id.clone(),
        });
        Subscription {
            feed: self.clone(),
            id,
            lagging,
        }
    }
}

/// A stock record as api.md shows it (the fields every answer and the
/// feed share; the HTTP answers add the daily `rotation`).
pub fn record_json(sku: &str, location: &str, r: &StockRecord) -> serde_json::Value {
    serde_json::json!({
        "location": location,
        "sku": sku,
        "on_hand": r.on_hand,
        "reserved": r.reserved,
        "safety_stock": r.safety_stock,
        "available": r.available(),
        "version": r.version,
    })
}

/// A change as api.md's feed sends it: `{"type":"stock", <stock record>,
/// "ts"}`.
pub fn encode(catalog: &Catalog, c: &Change) -> Option<Arc<str>> {
    let (sku, _) = catalog.sku(c.sku)?;
    let (loc, _) = catalog.location(c.record.location)?;
    let mut v = record_json(sku.as_str(), loc.as_str(), &c.record);
    let o = v.as_object_mut()?;
    o.insert("type".into(), "stock".into());
    o.insert("ts".into(), rfc3339(c.at_ms).into());
    Some(Arc::from(v.to_string()))
}

fn run(
    rx: Receiver<Msg>,
    journal: Journal,
    catalog: Arc<RwLock<Catalog>>,
    overflow: Arc<AtomicBool>,
    stats: Arc<FeedStats>,
    stop: Arc<AtomicBool>,
) {
    let mut hub = hub::Hub::default();
    while !stop.load(Ordering::Relaxed) {
        let first = match rx.recv_timeout(TICK) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for m in first.into_iter().chain(rx.try_iter()) {
            match m {
                Msg::Change(c) => hub.offer(c),
                Msg::Subscribe {
                    scope,
                    sink,
                    lagging,
                    id,
                } => {
                    let n = hub.subscribe(scope, sink, lagging);
                    id.store(n as u64, Ordering::Release);
                }
                Msg::Unsubscribe(id) => {
                    let n = id.load(Ordering::Acquire);
                    if n != u64::MAX {
                        hub.unsubscribe(n as usize);
                    }
                }
            }
        }
        if overflow.swap(false, Ordering::AcqRel) {
            hub.overflow();
        }
        let n = {
            let c = catalog.read();
            hub.release(journal.durable_ticket(), |ch| encode(&c, ch))
        };
        stats.released.fetch_add(n as u64, Ordering::Relaxed);
        stats
            .subscribers
            .store(hub.subscribers() as u64, Ordering::Relaxed);
    }
}
