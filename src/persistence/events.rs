//! The published events' store (api.md, Events): every event with its
//! number, in `snapshots/events.redb` beside the snapshots and outside
//! the journal (which is trimmed behind them), for `[events]
//! retention_days` and at most `[events] events_max` events in all.
//!
//! A log in a B-tree, as the movement history's: events are kept in
//! blocks of up to `EVENTS_BLOCK`, keyed by the number of their first
//! (numbers have no gaps within the store), so a write appends at the
//! tree's right edge and a prune cuts whole blocks at its left edge.
//! Each event keeps the journal record it came from, so the store can be
//! cut back with the journal. Each write is one durable transaction with
//! its mark (`through`, the journal record the store is complete
//! through): a crash leaves it whole through a mark, and the writer (the
//! snapshotter's copy) derives what comes after it again.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::domain::event::Event;
use crate::domain::history::Moved;
use crate::domain::model::Model;
use crate::domain::published::{Kind, Published, Watch};
use crate::domain::TimeMs;
use crate::limits::{
    EVENTS_BLOCK, EVENTS_CACHE_BYTES, EVENTS_MAX_DEFAULT, EVENTS_PRUNE_BATCH, EVENTS_RECENT,
    EVENTS_RETENTION_DAYS_DEFAULT, EVENTS_WRITE_BATCH,
};

use super::history::{days_ms, open_derived};
use super::journal::JournalError;

/// The number of a block's first event -> the block (rmp `Block`).
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// `through` (the journal record the store is complete through), `last`
/// (the newest event's number) and `count` (events held).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError::Io(format!("events: {e}"))
}

/// One event as stored (its number is its place in its block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The journal record it was derived from.
    pub seq: u64,
    pub kind: u16,
    pub at_ms: TimeMs,
    pub locations: Vec<String>,
    pub data: String,
}

impl Stored {
    pub fn new(seq: u64, p: Published) -> Stored {
        Stored {
            seq,
            kind: p.kind.code(),
            at_ms: p.at_ms,
            locations: p.locations.into_iter().map(|l| l.to_string()).collect(),
            data: p.data,
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::of_code(self.kind)
    }

    /// The event numbered `id` as the API shows it and webhooks send it:
    /// `{"id","type","at","data"}` (its data is JSON already).
    pub fn to_json(&self, id: u64) -> String {
        let kind = self.kind().map_or("unknown", Kind::as_str);
        let at = crate::domain::rfc3339(self.at_ms);
        format!(
            r#"{{"id":{id},"type":"{kind}","at":"{at}","data":{}}}"#,
            self.data
        )
    }
}

type Block = Vec<Stored>;

/// An event read: as stored, and its JSON made once however many readers
/// ask (every webhook subscription and stream sends the same text).
#[derive(Debug)]
pub struct Read {
    pub stored: Stored,
    id: u64,
    json: OnceLock<String>,
}

impl Read {
    fn new(id: u64, stored: Stored) -> Arc<Read> {
        Arc::new(Read {
            stored,
            id,
            json: OnceLock::new(),
        })
    }

    /// `Stored::to_json` of it, made at the first ask.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| self.stored.to_json(self.id))
    }
}

impl std::ops::Deref for Read {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        &self.stored
    }
}

/// The newest events written, in memory (`EVENTS_RECENT` at most): a
/// reader keeping up (a webhook subscription, a stream) reads them here,
/// not by decoding the store's blocks, and all readers share one copy.
/// Numbered from `first` without a gap; what the store no longer keeps
/// (pruned, cut) is not kept here either.
#[derive(Default)]
struct Recent {
    first: u64,
    events: VecDeque<Arc<Read>>,
    /// Kept only once a reader came (a server nobody reads the events of
    /// spends nothing on them).
    read: bool,
}

