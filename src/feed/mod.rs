//! The stock feed (api.md, Stock feed): committed changes of stock records
//! for store apps. The stock shards hand each change to the feed's thread
//! through a bounded queue (never blocking a shard: a full queue makes
//! every subscriber resync instead); the thread holds changes until the
//! journal has made them durable and fans them out (`hub`) once a window
//! (`[feed] window_ms`): each record's latest value in that window, framed
//! once for every WebSocket session of its scope (`ws`).

pub mod hub;
pub mod ws;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use hub::{Batch, Change, Scope, Sink};

use crate::clock::rfc3339;
use crate::domain::catalog::{Catalog, SkuIdx};
use crate::domain::stock::{StockRecord, Unsellable};
use crate::limits::FEED_QUEUE_MAX;
use crate::persistence::Journal;
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};
use serde::Serialize;

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

/// Where a feed's changes come from, as its thread needs it: when they
/// are durable, and the catalog that names their records.
pub trait Origin: Send + 'static {
    /// Changes with a ticket at or below this are durable.
    fn durable_ticket(&self) -> u64;
    fn catalog(&self) -> MappedRwLockReadGuard<'_, Catalog>;
}

/// An engine's: its journal commits the changes its stock shards make.
pub struct Journaled {
    pub journal: Journal,
    pub catalog: Arc<RwLock<Catalog>>,
}

impl Origin for Journaled {
    fn durable_ticket(&self) -> u64 {
        self.journal.durable_ticket()
    }
    fn catalog(&self) -> MappedRwLockReadGuard<'_, Catalog> {
        RwLockReadGuard::map(self.catalog.read(), |c| c)
    }
}

/// A followed copy's (a cluster node's `Mirror`): what it applies came
/// from the shard's stream, durable already (ticket 0).
pub struct Copied(pub Arc<RwLock<crate::domain::model::Model>>);

impl Origin for Copied {
    fn durable_ticket(&self) -> u64 {
        u64::MAX
    }
    fn catalog(&self) -> MappedRwLockReadGuard<'_, Catalog> {
        RwLockReadGuard::map(self.0.read(), |m| &m.catalog)
    }
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
    /// Starts the feed's thread, releasing what `origin` says is durable
    /// every `window`; it ends on `stop` or when every handle is gone.
    pub fn start<O: Origin>(
        origin: O,
        window: Duration,
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
            .spawn(move || run(rx, origin, window, overflow, stats, stop))?;
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
/// feed share; the HTTP answers add the daily `rotation`), and as the
/// feed's change message with `type` and `ts`. Serialized straight into
/// the message's bytes: a snapshot of a store is thousands of these.
#[derive(Serialize)]
pub struct RecordWire<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub location: &'a str,
    pub sku: &'a str,
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: u32,
    pub available: i64,
    pub version: u64,
    /// Units of on_hand set apart from sale, by bucket (only buckets
    /// holding units; left out when none, so a record looks as it always
    /// did until a store sets units apart).
    #[serde(skip_serializing_if = "BucketsWire::is_empty")]
    pub unsellable: BucketsWire,
    /// Units on their way here by transfer (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub in_transit: i64,
    /// Units of supply still to come here, and the earliest time one is
    /// expected (both left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub incoming: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incoming_eta: Option<String>,
    /// Units sold here against incoming supply, not arrived (left out
    /// when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub backordered: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A record's unsellable units as a JSON object: `{"damaged":2}`.
pub struct BucketsWire(pub Unsellable);

impl BucketsWire {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for BucketsWire {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(b, u)| (b.as_str(), u)))
    }
}

impl<'a> RecordWire<'a> {
    pub fn new(sku: &'a str, location: &'a str, r: &StockRecord) -> Self {
        RecordWire {
            kind: None,
            location,
            sku,
            on_hand: r.on_hand,
            reserved: r.reserved,
            safety_stock: r.safety_stock,
            available: r.available(),
            version: r.version,
            unsellable: BucketsWire(r.unsellable),
            in_transit: r.in_transit,
            incoming: r.incoming,
            incoming_eta: (r.incoming > 0).then(|| rfc3339(r.incoming_eta)),
            backordered: r.backordered,
            ts: None,
        }
    }
}

