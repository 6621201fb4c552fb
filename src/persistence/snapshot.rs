//! Snapshots of the whole state in sled, and the snapshotter that takes them
//! off the hot path.
//!
//! Why not per-actor snapshots: a stock shard's memory holds carts still
//! being journaled (holds come first, the cart's record after), so no actor's
//! state at a moment is the state of a journal prefix. A snapshot must be.
//! So the snapshotter builds it from the journal itself: it loads the last
//! snapshot, applies the durable records after it (read from the segment
//! files, never from the actors), and writes the result. The actors never
//! wait for it; it costs one core for a moment and the state's size in
//! memory while it runs.
//!
//! sled is beta: it holds snapshots only, pinned to one version, and each is
//! framed with its own magic, version and CRC32C. Two generations are kept;
//! journal segments are removed only when the older one covers them, so a bad
//! newest snapshot is rebuilt from the older one and the journal.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{EventStore, EventsPolicy, Publisher};
use super::history::{days_ms, Entry, History, Place};
use super::journal::{
    decode_event, read_on, remove_segments_through, JournalError, JournalStats, ReadCursor,
};
use super::storage::Storage;
use crate::domain::event::Event;
use crate::domain::history::{cause, Moved, Movement};
use crate::domain::model::Model;
use crate::domain::order::Order;
use crate::domain::TimeMs;
use crate::limits::{
    FINISHED_RETENTION_MS, HISTORY_FLUSH_EVERY, HISTORY_MOVEMENTS_MAX_DEFAULT, HISTORY_PRUNE_BATCH,
    HISTORY_PRUNE_EVERY_ROUNDS, HISTORY_RETENTION_DAYS_DEFAULT, HISTORY_WRITE_BATCH,
    IDEMPOTENCY_RETENTION_MS, ORDER_SEARCH_INDEX_SCAN, SNAPSHOTTER_RETRY, SNAPSHOTTER_TICK,
};

const MAGIC: &[u8; 4] = b"HFS1";
const FORMAT_VERSION: u32 = 1;
const KEYS: [&str; 2] = ["model.0", "model.1"];
/// The order archive: key `order id, 0, snapshot sequence (u64 BE)`,
/// value the order (rmp). Order ids never hold a 0 byte (ids.rs).
const ORDERS_TREE: &str = "orders";