impl Recent {
    fn next(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    /// Appends `events` numbered from `first` (the newest
    /// `EVENTS_RECENT` of them); a gap starts again there.
    fn append(&mut self, first: u64, events: &[Stored]) {
        if events.is_empty() || !self.read {
            return;
        }
        let skip = events.len().saturating_sub(EVENTS_RECENT);
        if skip > 0 || self.events.is_empty() || first != self.next() {
            self.events.clear();
            self.first = first + skip as u64;
        }
        for (i, e) in events.iter().enumerate().skip(skip) {
            self.events
                .push_back(Read::new(first + i as u64, e.clone()));
        }
        while self.events.len() > EVENTS_RECENT {
            self.events.pop_front();
            self.first += 1;
        }
    }

    /// Forgets those numbered before `oldest`.
    fn forget_before(&mut self, oldest: u64) {
        while self.first < oldest && self.events.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// `EventStore::page` answered from memory, if every event after
    /// `after` is here. Filtered under the read lock, cloning only what
    /// `keep` keeps (a copy of all, filtered outside, cost 1,000 streams
    /// a third of their throughput): a reader of a lower CPU priority
    /// (a webhook's) paused by the scheduler in here holds back the
    /// writer's next append, and the readers queued behind it, for a
    /// scheduling slice; they are all off the request path.
    fn page(
        &self,
        after: u64,
        limit: usize,
        scan: usize,
        keep: impl Fn(&Stored) -> bool,
    ) -> Option<Page> {
        let next = after.checked_add(1)?;
        if self.events.is_empty() || next < self.first || next > self.next() {
            return None;
        }
        let mut page = Page {
            through: after,
            ..Page::default()
        };
        let from = (next - self.first) as usize;
        for e in self.events.range(from..).take(scan) {
            if page.events.len() == limit {
                break;
            }
            page.through = e.id;
            if keep(&e.stored) {
                page.events.push((e.id, e.clone()));
            }
        }
        Some(page)
    }
}

/// The newest block's key and bytes, if any.
fn newest_block(
    blocks: &redb::Table<'_, u64, &'static [u8]>,
) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
    Ok(blocks
        .last()
        .map_err(err)?
        .map(|(k, v)| (k.value(), v.value().to_vec())))
}

fn decode(v: &[u8]) -> Result<Block, JournalError> {
    rmp_serde::from_slice(v).map_err(|x| JournalError::Corrupt(format!("events: {x}")))
}

fn encode(b: &Block) -> Result<Vec<u8>, JournalError> {
    rmp_serde::to_vec(b).map_err(|x| JournalError::Encode(x.to_string()))
}

/// What a read found after the number asked.
#[derive(Debug, Default)]
pub struct Page {
    /// The events that passed the filter, with their numbers, in order.
    pub events: Vec<(u64, Arc<Read>)>,
    /// The number of the last event looked at (the filter may pass over
    /// many): the next read goes on after it. The number asked for when
    /// nothing was looked at.
    pub through: u64,
    /// Events were dropped after the number asked: the oldest kept.
    pub gone: Option<u64>,
}

/// The store's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub through: u64,
    pub last: u64,
    pub count: u64,
}

#[derive(Clone)]
pub struct EventStore {
    db: Arc<redb::Database>,
    recent: Arc<RwLock<Recent>>,
}

impl EventStore {
    /// Opens the store at `path`, made if there is none; a damaged one is
    /// set aside and a new one begins (`history::open_derived`).
    pub fn open(path: &Path) -> Result<EventStore, JournalError> {
        let db = open_derived(path, EVENTS_CACHE_BYTES, "event store", |db| {
            EventStore {
                db: db.clone(),
                recent: Arc::default(),
            }
            .change(|_, _| Ok(()))
        })?;
        Ok(EventStore {
            db,
            recent: Arc::default(),
        })
    }

    /// Runs `f` on the tables in one durable transaction.
    fn change<T>(
        &self,
        f: impl FnOnce(
            &mut redb::Table<'_, u64, &'static [u8]>,
            &mut redb::Table<'_, &'static str, u64>,
        ) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_quick_repair(true);
        let out = {
            let mut blocks = tx.open_table(BLOCKS).map_err(err)?;
            let mut meta = tx.open_table(META).map_err(err)?;
            f(&mut blocks, &mut meta)?
        };
        tx.commit().map_err(err)?;
        Ok(out)
    }

