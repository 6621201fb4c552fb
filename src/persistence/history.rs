//! The movement history's store (api.md, Movement history): each stock
//! record's movements, kept in `snapshots/history.redb` beside the
//! snapshots and outside the journal (which is trimmed behind them), for
//! `[history] retention_days` and at most `[history] movements_max`
//! movements in all.
//!
//! A log in a B-tree: movements are kept in blocks of up to
//! `HISTORY_BLOCK_MOVES`, keyed by the place of their first (journal
//! sequence, index), so every write appends blocks at the tree's right
//! edge and every prune cuts whole blocks at its left edge; each movement
//! names the place of its record's movement before it, and `heads` the
//! newest of each record: a page follows that chain back, a block at a
//! time. (Keyed by record instead, each movement was an insert at a
//! random leaf, a page read from disk past the cache: the checkout
//! benchmark's CPU per request doubled; one key per movement still cost
//! ~5 µs each. sled, first tried, grew in memory with every write.)
//!
//! Each write is one durable transaction with its mark (redb's quick
//! repair: a restart after a crash does not scan the file), so a crash
//! leaves the history complete through a mark, and the writer (the
//! snapshotter's copy, which applies the journal) writes what comes
//! after it again.

use std::path::Path;
use std::sync::Arc;

use ahash::AHashMap;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::domain::history::Movement;
use crate::domain::ids::{LocationId, SkuId};
use crate::domain::TimeMs;
use crate::limits::{HISTORY_BLOCK_MOVES, HISTORY_CACHE_BYTES};

use super::journal::JournalError;

/// The place of a block's first movement (12 bytes) -> the block (rmp
/// `Vec<(Place, Stored)>`, in place order).
const MOVES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("moves");
/// Record key (`location 0 sku`) -> the place of its newest movement.
const HEADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("heads");
/// `through` (the journal sequence the history is complete through) and
/// `count` (movements held).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError::Io(format!("history: {e}"))
}

/// A movement's place: the journal record that made it and its index
/// among that record's movements. Newest first is highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Place {
    pub seq: u64,
    pub idx: u32,
}

impl Place {
    fn bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..].copy_from_slice(&self.idx.to_be_bytes());
        b
    }

    fn of(b: &[u8]) -> Option<Place> {
        Some(Place {
            seq: u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
            idx: u32::from_be_bytes(b.get(8..12)?.try_into().ok()?),
        })
    }

    /// As a page's cursor (`seq.idx`).
    pub fn cursor(self) -> String {
        format!("{}.{}", self.seq, self.idx)
    }

    pub fn parse_cursor(s: &str) -> Option<Place> {
        let (seq, idx) = s.split_once('.')?;
        Some(Place {
            seq: seq.parse().ok()?,
            idx: idx.parse().ok()?,
        })
    }
}

fn record_key(location: &str, sku: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(location.len() + sku.len() + 1);
    k.extend_from_slice(location.as_bytes());
    k.push(0);
    k.extend_from_slice(sku.as_bytes());
    k
}

/// A movement as stored: its record, and the place of the record's
/// movement before it.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    record: Vec<u8>,
    prev: Option<Place>,
    movement: Movement,
}

type Block = Vec<(Place, Stored)>;

fn decode(v: &[u8]) -> Result<Block, JournalError> {
    rmp_serde::from_slice(v).map_err(|x| JournalError::Corrupt(format!("history: {x}")))
}

fn encode(b: &Block) -> Result<Vec<u8>, JournalError> {
    rmp_serde::to_vec(b).map_err(|x| JournalError::Encode(x.to_string()))
}

/// The block holding `p`, if any: the last one starting at or before it.
fn block_of(
    moves: &impl ReadableTable<&'static [u8], &'static [u8]>,
    p: Place,
) -> Result<Option<Block>, JournalError> {
    let mut r = moves.range(..=p.bytes().as_slice()).map_err(err)?;
    match r.next_back() {
        Some(kv) => decode(kv.map_err(err)?.1.value()).map(Some),
        None => Ok(None),
    }
}