fn order_prefix(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

fn order_key(id: &str, through: u64) -> Vec<u8> {
    let mut k = order_prefix(id);
    k.extend_from_slice(&through.to_be_bytes());
    k
}

/// The archive's index by time: key `created_ms (u64 BE), order id`, no
/// value; one entry per archived order, written with its every version.
const ORDERS_BY_TIME_TREE: &str = "orders_by_time";
/// Set once the index holds every archived order (an archive from before
/// the index is indexed when opened).
const ORDERS_INDEXED_KEY: &[u8] = b"orders_by_time_complete";

fn time_key(created_ms: TimeMs, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 8);
    k.extend_from_slice(&(created_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn of_time_key(k: &[u8]) -> Option<(TimeMs, String)> {
    let at: [u8; 8] = k.get(..8)?.try_into().ok()?;
    let id = std::str::from_utf8(k.get(8..)?).ok()?;
    Some((u64::from_be_bytes(at) as TimeMs, id.to_string()))
}

/// Archived orders newest first, as `SnapshotStore::archived_before`
/// reads them.
pub struct ArchivedPage {
    /// (created_ms, order), newest first.
    pub orders: Vec<(TimeMs, Order)>,
    /// Where the read stopped with more left to read (its budget spent):
    /// the last entry looked at; what is older was not.
    pub stopped_at: Option<(TimeMs, String)>,
}

fn version_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub struct SnapshotStore {
    /// The published events, in their own file in the same directory.
    events: EventStore,
    db: sled::Db,
    /// The movement history, in its own file in the same directory.
    history: History,
}

fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError::Io(format!("snapshot store: {e}"))
}

/// What a snapshot value holds after its header.
fn encode(seq: u64, model: &Model) -> Result<Vec<u8>, JournalError> {
    let body = rmp_serde::to_vec(model).map_err(|e| JournalError::Encode(e.to_string()))?;
    let mut v = Vec::with_capacity(body.len() + 20);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    v.extend_from_slice(&body);
    Ok(v)
}

fn decode(v: &[u8]) -> Result<(u64, Model), String> {
    if v.len() < 20 || &v[0..4] != MAGIC {
        return Err("bad header".into());
    }
    let version = u32::from_le_bytes([v[4], v[5], v[6], v[7]]);
    if version != FORMAT_VERSION {
        return Err(format!("format version {version}"));
    }
    let seq = u64::from_le_bytes(v[8..16].try_into().map_err(|_| "header")?);
    let crc = u32::from_le_bytes(v[16..20].try_into().map_err(|_| "header")?);
    if crc32c::crc32c(&v[20..]) != crc {
        return Err("checksum mismatch".into());
    }
    let mut m: Model = rmp_serde::from_slice(&v[20..]).map_err(|e| e.to_string())?;
    m.catalog.reindex();
    Ok((seq, m))
}

/// A snapshot as `SnapshotStore::newest_encoded` gives it: its sequence
/// number and model, checked (header, checksum, invariants).
pub fn decode_snapshot(v: &[u8]) -> Result<(u64, Model), String> {
    let (seq, m) = decode(v)?;
    m.check_invariants().map_err(|e| e.to_string())?;
    Ok((seq, m))
}

impl SnapshotStore {
    pub fn open(dir: &Path) -> Result<SnapshotStore, JournalError> {
        let db = sled::Config::new().path(dir).open().map_err(err)?;
        let history = History::open(&dir.join("history.redb"))?;
        let events = EventStore::open(&dir.join("events.redb"))?;
        let store = SnapshotStore {
            db,
            history,
            events,
        };
        store.index_archive()?;
        Ok(store)
    }

    fn by_time_tree(&self) -> Result<sled::Tree, JournalError> {
        self.db.open_tree(ORDERS_BY_TIME_TREE).map_err(err)
    }

    /// Indexes by time an archive written before the index was (once):
    /// every archived order's newest version.
    fn index_archive(&self) -> Result<(), JournalError> {
        if self.db.get(ORDERS_INDEXED_KEY).map_err(err)?.is_some() {
            return Ok(());
        }
        let (orders, index) = (self.orders_tree()?, self.by_time_tree()?);
        let mut indexed = 0u64;
        let mut last: Option<String> = None;
        for kv in orders.iter() {
            let (k, v) = kv.map_err(err)?;
            let Some(id) = k
                .iter()
                .position(|b| *b == 0)
                .and_then(|n| std::str::from_utf8(&k[..n]).ok())
            else {
                continue;
            };
            if last.as_deref() == Some(id) {
                continue; // its versions share created_ms
            }
            last = Some(id.to_string());
            let Ok(o) = rmp_serde::from_slice::<Order>(&v) else {
                continue; // read (and reported) when asked for by id
            };
            index
                .insert(time_key(o.created_ms, id), sled::IVec::default())
                .map_err(err)?;
            indexed += 1;
            if indexed.is_multiple_of(100_000) {
                tracing::info!(indexed, "indexing the order archive by time");
            }
        }
        self.db
            .insert(ORDERS_INDEXED_KEY, sled::IVec::default())
            .map_err(err)?;
        self.db.flush().map_err(err)?;
        if indexed > 0 {
            tracing::info!(indexed, "order archive indexed by time");
        }
        Ok(())
    }

    /// Archived orders placed in `[from, to)` before `before` (a
    /// `(created_ms, id)`, exclusive; none: from the newest), newest
    /// first, that `keep` (before reading) and `take` (once read) take: at
    /// most `limit` of them, reading at most `reads` orders and looking at
    /// most at `ORDER_SEARCH_INDEX_SCAN` index entries
    /// (`ArchivedPage::stopped_at` says where the read stopped then). An
    /// archived order that cannot be read is logged and left out.
    #[allow(clippy::too_many_arguments)] // each bound is its own
    pub fn archived_before(
        &self,
        before: Option<(TimeMs, &str)>,
        (from_ms, to_ms): (Option<TimeMs>, Option<TimeMs>),
        limit: usize,
        reads: usize,
        mut keep: impl FnMut(TimeMs, &str) -> bool,
        mut take: impl FnMut(&Order) -> bool,
    ) -> Result<ArchivedPage, JournalError> {
        let index = self.by_time_tree()?;
        let end = [
            before.map(|(t, id)| time_key(t, id)),
            to_ms.map(|t| time_key(t, "")),
        ]
        .into_iter()
        .flatten()
        .min();
        let range = match &end {
            Some(e) => index.range(..e.as_slice()),
            None => index.range::<&[u8], _>(..),
        };
        let mut page = ArchivedPage {
            orders: Vec::new(),
            stopped_at: None,
        };
        let (mut read, mut last_looked) = (0usize, None);
        for (looked, k) in range.keys().rev().enumerate() {
            let k = k.map_err(err)?;
            let Some((at, id)) = of_time_key(&k) else {
                continue;
            };
            if from_ms.is_some_and(|f| at < f) {
                break; // older than asked: so is the rest
            }
            if read >= reads.max(1) || looked >= ORDER_SEARCH_INDEX_SCAN {
                // The next page starts after the last one looked at.
                page.stopped_at = last_looked;
                break;
            }
            last_looked = Some((at, id.clone()));
            if !keep(at, &id) {
                continue;
            }
            read += 1;
            let o = match self.archived_order(&id, None) {
                Ok(Some(o)) => o,
                Ok(None) => continue,
                Err(JournalError::Corrupt(why)) => {
                    tracing::warn!(order = %id, %why, "an archived order cannot be read: left out of the search");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if take(&o) {
                page.orders.push((at, o));
                if page.orders.len() == limit {
                    break;
                }
            }
        }
        Ok(page)
    }

    /// The sequences of the stored generations whose checksum holds, newest first.
    fn generations(&self) -> Vec<(u64, usize)> {
        let mut v: Vec<(u64, usize)> = KEYS
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                let raw = self.db.get(k).ok()??;
                if raw.len() < 20 || &raw[0..4] != MAGIC {
                    return None;
                }
                let seq = u64::from_le_bytes(raw[8..16].try_into().ok()?);
                let crc = u32::from_le_bytes(raw[16..20].try_into().ok()?);
                (crc32c::crc32c(&raw[20..]) == crc).then_some((seq, i))
            })
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }

    /// The newest snapshot that decodes and checks out; a bad one is skipped
    /// (and said so in the log): the older one and the journal rebuild it.
    pub fn load(&self) -> Option<(u64, Model)> {
        let stored = KEYS
            .iter()
            .filter(|k| matches!(self.db.get(k), Ok(Some(_))))
            .count();
        let valid = self.generations();
        if valid.len() < stored {
            tracing::warn!(
                damaged = stored - valid.len(),
                "a snapshot fails its checksum: rebuilding from the older one and the journal"
            );
        }
        for (seq, i) in valid {
            let Ok(Some(raw)) = self.db.get(KEYS[i]) else {
                continue;
            };
            match decode(&raw) {
                Ok((s, m)) => match m.check_invariants() {
                    Ok(()) => return Some((s, m)),
                    Err(e) => {
                        tracing::warn!(seq, error = %e, "snapshot breaks an invariant: rebuilding from the journal")
                    }
                },
                Err(e) => {
                    tracing::warn!(seq, error = %e, "bad snapshot: rebuilding from the journal")
                }
            }
        }
        None
    }

    /// The newest snapshot as stored (header, checksum, body: what
    /// `decode_snapshot` reads back), with its sequence number: what a
    /// cluster owner publishes.
    pub fn newest_encoded(&self) -> Option<(u64, Vec<u8>)> {
        let (seq, i) = self.generations().into_iter().next()?;
        let raw = self.db.get(KEYS[i]).ok()??;
        Some((seq, raw.to_vec()))
    }

    /// The sequence covered by the older generation (0 if fewer than two):
    /// journal segments up to it may go.
    pub fn oldest_kept_seq(&self) -> u64 {
        let g = self.generations();
        if g.len() < 2 {
            0
        } else {
            g[g.len() - 1].0
        }
    }

    /// Writes a snapshot over the older generation and flushes (fsync).
    pub fn save(&self, seq: u64, model: &Model) -> Result<(), JournalError> {
        // Overwrite a damaged or missing generation first, else the older.
        let g = self.generations();
        let slot = match g.as_slice() {
            [] => 0,
            [(_, i)] => 1 - i,
            [.., (_, oldest)] => *oldest,
        };
        self.db
            .insert(KEYS[slot], encode(seq, model)?)
            .map_err(err)?;
        self.db.flush().map_err(err)?;
        Ok(())
    }

    /// The movement history kept beside the snapshots.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The published events kept beside the snapshots.
    pub fn events(&self) -> &EventStore {
        &self.events
    }

    fn orders_tree(&self) -> Result<sled::Tree, JournalError> {
        self.db.open_tree(ORDERS_TREE).map_err(err)
    }

    /// Archives passivated orders as of snapshot `through` (written with
    /// it: `save` flushes both). Per order, a version is kept for each
    /// snapshot that may still be replayed from: the one being written and
    /// the newest one at or before the newest stored generation.
    pub fn archive_orders(
        &self,
        through: u64,
        orders: &[(String, Order)],
    ) -> Result<(), JournalError> {
        if orders.is_empty() {
            return Ok(());
        }
        let tree = self.orders_tree()?;
        let index = self.by_time_tree()?;
        let newest = self.generations().first().map_or(0, |g| g.0);
        for (id, o) in orders {
            let versions: Vec<(u64, sled::IVec)> = tree
                .scan_prefix(order_prefix(id))
                .keys()
                .filter_map(|k| k.ok())
                .filter_map(|k| Some((version_of(&k)?, k)))
                .collect();
            let needed = versions.iter().map(|v| v.0).filter(|v| *v <= newest).max();
            for (v, k) in versions {
                if Some(v) != needed {
                    tree.remove(k).map_err(err)?;
                }
            }
            let body = rmp_serde::to_vec(o).map_err(|e| JournalError::Encode(e.to_string()))?;
            tree.insert(order_key(id, through), body).map_err(err)?;
            index
                .insert(time_key(o.created_ms, id), sled::IVec::default())
                .map_err(err)?;
        }
        Ok(())
    }

    /// A passivated order: its newest archived version, or with `at_most`
    /// the newest one archived by a snapshot at or before that sequence
    /// (replaying from that snapshot: later versions hold later records).
    pub fn archived_order(
        &self,
        id: &str,
        at_most: Option<u64>,
    ) -> Result<Option<Order>, JournalError> {
        let tree = self.orders_tree()?;
        for kv in tree.scan_prefix(order_prefix(id)).rev() {
            let (k, v) = kv.map_err(err)?;
            let Some(version) = version_of(&k) else {
                continue;
            };
            if at_most.is_some_and(|m| version > m) {
                continue;
            }
            let o = rmp_serde::from_slice(&v)
                .map_err(|e| JournalError::Corrupt(format!("archived order {id}: {e}")))?;
            return Ok(Some(o));
        }
        Ok(None)
    }

    /// Test hook: forgets the archive's index by time, as an archive
    /// written before it was (the next `open` indexes it again).
    pub fn forget_order_index(&self) -> Result<(), JournalError> {
        self.by_time_tree()?.clear().map_err(err)?;
        self.db.remove(ORDERS_INDEXED_KEY).map_err(err)?;
        self.db.flush().map_err(err)?;
        Ok(())
    }

    /// Test hook: damages the newest snapshot.
    pub fn corrupt_newest(&self) -> Result<(), JournalError> {
        if let Some((_, i)) = self.generations().first() {
            // Damage the body, keep the header: only the checksum can tell.
            if let Some(raw) = self.db.get(KEYS[*i]).map_err(err)? {
                let mut v = raw.to_vec();
                let n = v.len();
                v[n - 1] ^= 0xff;
                self.db.insert(KEYS[*i], v).map_err(err)?;
                self.db.flush().map_err(err)?;
            }
        }
        Ok(())
    }
}

/// Applies one journal record to `model`. An order event for an order the
/// snapshot passivated loads it back from `archive` first: the version
/// archived at or before `base`, the snapshot the replay started from
/// (a later version would already hold the records being replayed).
/// With `touched`, the stock records it changed are pushed there.
pub fn apply_record(
    model: &mut Model,
    e: &Event,
    archive: Option<(&SnapshotStore, u64)>,
    touched: Option<&mut Vec<Moved>>,
) -> Result<(), JournalError> {
    if let (Event::Order { id, .. }, Some((store, base))) = (e, archive) {
        if !model.orders.contains_key(id) {
            if let Some(o) = store.archived_order(id, Some(base))? {
                model.orders.insert(id.clone(), o);
            }
        }
    }
    model
        .apply_noting(e, touched)
        .map_err(|err| JournalError::Corrupt(err.to_string()))
}

/// When the snapshotter writes a snapshot, and how long the movement
/// history it writes keeps its movements.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    pub every_records: u64,
    pub every_s: u64,
    pub history: HistoryPolicy,
    pub events: EventsPolicy,
}

/// `[history]`: movements older than `retention_ms` (on the records' own
/// clock) go, and the oldest beyond `movements_max` in all.
#[derive(Debug, Clone, Copy)]
pub struct HistoryPolicy {
    pub retention_ms: TimeMs,
    pub movements_max: u64,
}

impl HistoryPolicy {
    pub fn new(retention_days: u64, movements_max: u64) -> Self {
        HistoryPolicy {
            retention_ms: days_ms(retention_days),
            movements_max,
        }
    }
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        HistoryPolicy::new(
            HISTORY_RETENTION_DAYS_DEFAULT,
            HISTORY_MOVEMENTS_MAX_DEFAULT,
        )
    }
}