    pub fn marks(&self) -> Result<Marks, JournalError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(META).map_err(err)?;
        let get = |k: &str| -> Result<u64, JournalError> {
            Ok(t.get(k).map_err(err)?.map_or(0, |v| v.value()))
        };
        Ok(Marks {
            through: get("through")?,
            last: get("last")?,
            count: get("count")?,
        })
    }

    /// The oldest event's number kept (the next one's when none is).
    pub fn oldest(&self) -> Result<u64, JournalError> {
        let tx = self.db.begin_read().map_err(err)?;
        let blocks = tx.open_table(BLOCKS).map_err(err)?;
        let first = blocks.first().map_err(err)?.map(|(k, _)| k.value());
        match first {
            Some(f) => Ok(f),
            None => Ok(self.marks()?.last + 1),
        }
    }

    /// Writes `events`, numbered from `first`, and the mark `through`, in
    /// one transaction. `first` follows the newest kept, or starts a
    /// store that held none (a node begun from another's snapshot starts
    /// at that snapshot's number).
    pub fn write(&self, through: u64, first: u64, events: &[Stored]) -> Result<(), JournalError> {
        self.change(|blocks, meta| {
            let last = meta.get("last").map_err(err)?.map_or(0, |v| v.value());
            let count = meta.get("count").map_err(err)?.map_or(0, |v| v.value());
            if !events.is_empty() && first <= last && count > 0 {
                return Err(JournalError::Corrupt(format!(
                    "events: {first} written after {last}"
                )));
            }
            let mut rest = events;
            // The newest block filled up first, so a quiet store does not
            // keep a block per write. Numbers skipped (events lost with
            // records the journal no longer had when this store was
            // behind: logged by the writer) start a block of their own.
            let newest = newest_block(blocks)?;
            if let Some((key, v)) = newest.filter(|_| first == last + 1) {
                let mut block = decode(&v)?;
                if block.len() < EVENTS_BLOCK
                    && !rest.is_empty()
                    && key + block.len() as u64 == first
                {
                    let n = (EVENTS_BLOCK - block.len()).min(rest.len());
                    block.extend_from_slice(&rest[..n]);
                    blocks
                        .insert(key, encode(&block)?.as_slice())
                        .map_err(err)?;
                    rest = &rest[n..];
                }
            }
            let mut at = first + (events.len() - rest.len()) as u64;
            for chunk in rest.chunks(EVENTS_BLOCK) {
                blocks
                    .insert(at, encode(&chunk.to_vec())?.as_slice())
                    .map_err(err)?;
                at += chunk.len() as u64;
            }
            if !events.is_empty() {
                meta.insert("last", first + events.len() as u64 - 1)
                    .map_err(err)?;
                meta.insert("count", count + events.len() as u64)
                    .map_err(err)?;
            }
            meta.insert("through", through).map_err(err)?;
            Ok(())
        })?;
        // Taken into memory once committed. A reader in between finds
        // memory behind the store: it reads the store for what memory
        // lacks, or finds nothing new yet, as it would have an instant
        // earlier (readers learn of new events from the writer's mark,
        // moved after this).
        self.recent.write().append(first, events);
        Ok(())
    }

    /// The events after `after` that `keep` passes, `limit` at most,
    /// looking at `scan` events at most.
    pub fn page(
        &self,
        after: u64,
        limit: usize,
        scan: usize,
        keep: impl Fn(&Stored) -> bool,
    ) -> Result<Page, JournalError> {
        let kept = {
            let recent = self.recent.read();
            if let Some(page) = recent.page(after, limit, scan, &keep) {
                return Ok(page);
            }
            recent.read
        };
        if !kept {
            self.recent.write().read = true;
        }
        self.page_stored(after, limit, scan, keep)
    }

    /// `page` read from the store's blocks.
    fn page_stored(
        &self,
        after: u64,
        limit: usize,
        scan: usize,
        keep: impl Fn(&Stored) -> bool,
    ) -> Result<Page, JournalError> {
        let tx = self.db.begin_read().map_err(err)?;
        let blocks = tx.open_table(BLOCKS).map_err(err)?;
        let mut page = Page {
            through: after,
            ..Page::default()
        };
        let Some(next) = after.checked_add(1) else {
            return Ok(page);
        };
        if let Some((first, _)) = blocks.first().map_err(err)? {
            if first.value() > next {
                page.gone = Some(first.value());
                return Ok(page);
            }
        }
        // The block holding `next`, and those after it.
        let start = match blocks.range(..=next).map_err(err)?.next_back() {
            Some(kv) => kv.map_err(err)?.0.value(),
            None => next,
        };
        let mut looked = 0usize;
        for kv in blocks.range(start..).map_err(err)? {
            let (k, v) = kv.map_err(err)?;
            let first = k.value();
            for (i, e) in decode(v.value())?.into_iter().enumerate() {
                let id = first + i as u64;
                if id <= after {
                    continue;
                }
                if page.events.len() == limit || looked == scan {
                    return Ok(page);
                }
                looked += 1;
                page.through = id;
                if keep(&e) {
                    page.events.push((id, Read::new(id, e)));
                }
            }
        }
        Ok(page)
    }

    /// Forgets the events of journal records after `seq`, and the mark
    /// past it: a journal cut back (a cluster leader giving up the lead
    /// with records the stream never took) loses those records, and the
    /// records written later under their numbers are other ones. Answers
    /// how many went.
    pub fn cut_after(&self, seq: u64) -> Result<usize, JournalError> {
        // Rare (a start after a leader gave up the lead): the store's
        // blocks alone until the next write; held across the cut so no
        // reader is shown an event cut (its number is another's next).
        let mut recent = self.recent.write();
        *recent = Recent {
            read: recent.read,
            ..Recent::default()
        };
        self.change(|blocks, meta| {
            let mut gone = 0usize;
            let mut last = meta.get("last").map_err(err)?.map_or(0, |v| v.value());
            // From the newest block back, while its newest is past `seq`.
            while let Some((key, v)) = newest_block(blocks)? {
                let mut block = decode(&v)?;
                let kept = block.partition_point(|e| e.seq <= seq);
                if kept == block.len() {
                    break;
                }
                gone += block.len() - kept;
                block.truncate(kept);
                if block.is_empty() {
                    blocks.remove(key).map_err(err)?;
                    last = key - 1;
                } else {
                    blocks
                        .insert(key, encode(&block)?.as_slice())
                        .map_err(err)?;
                    break;
                }
            }
            if let Some((key, v)) = newest_block(blocks)? {
                last = key + decode(&v)?.len() as u64 - 1;
            }
            if gone > 0 {
                let count = meta.get("count").map_err(err)?.map_or(0, |v| v.value());
                meta.insert("count", count.saturating_sub(gone as u64))
                    .map_err(err)?;
                meta.insert("last", last).map_err(err)?;
            }
            let through = meta.get("through").map_err(err)?.map_or(0, |v| v.value());
            meta.insert("through", through.min(seq)).map_err(err)?;
            Ok(gone)
        })
    }

    /// Forgets the oldest blocks, `batch` events at most: those wholly
    /// before `older_than`, and any beyond `keep_at_most` in all. The
    /// newest event is always kept (the next number follows it). Answers
    /// how many went.
    pub fn prune(
        &self,
        older_than: TimeMs,
        keep_at_most: u64,
        batch: usize,
    ) -> Result<usize, JournalError> {
        self.change(|blocks, meta| {
            let mut count = meta.get("count").map_err(err)?.map_or(0, |v| v.value());
            let newest = blocks.last().map_err(err)?.map(|(k, _)| k.value());
            let mut doomed = Vec::new();
            let mut gone = 0usize;
            for kv in blocks.iter().map_err(err)? {
                let (k, v) = kv.map_err(err)?;
                if Some(k.value()) == newest {
                    break;
                }
                let block = decode(v.value())?;
                let old = block
                    .iter()
                    .map(|e| e.at_ms)
                    .max()
                    .is_some_and(|at| at < older_than);
                if gone + block.len() > batch.max(1) || !(old || count > keep_at_most) {
                    break;
                }
                count = count.saturating_sub(block.len() as u64);
                gone += block.len();
                doomed.push(k.value());
            }
            for k in doomed {
                blocks.remove(k).map_err(err)?;
            }
            meta.insert("count", count).map_err(err)?;
            // Memory forgets them before the store does (a reader falls
            // back to the store, which says they are gone), never after.
            if gone > 0 {
                if let Some((first, _)) = blocks.first().map_err(err)? {
                    self.recent.write().forget_before(first.value());
                }
            }
            Ok(gone)
        })
    }
}