/// A stock record as a JSON value (the HTTP answers).
pub fn record_json(sku: &str, location: &str, r: &StockRecord) -> serde_json::Value {
    serde_json::to_value(RecordWire::new(sku, location, r)).unwrap_or_default()
}

/// A change as api.md's feed sends it, `{"type":"stock", <stock record>,
/// "ts"}`, in a WebSocket text frame.
pub fn encode(catalog: &Catalog, c: &Change) -> Option<Vec<u8>> {
    let (sku, _) = catalog.sku(c.sku)?;
    let (loc, _) = catalog.location(c.record.location)?;
    let wire = RecordWire {
        kind: Some("stock"),
        ts: Some(rfc3339(c.at_ms)),
        ..RecordWire::new(sku.as_str(), loc.as_str(), &c.record)
    };
    let text = serde_json::to_vec(&wire).ok()?;
    let mut frame = Vec::with_capacity(text.len() + 4);
    ws::frame_into(&mut frame, ws::OP_TEXT, &text);
    Some(frame)
}

/// The feed's snapshot message, `{"type":"snapshot","records":[...]}`,
/// written from the records of one or more parts, each named by its own
/// catalog (records it cannot name are left out).
pub struct SnapshotText {
    out: Vec<u8>,
    first: bool,
}

impl Default for SnapshotText {
    fn default() -> Self {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(br#"{"type":"snapshot","records":["#);
        SnapshotText { out, first: true }
    }
}

impl SnapshotText {
    pub fn add(&mut self, catalog: &Catalog, records: &[(SkuIdx, StockRecord)]) {
        self.out.reserve(records.len() * 140);
        for (s, r) in records {
            let (Some((sku, _)), Some((loc, _))) = (catalog.sku(*s), catalog.location(r.location))
            else {
                continue;
            };
            if !self.first {
                self.out.push(b',');
            }
            self.first = false;
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(
                &mut self.out,
                &RecordWire::new(sku.as_str(), loc.as_str(), r),
            );
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"]}");
        self.out
    }
}

fn run<O: Origin>(
    rx: Receiver<Msg>,
    origin: O,
    window: Duration,
    overflow: Arc<AtomicBool>,
    stats: Arc<FeedStats>,
    stop: Arc<AtomicBool>,
) {
    let mut hub = hub::Hub::default();
    let mut next_release = Instant::now() + window;
    while !stop.load(Ordering::Relaxed) {
        // Messages until the window closes: a record changed ten times in
        // it goes out once, and a session wakes once a window at most.
        let m = match rx.recv_deadline(next_release) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match m {
            Some(Msg::Change(c)) => hub.offer(c),
            Some(Msg::Subscribe {
                scope,
                sink,
                lagging,
                id,
            }) => {
                let n = hub.subscribe(scope, sink, lagging);
                id.store(n as u64, Ordering::Release);
            }
            Some(Msg::Unsubscribe(id)) => {
                let n = id.load(Ordering::Acquire);
                if n != u64::MAX {
                    hub.unsubscribe(n as usize);
                }
            }
            None => {}
        }
        if Instant::now() < next_release {
            continue;
        }
        next_release = Instant::now() + window;
        if overflow.swap(false, Ordering::AcqRel) {
            hub.overflow();
        }
        if hub.pending() > 0 {
            let durable = origin.durable_ticket();
            let c = origin.catalog();
            let n = hub.release(durable, |ch| encode(&c, ch));
            stats.released.fetch_add(n as u64, Ordering::Relaxed);
        }
        stats
            .subscribers
            .store(hub.subscribers() as u64, Ordering::Relaxed);
    }
}