/// The snapshotter's copy of the state: the newest snapshot plus every
/// durable journal record after it, kept between snapshots (a snapshot
/// is this copy written out). Each record it applies gives the movement
/// history its movements: the one place they are derived, on a leader
/// and on a follower alike (each applies its own journal).
pub struct Tail {
    /// The snapshot the copy was loaded from or last wrote: an archived
    /// order is read as of it.
    base: u64,
    cursor: ReadCursor,
    model: Model,
    moved: Vec<Moved>,
    history: History,
    /// The journal record the stored history is complete through.
    history_through: u64,
    /// Movements applied but not written yet (written a second apart,
    /// `HISTORY_FLUSH_EVERY`, or when a read waits: redb rewrites every
    /// page a transaction touches, so fewer, larger ones cost less), and
    /// the record they are complete through.
    pending: Vec<Entry>,
    pending_through: u64,
    flushed_at: Instant,
    /// The newest movement's time applied: the history's clock for its
    /// retention (the snapshotter reads no clock).
    newest_ms: TimeMs,
    /// The published events derived from the same records.
    events: Publisher,
}

impl Tail {
    /// The newest snapshot that checks out, and the history beside it.
    /// `journal_start`: the journal's last record when it was opened (the
    /// first load after a start). A history past it (a journal cut back
    /// after the history had its records, a power cut under `durability =
    /// "none"`) is cut back to it first: those numbers will name other
    /// records.
    pub fn load(store: &SnapshotStore, journal_start: Option<u64>) -> Result<Tail, JournalError> {
        let (base, mut model) = store.load().unwrap_or_default();
        let history = store.history().clone();
        let mut history_through = history.through()?;
        let journal_last = journal_start.map_or(u64::MAX, |l| l.max(base));
        if history_through > journal_last {
            let cut = history.cut_after(journal_last)?;
            tracing::warn!(
                history_through,
                journal_last,
                cut,
                "the movement history was past the journal: cut back to it"
            );
            history_through = history.through()?;
        }
        let events = Publisher::load(store.events(), base, &mut model, journal_last)?;
        Ok(Tail {
            base,
            cursor: ReadCursor::after(base),
            model,
            moved: Vec::new(),
            history,
            history_through,
            pending: Vec::new(),
            // What the journal no longer holds (before the snapshot) the
            // history never will: complete through it (a history new
            // beside an older snapshot starts there).
            pending_through: history_through.max(base),
            flushed_at: Instant::now(),
            newest_ms: 0,
            events,
        })
    }