/// One movement to write: its record, place and body.
pub struct Entry {
    pub location: LocationId,
    pub sku: SkuId,
    pub place: Place,
    pub movement: Movement,
}

/// A page of a record's movements, newest first, and where the next
/// (older) page starts if there is one.
#[derive(Debug, Default)]
pub struct Page {
    pub movements: Vec<Movement>,
    pub next: Option<Place>,
}

#[derive(Clone)]
pub struct History {
    db: Arc<redb::Database>,
}

impl History {
    /// Opens the history at `path`, made if there is none. A file that
    /// cannot be read as one (a damaged disk, a torn copy) is set aside
    /// as `history.redb.damaged-N` and a new history begins: the history
    /// is derived from the journal, and a node that would not start for
    /// it would sell nothing. What the journal still holds is written
    /// again; what went before is in the file set aside.
    pub fn open(path: &Path) -> Result<History, JournalError> {
        let db = open_derived(path, HISTORY_CACHE_BYTES, "movement history", |db| {
            History { db: db.clone() }.change(|_| Ok(()))
        })?;
        Ok(History { db })
    }

    /// Runs `f` on the tables in one durable transaction.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Tables<'_>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_quick_repair(true);
        let out = {
            let mut t = Tables {
                moves: tx.open_table(MOVES).map_err(err)?,
                heads: tx.open_table(HEADS).map_err(err)?,
                meta: tx.open_table(META).map_err(err)?,
            };
            f(&mut t)?
        };
        tx.commit().map_err(err)?;
        Ok(out)
    }

    fn meta(&self, key: &str) -> Result<u64, JournalError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(META).map_err(err)?;
        Ok(t.get(key).map_err(err)?.map_or(0, |v| v.value()))
    }

    /// The journal sequence the history is complete through.
    pub fn through(&self) -> Result<u64, JournalError> {
        self.meta("through")
    }

    /// How many movements it holds.
    pub fn len(&self) -> Result<u64, JournalError> {
        self.meta("count")
    }

    pub fn is_empty(&self) -> Result<bool, JournalError> {
        Ok(self.len()? == 0)
    }

    /// Writes `entries` (in place order) and the new mark `through` in
    /// one transaction.
    pub fn write(&self, through: u64, entries: &[Entry]) -> Result<(), JournalError> {
        self.change(|t| {
            // The newest place of each record this write names, so far.
            let mut newest: AHashMap<Vec<u8>, Place> = AHashMap::new();
            for chunk in entries.chunks(HISTORY_BLOCK_MOVES) {
                let mut block: Block = Vec::with_capacity(chunk.len());
                for e in chunk {
                    let record = record_key(e.location.as_str(), e.sku.as_str());
                    let prev = match newest.get(&record) {
                        Some(p) => Some(*p),
                        None => t.head(&record)?,
                    };
                    newest.insert(record.clone(), e.place);
                    let movement = e.movement.clone();
                    block.push((
                        e.place,
                        Stored {
                            record,
                            prev,
                            movement,
                        },
                    ));
                }
                if let Some((first, _)) = block.first() {
                    t.moves
                        .insert(first.bytes().as_slice(), encode(&block)?.as_slice())
                        .map_err(err)?;
                }
            }
            for (record, place) in &newest {
                t.heads
                    .insert(record.as_slice(), place.bytes().as_slice())
                    .map_err(err)?;
            }
            t.add_count(entries.len() as i64)?;
            t.meta.insert("through", through).map_err(err)?;
            Ok(())
        })
    }

    /// Up to `limit` of a record's movements before `before` (from its
    /// newest if none), newest first, none older than `since`.
    pub fn page(
        &self,
        location: &str,
        sku: &str,
        since: Option<TimeMs>,
        before: Option<Place>,
        limit: usize,
    ) -> Result<Page, JournalError> {
        let record = record_key(location, sku);
        let tx = self.db.begin_read().map_err(err)?;
        let moves = tx.open_table(MOVES).map_err(err)?;
        // The block last read: a chain mostly steps within one.
        let mut block: Block = Vec::new();
        let mut get = |p: Place| -> Result<Option<Stored>, JournalError> {
            let within =
                block.first().is_some_and(|f| f.0 <= p) && block.last().is_some_and(|l| p <= l.0);
            if !within {
                block = block_of(&moves, p)?.unwrap_or_default();
            }
            Ok(block
                .binary_search_by_key(&p, |e| e.0)
                .ok()
                .map(|i| block[i].1.clone()))
        };
        let mut at = match before {
            // A cursor names the last movement of the page before.
            Some(p) => get(p)?.filter(|s| s.record == record).and_then(|s| s.prev),
            None => {
                let heads = tx.open_table(HEADS).map_err(err)?;
                let head = heads.get(record.as_slice()).map_err(err)?;
                head.and_then(|v| Place::of(v.value()))
            }
        };
        let mut page = Page::default();
        let mut last = None;
        while let Some(place) = at {
            // Pruned past here: the chain ends.
            let Some(s) = get(place)? else { break };
            if since.is_some_and(|t| s.movement.at_ms < t) {
                break;
            }
            if page.movements.len() == limit {
                // There is more: the next page starts before the last one here.
                page.next = last;
                break;
            }
            page.movements.push(s.movement);
            last = Some(place);
            at = s.prev;
        }
        Ok(page)
    }

    /// Forgets the movements of journal records after `seq`, and the mark
    /// past it: a journal cut back (a cluster leader giving up the lead
    /// with records the stream never took) loses those records, and the
    /// records written later under their numbers are other ones.
    pub fn cut_after(&self, seq: u64) -> Result<usize, JournalError> {
        let from = Place {
            seq: seq + 1,
            idx: 0,
        };
        self.change(|t| {
            // The block holding `from`, and every one after it.
            let first = block_of(&t.moves, from)?
                .and_then(|b| b.first().map(|e| e.0))
                .unwrap_or(from);
            let mut blocks = Vec::new();
            for kv in t.moves.range(first.bytes().as_slice()..).map_err(err)? {
                let (k, v) = kv.map_err(err)?;
                blocks.push((k.value().to_vec(), decode(v.value())?));
            }
            let mut doomed = Vec::new();
            for (key, mut block) in blocks {
                let kept = block.partition_point(|e| e.0 < from);
                doomed.extend(block.drain(kept..));
                if block.is_empty() {
                    t.moves.remove(key.as_slice()).map_err(err)?;
                } else {
                    t.moves
                        .insert(key.as_slice(), encode(&block)?.as_slice())
                        .map_err(err)?;
                }
            }
            // Newest first: each record's head steps back along its chain.
            for (place, s) in doomed.iter().rev() {
                if t.head(&s.record)? == Some(*place) {
                    t.set_head(&s.record, s.prev)?;
                }
            }
            t.add_count(-(doomed.len() as i64))?;
            let through = t.meta.get("through").map_err(err)?.map_or(0, |v| v.value());
            t.meta.insert("through", through.min(seq)).map_err(err)?;
            Ok(doomed.len())
        })
    }

    /// Forgets the oldest blocks of movements, `batch` movements at most:
    /// those wholly before `older_than`, and any beyond `keep_at_most` in
    /// all. Answers how many movements went.
    pub fn prune(
        &self,
        older_than: TimeMs,
        keep_at_most: u64,
        batch: usize,
    ) -> Result<usize, JournalError> {
        let mut count = self.len()?;
        self.change(|t| {
            let mut doomed = Vec::new();
            let mut gone = 0;
            for kv in t.moves.iter().map_err(err)? {
                let (k, v) = kv.map_err(err)?;
                let block = decode(v.value())?;
                let newest = block.iter().map(|e| e.1.movement.at_ms).max();
                let old = newest.is_some_and(|at| at < older_than);
                if gone + block.len() > batch.max(1) || !(old || count > keep_at_most) {
                    break;
                }
                count = count.saturating_sub(block.len() as u64);
                gone += block.len();
                doomed.push((k.value().to_vec(), block));
            }
            for (k, block) in &doomed {
                t.moves.remove(k.as_slice()).map_err(err)?;
                // A record whose newest movement goes has none left.
                for (place, s) in block {
                    if t.head(&s.record)? == Some(*place) {
                        t.set_head(&s.record, None)?;
                    }
                }
            }
            t.add_count(-(gone as i64))?;
            Ok(gone)
        })
    }
}