/// `[events]`: events older than `retention_ms` (on the records' own
/// clock) go, and the oldest beyond `events_max` in all.
#[derive(Debug, Clone, Copy)]
pub struct EventsPolicy {
    pub retention_ms: TimeMs,
    pub events_max: u64,
}

impl EventsPolicy {
    pub fn new(retention_days: u64, events_max: u64) -> Self {
        EventsPolicy {
            retention_ms: days_ms(retention_days),
            events_max,
        }
    }
}

impl Default for EventsPolicy {
    fn default() -> Self {
        EventsPolicy::new(EVENTS_RETENTION_DAYS_DEFAULT, EVENTS_MAX_DEFAULT)
    }
}

/// The snapshotter's side of the events: derives them from each record
/// its copy applies, numbers them (`Model::events_published`, kept in the
/// snapshots, so a node begun from another's snapshot numbers as it
/// does), and writes those the store lacks.
pub struct Publisher {
    store: EventStore,
    /// The store's marks as written.
    marks: Marks,
    watch: Watch,
    derived: Vec<Published>,
    /// Derived, not written yet; the first's number; the record they are
    /// complete through.
    pending: Vec<Stored>,
    pending_first: u64,
    pending_through: u64,
    /// The newest event's time: the store's clock for its retention.
    newest_ms: TimeMs,
}

