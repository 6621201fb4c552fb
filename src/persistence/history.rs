//! The movement history's store (api.md, Movement history): each stock
//! record's movements, kept in `snapshots/history.redb` beside the
//! snapshots and outside the journal (which is trimmed behind them), for
//! `[history] retention_days` and at most `[history] movements_max`
//! movements in all.
//!
//! Why redb and not the snapshots' sled: sled's memory grew by ~3 KB per
//! movement written until its default 1 GiB cache filled, whatever its
//! `cache_capacity` (tests/feed_ws.rs's slow reader saw the server grow
//! by 100 MB under 50,000 counts); redb keeps to its cache
//! (`HISTORY_CACHE_BYTES`).
//!
//! One table, three kinds of key (ids never hold a 0 byte, ids.rs):
//! - `r location 0 sku 0 seq idx`: a record's movement (rmp `Movement`),
//!   in journal order: a page is a range read backwards;
//! - `t seq idx`: the same movement's place in time, valued its time and
//!   record key: the oldest go first when pruned;
//! - `m.through`, `m.count`: the journal sequence the history is complete
//!   through, and how many movements it holds.
//!
//! Each write is one transaction with its new mark (committed durably,
//! with redb's quick repair: a restart after a crash does not scan the
//! file), so a crash leaves the history complete through a mark, and the
//! writer (the snapshotter's copy, which applies the journal) writes what
//! comes after it again.

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};

use crate::domain::history::Movement;
use crate::domain::ids::{LocationId, SkuId};
use crate::domain::TimeMs;

use super::journal::JournalError;
use crate::limits::HISTORY_CACHE_BYTES;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");

const THROUGH: &[u8] = b"m.through";
const COUNT: &[u8] = b"m.count";

fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError::Io(format!("history: {e}"))
}

/// A movement's place: the journal record that made it and its index
/// among that record's movements. Newest first is highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

fn record_prefix(location: &str, sku: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(location.len() + sku.len() + 15);
    record_prefix_into(&mut k, location, sku);
    k
}

fn record_prefix_into(k: &mut Vec<u8>, location: &str, sku: &str) {
    k.push(b'r');
    k.extend_from_slice(location.as_bytes());
    k.push(0);
    k.extend_from_slice(sku.as_bytes());
    k.push(0);
}