/// `days` in milliseconds (a retention), saturating.
pub(super) fn days_ms(days: u64) -> TimeMs {
    TimeMs::try_from(days)
        .unwrap_or(TimeMs::MAX)
        .saturating_mul(86_400_000)
}

/// Why a derived store's file did not open: `Damaged` (it is not one,
/// or not whole) or `Failed` (it could not be read: locked, a disk error).
enum Opened {
    Damaged(String),
    Failed(String),
}

/// Opens a store derived from the journal (the movement history, the
/// published events) at `path`, made if there is none, `init` making its
/// tables. A file that cannot be read as one is set aside as
/// `NAME.redb.damaged-N` (logged at error) and a new one begins: the
/// journal still holds what it can be derived from again, and a node that
/// would not start for it would sell nothing. A file held by another
/// opener, or a disk error, is refused.
pub(super) fn open_derived(
    path: &Path,
    cache_bytes: usize,
    what: &str,
    init: impl Fn(&Arc<redb::Database>) -> Result<(), JournalError>,
) -> Result<Arc<redb::Database>, JournalError> {
    let open = || -> Result<Arc<redb::Database>, Opened> {
        use redb::{DatabaseError as D, StorageError as S};
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                D::Storage(S::Corrupted(_)) | D::UpgradeRequired(_) | D::RepairAborted => {
                    Opened::Damaged(e.to_string())
                }
                D::Storage(S::Io(ref io))
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                    ) =>
                {
                    Opened::Damaged(e.to_string())
                }
                e => Opened::Failed(e.to_string()),
            })?;
        let db = Arc::new(db);
        // The tables exist from the start: a read never finds one missing.
        // A file that opens but whose tables cannot be made is damaged.
        init(&db).map_err(|e| Opened::Damaged(e.to_string()))?;
        Ok(db)
    };
    match open() {
        Ok(db) => Ok(db),
        Err(Opened::Damaged(why)) => {
            let aside = (0u32..)
                .map(|n| path.with_extension(format!("redb.damaged-{n}")))
                .find(|p| !p.exists())
                .unwrap_or_else(|| path.with_extension("redb.damaged"));
            tracing::error!(
                path = %path.display(),
                aside = %aside.display(),
                why = %why,
                "{what} unreadable: set aside, a new one begins"
            );
            std::fs::rename(path, &aside).map_err(err)?;
            open().map_err(|e| match e {
                Opened::Damaged(why) | Opened::Failed(why) => err(why),
            })
        }
        Err(Opened::Failed(why)) => Err(err(why)),
    }
}