impl Publisher {
    /// Beside a copy loaded from the snapshot at `base` (its `model`).
    /// A store past `journal_last` (a journal cut back after the store had
    /// its records) is cut back to it first.
    pub fn load(
        store: &EventStore,
        base: u64,
        model: &mut Model,
        journal_last: u64,
    ) -> Result<Publisher, JournalError> {
        let mut marks = store.marks()?;
        if marks.through > journal_last {
            let cut = store.cut_after(journal_last)?;
            tracing::warn!(
                through = marks.through,
                journal_last,
                cut,
                "the event store was past the journal: cut back to it"
            );
            marks = store.marks()?;
        }
        // A store complete through the snapshot or before it (its records
        // gone from the journal, a store new beside an old snapshot)
        // numbers on from the newer of the two: never a number twice.
        if marks.through <= base {
            model.events_published = model.events_published.max(marks.last);
        }
        Ok(Publisher {
            store: store.clone(),
            marks,
            watch: Watch::default(),
            derived: Vec::new(),
            pending: Vec::new(),
            pending_first: 0,
            pending_through: marks.through.max(base),
            newest_ms: 0,
        })
    }

    /// The events of record `s` (`e`, applied to make `model`, moving
    /// `moved`): numbered, and kept for `flush` if the store lacks them.
    pub fn derive(
        &mut self,
        model: &mut Model,
        s: u64,
        e: &Event,
        moved: &[Moved],
    ) -> Result<(), JournalError> {
        self.watch.derive(model, e, moved, &mut self.derived);
        let n = self.derived.len() as u64;
        if s <= self.marks.through {
            model.events_published += n;
            self.derived.clear();
            if s == self.marks.through && model.events_published != self.marks.last {
                // Another derivation numbered the store (a version that
                // derived otherwise): the store's numbers stand.
                tracing::warn!(
                    derived = model.events_published,
                    stored = self.marks.last,
                    "events numbered otherwise than stored: numbering goes on from the store"
                );
                model.events_published = self.marks.last;
            }
            return Ok(());
        }
        if self.pending.is_empty() {
            self.pending_first = model.events_published + 1;
        }
        model.events_published += n;
        for p in self.derived.drain(..) {
            self.newest_ms = self.newest_ms.max(p.at_ms);
            self.pending.push(Stored::new(s, p));
        }
        self.pending_through = s;
        if self.pending.len() >= EVENTS_WRITE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is pending and the mark, if anything is new.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending_through > self.marks.through || !self.pending.is_empty() {
            if !self.pending.is_empty()
                && self.marks.count > 0
                && self.pending_first > self.marks.last + 1
            {
                tracing::error!(
                    from = self.marks.last + 1,
                    to = self.pending_first - 1,
                    "events lost: the store was behind the journal's oldest record"
                );
            }
            self.store
                .write(self.pending_through, self.pending_first, &self.pending)?;
            if !self.pending.is_empty() {
                self.marks.last = self.pending_first + self.pending.len() as u64 - 1;
                self.marks.count += self.pending.len() as u64;
            }
            self.marks.through = self.pending_through;
            self.pending.clear();
        }
        Ok(())
    }