    /// Writes the pending movements and their mark.
    pub fn flush_history(&mut self) -> Result<(), JournalError> {
        let through = self.pending_through;
        write_pending(
            &self.history,
            &mut self.pending,
            &mut self.history_through,
            through,
        )?;
        self.flushed_at = Instant::now();
        Ok(())
    }

    /// The last record applied.
    pub fn seq(&self) -> u64 {
        self.cursor.last_seq()
    }

    /// Applies the durable records after the copy, up to `durable`, and
    /// keeps the movements of those the history lacks for the next
    /// `flush_history` (written at once past `HISTORY_WRITE_BATCH`).
    pub fn catch_up(
        &mut self,
        store: &SnapshotStore,
        storage: &dyn Storage,
        journal_dir: &Path,
        durable: u64,
    ) -> Result<(), JournalError> {
        let Tail {
            base,
            cursor,
            model,
            moved,
            history,
            history_through,
            pending,
            pending_through,
            newest_ms,
            events,
            ..
        } = self;
        read_on(storage, journal_dir, cursor, durable, |s, body| {
            let e = decode_event(body)?;
            moved.clear();
            apply_record(model, &e, Some((store, *base)), Some(moved))
                .map_err(|x| JournalError::Corrupt(format!("record {s}: {x}")))?;
            events.derive(model, s, &e, moved)?;
            if s <= *history_through {
                return Ok(());
            }
            if let Some(c) = cause(&e) {
                *newest_ms = (*newest_ms).max(c.at_ms);
                for (i, m) in moved.iter().enumerate() {
                    let names = model
                        .catalog
                        .location(m.location)
                        .zip(model.catalog.sku(m.sku));
                    if let Some(((location, _), (sku, _))) = names {
                        pending.push(Entry {
                            location: location.clone(),
                            sku: sku.clone(),
                            place: Place {
                                seq: s,
                                idx: u32::try_from(i).unwrap_or(u32::MAX),
                            },
                            movement: Movement::new(&c, m),
                        });
                    }
                }
            }
            *pending_through = s;
            if pending.len() >= HISTORY_WRITE_BATCH {
                write_pending(history, pending, history_through, s)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Forgets a bounded batch of the history's movements past `policy`
    /// (time on the records' own clock: the snapshotter reads no clock).
    pub fn prune_history(&self, policy: &HistoryPolicy) -> Result<usize, JournalError> {
        if self.newest_ms == 0 {
            return Ok(0);
        }
        let latest = self.newest_ms;
        self.history.prune(
            latest - policy.retention_ms,
            policy.movements_max,
            HISTORY_PRUNE_BATCH,
        )
    }

    /// Writes the copy as a snapshot (forgetting and archiving what a
    /// snapshot does), then removes the journal segments both stored
    /// generations cover. Returns the sequence covered.
    pub fn snapshot(
        &mut self,
        store: &SnapshotStore,
        storage: &dyn Storage,
        journal_dir: &Path,
    ) -> Result<u64, JournalError> {
        // The history first. A history that cannot be written (a full
        // disk, a damaged file) does not stop snapshots: the engine's
        // restart time and disk matter more. Segments then go only up to
        // what it holds; while this copy runs it writes the rest when it
        // can, but a copy loaded again starts at this snapshot, and the
        // movements between are lost (logged).
        if let Err(e) = self.flush_history() {
            tracing::error!(error = %e, "movement history not written; the journal keeps its records");
        }
        if let Err(e) = self.events.flush() {
            tracing::error!(error = %e, "events not written; the journal keeps their records");
        }
        let seq = self.seq();
        let model = &mut self.model;
        model
            .check_invariants()
            .map_err(|e| JournalError::Corrupt(format!("snapshot at {seq}: {e}")))?;
        // Idempotency keys are kept 24 hours after their first use, measured
        // on the records' own clock: the snapshot reads no clock.
        let latest = model.latest_ms();
        let forgotten = model.forget_idempotency_before(latest - IDEMPOTENCY_RETENTION_MS);
        let archived = model.forget_finished_before(latest - FINISHED_RETENTION_MS);
        // Movements past the reach of a late count (on the same clock).
        model.moves.forget_stale(latest);
        let passivated = model.take_passivable(latest);
        store.archive_orders(seq, &passivated)?;
        store.save(seq, model)?;
        self.base = seq;
        let removable = store
            .oldest_kept_seq()
            .min(self.history_through)
            .min(self.events.marks().through);
        let removed = remove_segments_through(storage, journal_dir, removable)?;
        tracing::info!(
            seq,
            removed_segments = removed,
            forgotten_idempotency_keys = forgotten,
            forgotten_finished_reservations = archived,
            passivated_orders = passivated.len(),
            "snapshot taken"
        );
        Ok(seq)
    }
}

/// Writes `pending` and the mark `through` (if anything is new), and
/// empties it.
fn write_pending(
    history: &History,
    pending: &mut Vec<Entry>,
    written: &mut u64,
    through: u64,
) -> Result<(), JournalError> {
    if through > *written || !pending.is_empty() {
        history.write(through, pending)?;
        pending.clear();
        *written = through;
    }
    Ok(())
}

/// Takes a snapshot now: the last snapshot plus the durable journal records
/// after it (their movements written to the history). Returns the
/// sequence covered.
pub fn take_snapshot(
    store: &SnapshotStore,
    storage: &dyn Storage,
    journal_dir: &Path,
    durable_seq: u64,
) -> Result<u64, JournalError> {
    let mut tail = Tail::load(store, None)?;
    if tail.seq() >= durable_seq {
        return Ok(tail.seq());
    }
    tail.catch_up(store, storage, journal_dir, durable_seq)?;
    tail.snapshot(store, storage, journal_dir)
}

/// Runs the snapshotter until `stop` is set: its copy follows the durable
/// journal (every `SNAPSHOTTER_TICK`), feeding the movement history, and
/// is written out as a snapshot as `policy` says. A failure drops the
/// copy: the next round loads it again from the snapshot and the journal.
pub fn run_snapshotter(
    store: Arc<SnapshotStore>,
    storage: Arc<dyn Storage>,
    journal_dir: PathBuf,
    stats: Arc<JournalStats>,
    policy: SnapshotPolicy,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut last_seq: u64,
) {
    let mut last_at = Instant::now();
    if let Some((seq, _)) = store.generations().first() {
        stats.snapshot_seq.store(*seq, Ordering::Release);
    }
    let mut tail: Option<Tail> = None;
    let mut rounds = 0u64;
    // After a failure, the copy is loaded again only this much later.
    let mut resume_at = Instant::now();
    // The journal's end as it was opened: checked against the history once.
    let mut journal_start = Some(last_seq);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(SNAPSHOTTER_TICK);
        rounds += 1;
        if Instant::now() < resume_at {
            continue;
        }
        let durable = stats.settled_seq();
        let mut round = |tail: &mut Option<Tail>| -> Result<Option<u64>, JournalError> {
            let t = match tail {
                Some(t) => t,
                None => tail.insert(Tail::load(&store, journal_start.take())?),
            };
            t.catch_up(&store, storage.as_ref(), &journal_dir, durable)?;
            // The history's count is read only when a write or a prune
            // moved it, not every tick.
            let mut counted = false;
            if t.flushed_at.elapsed() >= HISTORY_FLUSH_EVERY
                || stats.history_wanted.swap(false, Ordering::AcqRel)
            {
                t.flush_history()?;
                counted = true;
            }
            if rounds.is_multiple_of(HISTORY_PRUNE_EVERY_ROUNDS) {
                t.prune_history(&policy.history)?;
                if let Err(e) = t.events.prune(&policy.events) {
                    tracing::error!(error = %e, "events not pruned; tried again in 10 s");
                }
                counted = true;
            }
            // Events every round: a reader waits a tick at most. A store
            // that cannot be written does not stop snapshots (the journal
            // keeps the records its events lack: segments go only as far
            // as it holds).
            if let Err(e) = t.events.flush() {
                if rounds.is_multiple_of(HISTORY_PRUNE_EVERY_ROUNDS) {
                    tracing::error!(error = %e, "events not written; the journal keeps their records");
                }
            }
            let marks = t.events.marks();
            stats.events_kept.store(marks.count, Ordering::Relaxed);
            stats.events_seq.store(marks.through, Ordering::Release);
            if stats.events_last.swap(marks.last, Ordering::AcqRel) != marks.last {
                stats.events_written.notify_waiters();
            }
            stats
                .history_seq
                .store(t.history_through, Ordering::Release);
            if counted {
                stats
                    .history_movements
                    .store(t.history.len()?, Ordering::Relaxed);
            }
            let due = durable >= last_seq + policy.every_records
                || (durable > last_seq && last_at.elapsed() >= Duration::from_secs(policy.every_s));
            if !due {
                return Ok(None);
            }
            t.snapshot(&store, storage.as_ref(), &journal_dir).map(Some)
        };
        match round(&mut tail) {
            Ok(None) => {}
            Ok(Some(s)) => {
                last_seq = s;
                last_at = Instant::now();
                stats.snapshot_seq.store(s, Ordering::Release);
            }
            Err(e) => {
                tail = None;
                last_at = Instant::now();
                resume_at = last_at + SNAPSHOTTER_RETRY;
                tracing::error!(error = %e, "snapshotter: its copy is dropped and loaded again in 5 s; the journal still holds everything")
            }
        }
    }
}