/// The tables of one write transaction.
struct Tables<'t> {
    moves: redb::Table<'t, &'static [u8], &'static [u8]>,
    heads: redb::Table<'t, &'static [u8], &'static [u8]>,
    meta: redb::Table<'t, &'static str, u64>,
}

impl Tables<'_> {
    fn head(&self, record: &[u8]) -> Result<Option<Place>, JournalError> {
        Ok(self
            .heads
            .get(record)
            .map_err(err)?
            .and_then(|v| Place::of(v.value())))
    }

    fn set_head(&mut self, record: &[u8], place: Option<Place>) -> Result<(), JournalError> {
        match place {
            Some(p) => self.heads.insert(record, p.bytes().as_slice()).map(|_| ()),
            None => self.heads.remove(record).map(|_| ()),
        }
        .map_err(err)
    }

    fn add_count(&mut self, by: i64) -> Result<(), JournalError> {
        let n = self
            .meta
            .get("count")
            .map_err(err)?
            .map_or(0, |v| v.value());
        let n = n.saturating_add_signed(by);
        self.meta.insert("count", n).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::history::MoveKind;

    fn store() -> (tempfile::TempDir, History) {
        let dir = tempfile::tempdir().expect("tmp");
        let h = History::open(&dir.path().join("history.redb")).expect("history");
        (dir, h)
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_a_locked_one_is_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("history.redb");
        for (n, junk) in [vec![0u8; 3], vec![0x5a; 4096], b"not a history".repeat(900)]
            .into_iter()
            .enumerate()
        {
            std::fs::write(&path, &junk).expect("junk");
            let h = History::open(&path).expect("opens all the same");
            assert_eq!(h.through().expect("through"), 0, "a new one");
            let aside = dir.path().join(format!("history.redb.damaged-{n}"));
            assert_eq!(std::fs::read(&aside).expect("set aside"), junk);
        }
        // Another holder of the file is not damage: refused, kept.
        let held = History::open(&path).expect("whole");
        assert!(History::open(&path).is_err());
        assert!(!dir.path().join("history.redb.damaged-3").exists());
        drop(held);
    }

    fn entry(location: &str, sku: &str, seq: u64, idx: u32, at_ms: TimeMs) -> Entry {
        Entry {
            location: LocationId::parse(location).expect("id"),
            sku: SkuId::parse(sku).expect("id"),
            place: Place { seq, idx },
            movement: Movement {
                at_ms,
                kind: MoveKind::Adjustment,
                on_hand: seq as i64,
                reserved: 0,
                delta_on_hand: 1,
                delta_reserved: 0,
                reason: None,
                reference: None,
                by: None,
                note: None,
                unsellable: None,
                delta_unsellable: None,
                in_transit: 0,
                delta_in_transit: 0,
            },
        }
    }

    fn seqs(p: &Page) -> Vec<i64> {
        p.movements.iter().map(|m| m.on_hand).collect()
    }

    #[test]
    fn pages_run_newest_first_per_record_and_cursors_chain() {
        let (_dir, h) = store();
        // Records whose keys share a prefix ("S1"/"A" and "S1"/"AB", "S12"/"A")
        // stay apart.
        let mut batch = Vec::new();
        for seq in 1..=7 {
            batch.push(entry("S1", "A", seq, 0, seq as i64 * 10));
            batch.push(entry("S1", "AB", seq, 1, seq as i64 * 10));
            batch.push(entry("S12", "A", seq, 2, seq as i64 * 10));
        }
        h.write(7, &batch).expect("write");
        assert_eq!(
            (h.through().expect("through"), h.len().expect("len")),
            (7, 21)
        );
        let p = h.page("S1", "A", None, None, 3).expect("page");
        assert_eq!(seqs(&p), [7, 6, 5]);
        let p = h.page("S1", "A", None, p.next, 3).expect("page");
        assert_eq!(seqs(&p), [4, 3, 2]);
        let p = h.page("S1", "A", None, p.next, 3).expect("page");
        assert_eq!((seqs(&p), p.next), (vec![1], None));
        // Exactly a page left: no next page.
        let p = h
            .page("S1", "AB", None, Some(Place { seq: 4, idx: 1 }), 3)
            .expect("page");
        assert_eq!((seqs(&p), p.next), (vec![3, 2, 1], None));
        // `since`: none older.
        let p = h.page("S12", "A", Some(50), None, 100).expect("page");
        assert_eq!(seqs(&p), [7, 6, 5]);
        assert!(h
            .page("S2", "A", None, None, 10)
            .expect("page")
            .movements
            .is_empty());
        let cur = Place {
            seq: 18_446_744_073_709_551_615,
            idx: 7,
        }
        .cursor();
        assert_eq!(
            Place::parse_cursor(&cur),
            Some(Place {
                seq: u64::MAX,
                idx: 7
            })
        );
        for bad in ["", "1", "1.", ".1", "x.1", "1.x", "1.99999999999"] {
            assert_eq!(Place::parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn pruning_forgets_the_oldest_past_retention_or_the_bound() {
        let (_dir, h) = store();
        // One block per write: whole blocks go.
        for s in 1..=10 {
            h.write(s, &[entry("S1", "A", s, 0, s as i64 * 10)])
                .expect("write");
        }
        // Older than 35: three go, a batch of two at a time.
        assert_eq!(h.prune(35, u64::MAX, 2).expect("prune"), 2);
        assert_eq!(h.prune(35, u64::MAX, 2).expect("prune"), 1);
        assert_eq!(h.prune(35, u64::MAX, 2).expect("prune"), 0);
        assert_eq!(h.len().expect("len"), 7);
        // Beyond 5 in all: the two oldest go.
        assert_eq!(h.prune(0, 5, 100).expect("prune"), 2);
        let p = h.page("S1", "A", None, None, 100).expect("page");
        assert_eq!(seqs(&p), [10, 9, 8, 7, 6]);
        assert_eq!(
            (h.len().expect("len"), h.through().expect("through")),
            (5, 10)
        );
        // A block goes whole or not at all; the last movement of a record
        // gone, its record has none.
        h.write(
            11,
            &(11..=13)
                .map(|s| entry("S2", "A", s, 0, 500))
                .collect::<Vec<_>>(),
        )
        .expect("write");
        assert_eq!(h.prune(1_000, u64::MAX, 4).expect("prune"), 4);
        // 1 and then a block of 3 would be 4, past a batch of 3.
        assert_eq!(h.prune(1_000, u64::MAX, 3).expect("prune"), 1);
        assert_eq!(h.len().expect("len"), 3);
        assert_eq!(h.prune(1_000, u64::MAX, 3).expect("prune"), 3);
        assert_eq!(h.prune(1_000, u64::MAX, 3).expect("prune"), 0);
        assert!(h
            .page("S2", "A", None, None, 10)
            .expect("page")
            .movements
            .is_empty());
        assert_eq!(h.len().expect("len"), 0);
    }

    #[test]
    fn chains_cross_blocks_and_a_cut_splits_one() {
        let (_dir, h) = store();
        // 600 movements of two records, interleaved: three blocks.
        let batch: Vec<Entry> = (1..=300)
            .flat_map(|s| [entry("S1", "A", s, 0, 0), entry("S2", "A", s, 1, 0)])
            .collect();
        h.write(300, &batch).expect("write");
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let p = h.page("S1", "A", None, next, 64).expect("page");
            all.extend(seqs(&p));
            next = p.next;
            if next.is_none() {
                break;
            }
        }
        assert_eq!(all, (1..=300).rev().map(|s| s as i64).collect::<Vec<_>>());
        // Cut inside the second block: what is left of it stays.
        assert_eq!(h.cut_after(200).expect("cut"), 200);
        let p = h.page("S2", "A", None, None, 3).expect("page");
        assert_eq!(seqs(&p), [200, 199, 198]);
        assert_eq!(h.len().expect("len"), 400);
        // Writes after the cut chain onto what is left.
        h.write(201, &[entry("S1", "A", 201, 0, 0)]).expect("write");
        let p = h.page("S1", "A", None, None, 2).expect("page");
        assert_eq!(seqs(&p), [201, 200]);
    }

    #[test]
    fn a_journal_cut_back_cuts_its_movements_back() {
        let (_dir, h) = store();
        let batch: Vec<Entry> = (1..=6)
            .flat_map(|s| [entry("S1", "A", s, 0, 0), entry("S2", "A", s, 1, 0)])
            .collect();
        h.write(6, &batch).expect("write");
        assert_eq!(h.cut_after(4).expect("cut"), 4);
        assert_eq!(
            (h.len().expect("len"), h.through().expect("through")),
            (8, 4)
        );
        for loc in ["S1", "S2"] {
            let p = h.page(loc, "A", None, None, 100).expect("page");
            assert_eq!(seqs(&p), [4, 3, 2, 1], "{loc}");
        }
        // Nothing past it: only the mark, never forward.
        assert_eq!(h.cut_after(9).expect("cut"), 0);
        assert_eq!(h.through().expect("through"), 4);
    }
}