    /// The journal record the store is complete through, and its newest
    /// event's number.
    pub fn marks(&self) -> Marks {
        self.marks
    }

    /// Forgets a bounded batch of events past `policy` (time on the
    /// events' own clock: the snapshotter reads no clock).
    pub fn prune(&mut self, policy: &EventsPolicy) -> Result<usize, JournalError> {
        if self.newest_ms == 0 {
            return Ok(0);
        }
        // Batches until nothing more goes (a busy engine publishes more
        // than a batch between two rounds), ten at most.
        let mut gone = 0;
        for _ in 0..10 {
            let n = self.store.prune(
                self.newest_ms - policy.retention_ms,
                policy.events_max,
                EVENTS_PRUNE_BATCH,
            )?;
            self.marks.count = self.marks.count.saturating_sub(n as u64);
            gone += n;
            if n == 0 {
                break;
            }
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, at_ms: TimeMs) -> Stored {
        Stored {
            seq,
            kind: Kind::StockChanged.code(),
            at_ms,
            locations: vec!["S1".into()],
            data: format!("{{\"seq\":{seq}}}"),
        }
    }

    fn ids(p: &Page) -> Vec<u64> {
        p.events.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn writes_pages_cuts_and_prunes_in_number_order() {
        let dir = tempfile::tempdir().expect("events");
        let s = EventStore::open(&dir.path().join("events.redb")).expect("events");
        assert_eq!(s.oldest().expect("events"), 1);
        assert_eq!(
            ids(&s.page(0, 10, 100, |_| true).expect("events")),
            Vec::<u64>::new()
        );
        // Three writes: the first fills the newest block, the rest follow.
        s.write(2, 1, &[ev(1, 10), ev(2, 20), ev(2, 20)])
            .expect("events");
        let many: Vec<Stored> = (0..EVENTS_BLOCK as u64 + 5)
            .map(|i| ev(3 + i / 10, 30))
            .collect();
        s.write(3 + many.len() as u64 / 10, 4, &many)
            .expect("events");
        let last = 3 + many.len() as u64;
        assert_eq!(s.marks().expect("events").last, last);
        assert_eq!(s.marks().expect("events").count, last);
        // Numbers never go back.
        assert!(s.write(100, last, &[ev(100, 40)]).is_err());
        // Pages: after, limit, a filter, a scan bound.
        let p = s.page(2, 3, 1000, |_| true).expect("events");
        assert_eq!(ids(&p), vec![3, 4, 5]);
        assert_eq!(p.through, 5);
        let all = s.page(0, 10_000, 10_000, |_| true).expect("events");
        assert!(s
            .page(u64::MAX, 10, 10, |_| true)
            .expect("events")
            .events
            .is_empty());
        assert_eq!(ids(&all), (1..=last).collect::<Vec<_>>());
        let odd = s.page(0, 10_000, 10, |e| e.seq % 2 == 1).expect("events");
        assert_eq!(odd.through, 10, "the scan stops at 10 looked at");
        assert!(odd.events.iter().all(|(_, e)| e.seq % 2 == 1));
        // Cut back to journal record 3: events of records 4.. go.
        let kept = all.events.iter().filter(|(_, e)| e.seq <= 3).count() as u64;
        s.cut_after(3).expect("events");
        let m = s.marks().expect("events");
        assert_eq!((m.last, m.count, m.through), (kept, kept, 3));
        s.write(4, kept + 1, &[ev(4, 50)]).expect("events");
        assert_eq!(
            s.page(kept, 10, 10, |_| true).expect("events").events[0]
                .1
                .stored,
            ev(4, 50)
        );
        // A gap (events lost with the journal's records) starts a block.
        s.write(4, kept + 3, &[ev(4, 50)]).expect("events");
        let p = s.page(kept, 10, 10, |_| true).expect("events");
        assert_eq!(ids(&p), vec![kept + 1, kept + 3]);
        s.cut_after(3).expect("events");
        assert_eq!(
            s.marks().expect("events").last,
            kept,
            "the cut finds the last kept"
        );
        s.write(4, kept + 1, &[ev(4, 50)]).expect("events");
        // Prune by count: whole blocks, never the newest one.
        let more: Vec<Stored> = (0..3 * EVENTS_BLOCK).map(|_| ev(5, 60)).collect();
        s.write(5, kept + 2, &more).expect("events");
        let gone = s.prune(0, 1, usize::MAX).expect("events");
        assert!(gone > 0);
        let oldest = s.oldest().expect("events");
        let p = s.page(0, 10, 10, |_| true).expect("events");
        assert_eq!(p.gone, Some(oldest), "asking before the oldest is told it");
        assert_eq!(
            s.page(oldest - 1, 1, 1, |_| true).expect("events").events[0].0,
            oldest
        );
        assert_eq!(
            s.marks().expect("events").count,
            s.marks().expect("events").last - oldest + 1
        );
        // By age.
        let before = s.marks().expect("events").count;
        assert_eq!(
            s.prune(0, u64::MAX, usize::MAX).expect("events"),
            0,
            "nothing older than 0"
        );
        assert_eq!(s.marks().expect("events").count, before);
        drop(s);
        let s = EventStore::open(&dir.path().join("events.redb")).expect("events");
        assert_eq!(
            s.marks().expect("events").count,
            before,
            "kept across a reopen"
        );
    }

    /// Every page the newest events in memory answer is the page the
    /// blocks answer: after writes, a gap, a prune and a cut.
    #[test]
    fn pages_from_memory_are_the_stores_pages() {
        let dir = tempfile::tempdir().expect("events");
        let s = EventStore::open(&dir.path().join("events.redb")).expect("events");
        s.write(0, 1, &[ev(0, 0)]).expect("events");
        assert!(
            s.recent.read().events.is_empty(),
            "nothing kept before a reader"
        );
        assert!(s.page(0, 1, 1, |_| true).expect("events").events.len() == 1);
        let same = |s: &EventStore, what: &str| {
            let last = s.marks().expect("events").last;
            let mut served = 0;
            for after in 0..=last + 1 {
                for (limit, scan) in [(1, 10_000), (3, 10_000), (1_000, 5), (1_000, 10_000)] {
                    for odd in [false, true] {
                        let keep = |e: &Stored| !odd || e.seq % 2 == 1;
                        let mem = s.recent.read().page(after, limit, scan, keep);
                        let Some(mem) = mem else { continue };
                        served += 1;
                        let stored = s.page_stored(after, limit, scan, keep).expect("events");
                        let ids = |p: &Page| -> Vec<(u64, Stored)> {
                            p.events
                                .iter()
                                .map(|(n, e)| (*n, e.stored.clone()))
                                .collect()
                        };
                        assert_eq!(
                            (ids(&mem), mem.through, mem.gone),
                            (ids(&stored), stored.through, stored.gone),
                            "{what}: after {after}, limit {limit}, scan {scan}, odd {odd}"
                        );
                        for (n, e) in &mem.events {
                            assert_eq!(e.json(), e.stored.to_json(*n));
                        }
                    }
                }
            }
            served
        };
        let batch = |from: u64, n: u64| -> Vec<Stored> {
            (from..from + n).map(|i| ev(i, 10 * i as i64)).collect()
        };
        s.write(5, 2, &batch(2, 4)).expect("events");
        s.write(300, 6, &batch(6, 300)).expect("events");
        assert!(same(&s, "writes") > 0, "memory answered");
        // A gap: memory starts again after it; before it, the blocks.
        s.write(310, 310, &batch(310, 5)).expect("events");
        assert_eq!(s.recent.read().first, 310);
        assert!(same(&s, "a gap") > 0);
        s.write(700, 315, &batch(315, 3 * EVENTS_BLOCK as u64))
            .expect("events");
        // Pruned: memory forgets what the store no longer has.
        assert!(s.prune(0, 300, usize::MAX).expect("events") > 0);
        let oldest = s.oldest().expect("events");
        assert!(s.recent.read().first >= oldest);
        assert!(same(&s, "a prune") > 0);
        assert_eq!(
            s.page(oldest - 2, 1, 1, |_| true).expect("events").gone,
            Some(oldest),
            "what is gone is said gone"
        );
        // Cut back: memory forgets, the blocks answer, then memory again.
        s.cut_after(1000).expect("events");
        assert!(
            s.marks().expect("events").last > oldest,
            "the cut kept some"
        );
        assert_eq!(same(&s, "a cut"), 0);
        let last = s.marks().expect("events").last;
        s.write(1001, last + 1, &batch(1001, 1)).expect("events");
        assert!(same(&s, "after a cut") > 0);
    }

    /// Memory holds the newest `EVENTS_RECENT` at most, numbered without
    /// a gap, however they were written.
    #[test]
    fn memory_keeps_the_newest_events_only() {
        let mut r = Recent {
            read: true,
            ..Recent::default()
        };
        let many = |n: u64| -> Vec<Stored> { (0..n).map(|i| ev(i, 0)).collect() };
        let cap = EVENTS_RECENT as u64;
        r.append(1, &many(cap + 10));
        assert_eq!(
            (r.first, r.next()),
            (11, cap + 11),
            "one write past the bound"
        );
        r.append(cap + 11, &many(5));
        assert_eq!((r.first, r.next()), (16, cap + 16), "the oldest go first");
        assert_eq!(r.events[0].id, 16);
        assert_eq!(r.events[r.events.len() - 1].id, cap + 15);
        let all = |_: &Stored| true;
        assert!(r.page(14, 10, 10, all).is_none(), "before it: the store's");
        assert_eq!(r.page(15, 3, 10, all).map(|p| p.events.len()), Some(3));
        assert_eq!(
            r.page(cap + 15, 3, 10, all).map(|p| p.events.len()),
            Some(0),
            "nothing new"
        );
        assert!(
            r.page(cap + 16, 3, 10, all).is_none(),
            "past the newest: the store's"
        );
        r.forget_before(cap);
        assert_eq!((r.first, r.next()), (cap, cap + 16));
        // A gap starts again.
        r.append(cap + 20, &many(2));
        assert_eq!((r.first, r.next()), (cap + 20, cap + 22));
        // Nothing kept before a reader came.
        let mut quiet = Recent::default();
        quiet.append(1, &many(3));
        assert!(quiet.events.is_empty());
    }

    #[test]
    fn a_damaged_file_is_set_aside() {
        let dir = tempfile::tempdir().expect("events");
        let path = dir.path().join("events.redb");
        std::fs::write(&path, b"not a database at all, not even close").expect("events");
        let s = EventStore::open(&path).expect("events");
        assert_eq!(s.marks().expect("events"), Marks::default());
        assert!(dir.path().join("events.redb.damaged-0").exists());
    }
}