fn time_key(p: Place) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(b't');
    k.extend_from_slice(&p.bytes());
    k
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
    /// Opens (or creates) the history at `path`.
    pub fn open(path: &Path) -> Result<History, JournalError> {
        let db = redb::Builder::new()
            .set_cache_size(HISTORY_CACHE_BYTES)
            .create(path)
            .map_err(err)?;
        let h = History { db: Arc::new(db) };
        // The table exists from the start: a read never finds it missing.
        h.change(|_| Ok(()))?;
        Ok(h)
    }

    /// Runs `f` on the table in one durable transaction.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_quick_repair(true);
        let out = {
            let mut t = tx.open_table(TABLE).map_err(err)?;
            f(&mut t)?
        };
        tx.commit().map_err(err)?;
        Ok(out)
    }

    fn read(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, JournalError> {
        self.db
            .begin_read()
            .map_err(err)?
            .open_table(TABLE)
            .map_err(err)
    }

    fn number(&self, key: &[u8]) -> Result<u64, JournalError> {
        Ok(number_in(&self.read()?, key))
    }

    /// The journal sequence the history is complete through.
    pub fn through(&self) -> Result<u64, JournalError> {
        self.number(THROUGH)
    }

    /// How many movements it holds.
    pub fn len(&self) -> Result<u64, JournalError> {
        self.number(COUNT)
    }

    pub fn is_empty(&self) -> Result<bool, JournalError> {
        Ok(self.len()? == 0)
    }

    /// Writes `entries` and the new mark `through` in one transaction.
    pub fn write(&self, through: u64, entries: &[Entry]) -> Result<(), JournalError> {
        self.change(|t| {
            let mut key = Vec::new();
            let mut when = Vec::new();
            for e in entries {
                let body = rmp_serde::to_vec(&e.movement)
                    .map_err(|x| JournalError::Encode(x.to_string()))?;
                key.clear();
                record_prefix_into(&mut key, e.location.as_str(), e.sku.as_str());
                let record_len = key.len();
                key.extend_from_slice(&e.place.bytes());
                when.clear();
                when.extend_from_slice(&e.movement.at_ms.to_be_bytes());
                when.extend_from_slice(&key[..record_len]);
                t.insert(key.as_slice(), body.as_slice()).map_err(err)?;
                t.insert(time_key(e.place).as_slice(), when.as_slice())
                    .map_err(err)?;
            }
            let count = number_in(t, COUNT) + entries.len() as u64;
            t.insert(THROUGH, through.to_le_bytes().as_slice())
                .map_err(err)?;
            t.insert(COUNT, count.to_le_bytes().as_slice())
                .map_err(err)?;
            Ok(())
        })
    }

    /// Up to `limit` of a record's movements before `before` (all if
    /// none), newest first, none older than `since`.
    pub fn page(
        &self,
        location: &str,
        sku: &str,
        since: Option<TimeMs>,
        before: Option<Place>,
        limit: usize,
    ) -> Result<Page, JournalError> {
        let start = record_prefix(location, sku);
        let mut end = start.clone();
        match before {
            Some(p) => end.extend_from_slice(&p.bytes()),
            None => end.extend_from_slice(&[0xff; 12]),
        }
        let t = self.read()?;
        let mut page = Page::default();
        let mut last = None;
        for kv in t
            .range(start.as_slice()..end.as_slice())
            .map_err(err)?
            .rev()
        {
            let (k, v) = kv.map_err(err)?;
            let place = Place::of(&k.value()[start.len()..])
                .ok_or_else(|| JournalError::Corrupt("history: a key without a place".into()))?;
            let m: Movement = rmp_serde::from_slice(v.value())
                .map_err(|x| JournalError::Corrupt(format!("history: {x}")))?;
            if since.is_some_and(|s| m.at_ms < s) {
                break;
            }
            if page.movements.len() == limit {
                // There is more: the next page starts before the last one here.
                page.next = last;
                break;
            }
            page.movements.push(m);
            last = Some(place);
        }
        Ok(page)
    }

    /// Forgets the movements of journal records after `seq`, and the mark
    /// past it: a journal cut back (a cluster leader giving up the lead
    /// with records the stream never took) loses those records, and the
    /// records written later under their numbers are other ones.
    pub fn cut_after(&self, seq: u64) -> Result<usize, JournalError> {
        let from = time_key(Place {
            seq: seq + 1,
            idx: 0,
        });
        self.change(|t| {
            let gone = forget_while(t, &from, |_| true, usize::MAX)?;
            let through = number_in(t, THROUGH).min(seq);
            t.insert(THROUGH, through.to_le_bytes().as_slice())
                .map_err(err)?;
            Ok(gone)
        })
    }

    /// Forgets up to `batch` of the oldest movements: those before
    /// `older_than`, and any beyond `keep_at_most` in all. Answers how
    /// many went.
    pub fn prune(
        &self,
        older_than: TimeMs,
        keep_at_most: u64,
        batch: usize,
    ) -> Result<usize, JournalError> {
        let mut count = self.len()?;
        self.change(|t| {
            forget_while(
                t,
                b"t",
                |at| {
                    let go = at < older_than || count > keep_at_most;
                    count = count.saturating_sub(u64::from(go));
                    go
                },
                batch,
            )
        })
    }
}

/// A number kept under `key` (0 if none).
fn number_in(t: &impl ReadableTable<&'static [u8], &'static [u8]>, key: &[u8]) -> u64 {
    t.get(key)
        .ok()
        .flatten()
        .and_then(|v| Some(u64::from_le_bytes(v.value().try_into().ok()?)))
        .unwrap_or(0)
}

/// Forgets movements in time order from the time key `from`, while `go`
/// says so of each one's time, `batch` at most, and counts them off.
fn forget_while(
    t: &mut redb::Table<&[u8], &[u8]>,
    from: &[u8],
    mut go: impl FnMut(TimeMs) -> bool,
    batch: usize,
) -> Result<usize, JournalError> {
    let mut doomed: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for kv in t.range(from..&b"u"[..]).map_err(err)?.take(batch) {
        let (k, v) = kv.map_err(err)?;
        let (k, v) = (k.value(), v.value());
        let at = v
            .get(..8)
            .and_then(|x| Some(i64::from_be_bytes(x.try_into().ok()?)))
            .unwrap_or(TimeMs::MIN);
        if !go(at) {
            break;
        }
        let mut record = v.get(8..).unwrap_or_default().to_vec();
        record.extend_from_slice(k.get(1..).unwrap_or_default());
        doomed.push((k.to_vec(), record));
    }
    for (k, record) in &doomed {
        t.remove(k.as_slice()).map_err(err)?;
        t.remove(record.as_slice()).map_err(err)?;
    }
    let count = number_in(t, COUNT).saturating_sub(doomed.len() as u64);
    t.insert(COUNT, count.to_le_bytes().as_slice())
        .map_err(err)?;
    Ok(doomed.len())
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
        let batch: Vec<Entry> = (1..=10)
            .map(|s| entry("S1", "A", s, 0, s as i64 * 10))
            .collect();
        h.write(10, &batch).expect("write");
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
