//! The journal: append-only segment files of framed records, one writer
//! thread with group commit, and recovery.
//!
//! Segment file `NNNNNNNNNNNNNNNNNNNN.log` (the first sequence it holds):
//! header `b"HFJ1"`, format version (u32 LE), first sequence (u64 LE); then
//! records `len: u32 LE | crc32c(seq ++ body): u32 LE | seq: u64 LE | body`.
//!
//! Discipline: the writer fdatasyncs a batch before acknowledging any record
//! of it (`Durability::Fsync`), fsyncs the directory after creating a segment,
//! and on any write or sync error poisons the journal: every pending and later
//! append fails, and a sync is never retried (after a failed fdatasync the
//! kernel may have dropped the dirty pages; a retry could falsely succeed).
//!
//! Replication (a cluster shard's journal): a `Replication` hook gets every
//! committed record, in order, from a shipper thread of the journal's own,
//! which takes what queued up while it shipped in one call (pipelining: the
//! next batch's fsync overlaps the last one's shipping). With `ack_after`,
//! a record is acknowledged (and shown as durable) only once shipped;
//! without, the shipper trails the acknowledgements and, when it falls
//! behind its bounded queue, reads what it missed back from the segments.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

use super::storage::{Storage, WritableFile};
use crate::domain::event::{Event, EVENT_FORMAT_VERSION};
use crate::limits::JOURNAL_SHIP_QUEUE;
use crate::limits::{
    JOURNAL_BATCH_RECORDS_MAX, JOURNAL_QUEUE_RECORDS_MAX, JOURNAL_RECORD_BYTES_MAX,
    JOURNAL_SEGMENT_BYTES_MAX,
};

const MAGIC: &[u8; 4] = b"HFJ1";
const HEADER_LEN: usize = 16;
const FRAME_HEADER_LEN: usize = 16;

/// What an acknowledgement guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledged after fdatasync: survives a power cut.
    #[default]
    Fsync,
    /// Acknowledged after write(2): survives a crash of the process (the
    /// kernel still has the pages), not a power cut.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the journal is poisoned by an earlier I/O failure and refuses writes; restart to recover"
    )]
    Poisoned,
    #[error("the journal queue is full")]
    Full,
    #[error("the journal is closed")]
    Closed,
    #[error("journal I/O: {0}")]
    Io(String),
    /// Writing this record's batch failed part way (a failed write or
    /// fdatasync): its bytes may be on the disk all the same and be found
    /// at the next start, or not. The journal is poisoned.
    #[error("journal write failed, the record may or may not be on disk: {0}")]
    WriteUnknown(String),
    #[error("journal corrupt: {0}")]
    Corrupt(String),
    #[error("journal record encoding: {0}")]
    Encode(String),
    /// The replicas refused or could not be reached in time: the journal
    /// is poisoned (what it holds beyond them is not the cluster's).
    #[error("replication: {0}")]
    Replication(String),
    /// The shipment of this record may have reached the replicas (its
    /// answer was lost): it may be the cluster's, or not. The journal is
    /// poisoned as with `Replication`.
    #[error("replication outcome unknown: {0}")]
    ReplicationUnknown(String),
}

/// Where committed records go beyond the local disk.
pub trait Replicate: Send + 'static {
    /// Ships records `first..` (bodies as journaled, in order): `Ok` once
    /// the replicas hold them. An error is final: the journal is poisoned
    /// (the implementation retries what is worth retrying first).
    fn ship(&mut self, first: u64, bodies: &[&[u8]]) -> Result<(), String>;
}

/// A journal's replication: the hook and when records are acknowledged.
pub struct Replication {
    pub hook: Box<dyn Replicate>,
    /// Acknowledge a record only once shipped (cluster durability
    /// `replicated`); otherwise after the local write, shipping behind.
    pub ack_after: bool,
    /// The most records in one `ship`.
    pub batch_max: usize,
    /// The last record the replicas hold already: the shipper starts after
    /// it, reading any records of the journal beyond it back first (a new
    /// owner whose copy is ahead of a stream that lost entries).
    pub shipped: u64,
}

type Ack = oneshot::Sender<Result<u64, JournalError>>;

struct Append {
    body: Vec<u8>,
    ack: Option<Ack>,
    /// Its place in the queue (see `Journal::append_ticketed`).
    ticket: u64,
}

/// Counters the writer keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub syncs: AtomicU64,
    pub bytes: AtomicU64,
    pub last_seq: AtomicU64,
    /// Every append with a ticket up to this one is durable (per the
    /// durability mode): what a reader of committed changes waits for.
    pub durable_ticket: AtomicU64,
    /// With replication: the last record the replicas hold.
    pub shipped_seq: AtomicU64,
    /// Whether the journal is replicated (a cluster leader's): what is
    /// derived from it for readers (the published events, the movement
    /// history) waits for `shipped_seq`, as a write's answer does, so
    /// nothing is shown that a step-down would cut back.
    pub replicated: std::sync::atomic::AtomicBool,
    /// The sequence number the newest snapshot covers (its snapshotter's).
    pub snapshot_seq: AtomicU64,
    /// The sequence number the movement history is complete through (the
    /// snapshotter's copy writes it), and how many movements it holds.
    pub history_seq: AtomicU64,
    pub history_movements: AtomicU64,
    /// A history read waits: the snapshotter writes what it holds now.
    pub history_wanted: std::sync::atomic::AtomicBool,
    /// The journal record the published events are complete through, the
    /// newest event's number and how many are kept (the snapshotter's
    /// copy writes them); `events_written` wakes the readers waiting for
    /// more (Server-Sent Events) when the newest number moves.
    pub events_seq: AtomicU64,
    pub events_last: AtomicU64,
    pub events_kept: AtomicU64,
    pub events_written: tokio::sync::Notify,
}

impl JournalStats {
    /// The last record readers of what is derived from the journal may be
    /// shown: the last durable one, and on a replicated journal the last
    /// one the replicas hold.
    pub fn settled_seq(&self) -> u64 {
        let last = self.last_seq.load(Ordering::Acquire);
        if self.replicated.load(Ordering::Acquire) {
            last.min(self.shipped_seq.load(Ordering::Acquire))
        } else {
            last
        }
    }
}

/// Resolves when the record is durable (per the durability mode), with its
/// sequence number.
pub struct Durable(oneshot::Receiver<Result<u64, JournalError>>);

impl Future for Durable {
    type Output = Result<u64, JournalError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(JournalError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Durable {
    /// What a write journaled before answers when it is asked again (a
    /// keyed adjustment repeated): nothing more to wait for here.
    pub fn journaled_before() -> Durable {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Ok(0));
        Durable(rx)
    }

    /// Blocks the current thread (not for async contexts).
    pub fn wait(self) -> Result<u64, JournalError> {
        self.0.blocking_recv().unwrap_or(Err(JournalError::Closed))
    }
}

/// The handle to the journal: cheap to clone, shared by every writer actor.
#[derive(Clone)]
pub struct Journal {
    tx: Sender<Append>,
    poisoned: Arc<AtomicBool>,
    pub stats: Arc<JournalStats>,
    /// The last ticket given. Taken with the queue push under one lock, so
    /// tickets are in queue order: a batch's last ticket covers all before.
    tickets: Arc<parking_lot::Mutex<u64>>,
    /// Why replication poisoned the journal, if it did: what later writes
    /// are refused with.
    shipping_failed: Arc<parking_lot::Mutex<Option<String>>>,
    /// Held by the writer while it commits a batch (`halt`).
    committing: Arc<parking_lot::Mutex<()>>,
    /// Held by the shipper while it ships a chunk (`halt`).
    shipping: Arc<parking_lot::Mutex<()>>,
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub last_seq: u64,
    /// Bytes cut off a torn tail.
    pub truncated_bytes: u64,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

fn encode_frame(buf: &mut Vec<u8>, seq: u64, body: &[u8]) {
    let mut crc = crc32c::crc32c(&seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, body);
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(body);
}

/// A frame at `at` of `data`, if it is whole and its checksum holds.
fn decode_frame(data: &[u8], at: usize) -> Option<(u64, &[u8], usize)> {
    let h = data.get(at..at + FRAME_HEADER_LEN)?;
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(h[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(h[8..16].try_into().ok()?);
    if len == 0 || len > JOURNAL_RECORD_BYTES_MAX {
        return None;
    }
    let body = data.get(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len)?;
    let mut c = crc32c::crc32c(&seq.to_le_bytes());
    c = crc32c::crc32c_append(c, body);
    (c == crc).then_some((seq, body, at + FRAME_HEADER_LEN + len))
}

pub fn encode_event(e: &Event) -> Result<Vec<u8>, JournalError> {
    let body = rmp_serde::to_vec(e).map_err(|e| JournalError::Encode(e.to_string()))?;
    if body.len() > JOURNAL_RECORD_BYTES_MAX {
        return Err(JournalError::Encode(format!(
            "record of {} bytes",
            body.len()
        )));
    }
    Ok(body)
}

pub fn decode_event(body: &[u8]) -> Result<Event, JournalError> {
    rmp_serde::from_slice(body)
        .map_err(|e| JournalError::Corrupt(format!("undecodable record: {e}")))
}

/// Reads every segment in `dir` in order and calls `apply` for each record
/// after `after_seq`. A torn tail of the last segment is cut off (and synced);
/// a bad record anywhere else, or a gap in the sequence, is an error.
pub fn recover(
    storage: &dyn Storage,
    dir: &Path,
    after_seq: u64,
    apply: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<RecoveryReport, JournalError> {
    read(storage, dir, after_seq, None, apply)
}

/// Reads the records after `after_seq` up to `upto_seq` without changing
/// anything: for a reader that follows a live journal (the snapshotter), which
/// must not take the writer's unfinished tail for a torn one.
pub fn read_range(
    storage: &dyn Storage,
    dir: &Path,
    after_seq: u64,
    upto_seq: u64,
    apply: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<RecoveryReport, JournalError> {
    read(storage, dir, after_seq, Some(upto_seq), apply)
}

/// Where a reader following a live journal has got to (`read_on`).
#[derive(Debug, Clone)]
pub struct ReadCursor {
    /// The segment being read (its first sequence and file name), once found.
    segment: Option<(u64, String)>,
    /// Its byte after the last record read.
    offset: usize,
    /// The next sequence to read.
    next: u64,
}

impl ReadCursor {
    /// A cursor at the records after `after_seq`.
    pub fn after(after_seq: u64) -> ReadCursor {
        ReadCursor {
            segment: None,
            offset: 0,
            next: after_seq + 1,
        }
    }

    /// The last sequence read.
    pub fn last_seq(&self) -> u64 {
        self.next - 1
    }
}

/// Reads the records after `cursor` up to `upto_seq`, from where the cursor
/// left off: a reader following a live journal (the snapshotter's copy,
/// the movement history) reads each byte once, never the writer's
/// unfinished tail (it stops at `upto_seq`, which is durable).
pub fn read_on(
    storage: &dyn Storage,
    dir: &Path,
    cursor: &mut ReadCursor,
    upto_seq: u64,
    mut apply: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    let io = |e: std::io::Error| JournalError::Io(e.to_string());
    while cursor.next <= upto_seq {
        let (first, name) = match &cursor.segment {
            Some((first, name)) if *first <= cursor.next => (*first, name.clone()),
            _ => {
                // The segment holding `next`: the last one starting at or before it.
                let segs = segments(storage, dir)?;
                let Some((first, name)) = segs.into_iter().rev().find(|(f, _)| *f <= cursor.next)
                else {
                    return Err(JournalError::Corrupt(format!(
                        "no segment holds record {}",
                        cursor.next
                    )));
                };
                cursor.segment = Some((first, name.clone()));
                cursor.offset = HEADER_LEN;
                (first, name)
            }
        };
        let data = storage
            .read_from(&dir.join(&name), cursor.offset as u64)
            .map_err(io)?;
        let mut at = 0;
        let mut seq = if cursor.offset == HEADER_LEN {
            first
        } else {
            cursor.next
        };
        while seq <= upto_seq {
            let Some((s, body, end)) = decode_frame(&data, at) else {
                break;
            };
            if s != seq {
                return Err(JournalError::Corrupt(format!(
                    "{name} at {}: sequence {s}, expected {seq}",
                    cursor.offset + at
                )));
            }
            if s >= cursor.next {
                apply(s, body)?;
                cursor.next = s + 1;
            }
            seq += 1;
            at = end;
        }
        cursor.offset += at;
        if cursor.next <= upto_seq {
            // This segment has no more records: `next` is in the one
            // after it, if there is one yet.
            let segs = segments(storage, dir)?;
            match segs.into_iter().find(|(f, _)| *f > first) {
                Some((f, n)) if f == cursor.next => {
                    cursor.segment = Some((f, n));
                    cursor.offset = HEADER_LEN;
                }
                Some((f, n)) => {
                    return Err(JournalError::Corrupt(format!(
                        "{n} starts at {f}, but {name} ends before {}",
                        cursor.next
                    )))
                }
                None => break,
            }
        }
    }
    Ok(())
}

/// The segments in `dir`, by first sequence.
pub fn segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, String)>, JournalError> {
    let io = |e: std::io::Error| JournalError::Io(e.to_string());
    storage.create_dir_all(dir).map_err(io)?;
    let mut v: Vec<(u64, String)> = storage
        .list(dir)
        .map_err(io)?
        .into_iter()
        .filter_map(|n| Some((n.strip_suffix(".log")?.parse().ok()?, n)))
        .collect();
    v.sort();
    Ok(v)
}

/// Removes the segments whose every record is at or before `seq` (covered by
/// a snapshot), never the newest one.
pub fn remove_segments_through(
    storage: &dyn Storage,
    dir: &Path,
    seq: u64,
) -> Result<usize, JournalError> {
    let io = |e: std::io::Error| JournalError::Io(e.to_string());
    let segs = segments(storage, dir)?;
    let mut removed = 0;
    for w in segs.windows(2) {
        // Segment w[0] holds w[0].0 ..= w[1].0 - 1.
        if w[1].0 <= seq + 1 {
            storage.remove(&dir.join(&w[0].1)).map_err(io)?;
            removed += 1;
        }
    }
    if removed > 0 {
        storage.sync_dir(dir).map_err(io)?;
    }
    Ok(removed)
}

/// Makes every segment in `dir` durable (a journal written without fsync:
/// a cluster follower's copy, about to become the leader's journal).
pub fn sync_segments(storage: &dyn Storage, dir: &Path) -> Result<(), JournalError> {
    let io = |e: std::io::Error| JournalError::Io(e.to_string());
    for (_, name) in segments(storage, dir)? {
        storage.sync_file(&dir.join(name)).map_err(io)?;
    }
    storage.sync_dir(dir).map_err(io)
}

/// Cuts the journal in `dir` back to its records up to `seq`: the
/// segments that start after it go, the one holding it ends with it.
/// Answers the records cut. Only on a journal no writer writes (`halt`).
pub fn truncate_after(storage: &dyn Storage, dir: &Path, seq: u64) -> Result<u64, JournalError> {
    let io = |e: std::io::Error| JournalError::Io(e.to_string());
    let mut cut = 0;
    for (first, name) in segments(storage, dir)?.into_iter().rev() {
        let path = dir.join(&name);
        let data = storage.read(&path).map_err(io)?;
        let mut at = HEADER_LEN.min(data.len());
        let mut kept_end = at;
        let mut next = first;
        while let Some((s, _, end)) = decode_frame(&data, at) {
            if s != next {
                break;
            }
            if s <= seq {
                kept_end = end;
            } else {
                cut += 1;
            }
            next += 1;
            at = end;
        }
        if first > seq {
            storage.remove(&path).map_err(io)?;
        } else {
            if kept_end < data.len() {
                storage.truncate(&path, kept_end as u64).map_err(io)?;
            }
            break;
        }
    }
    storage.sync_dir(dir).map_err(io)?;
    Ok(cut)
}

/// Reads the records after `after_seq` (up to `upto_seq`, while the writer
/// runs; else to the end, a torn tail or header cut) into `apply`.
fn read(
    storage: &dyn Storage,
    dir: &Path,
    after_seq: u64,
    upto_seq: Option<u64>,
    mut apply: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<RecoveryReport, JournalError> {
    let io = |e: std::io::Error| JournalError::Io(e.to_string());
    let names = segments_after(storage, dir, after_seq)?;
    let mut report = RecoveryReport {
        last_seq: after_seq,
        ..RecoveryReport::default()
    };
    let mut expected: Option<u64> = None;
    for (i, name) in names.iter().enumerate() {
        let path = dir.join(name);
        let seg = Segment {
            name,
            data: storage.read(&path).map_err(io)?,
            last: i + 1 == names.len(),
        };
        report.segments += 1;
        let first = match segment_header(&seg, upto_seq.is_some())? {
            Header::First(first) => first,
            Header::Creating => break,
            Header::Torn => {
                // A segment whose header never became durable: nothing in it was acknowledged.
                tracing::warn!(segment = %name, bytes = seg.data.len(), "cutting a segment with a torn header");
                storage.remove(&path).map_err(io)?;
                storage.sync_dir(dir).map_err(io)?;
                report.truncated_bytes += seg.data.len() as u64;
                report.segments -= 1;
                continue;
            }
        };
        if let Some(e) = expected {
            if first != e {
                return Err(JournalError::Corrupt(format!(
                    "{name}: starts at {first}, expected {e}"
                )));
            }
        }
        let range = (after_seq, upto_seq);
        let (next, torn_at) = read_records(&seg, first, range, &mut apply, &mut report)?;
        if let Some(at) = torn_at {
            let cut = (seg.data.len() - at) as u64;
            tracing::warn!(segment = %name, at, bytes = cut, "cutting the torn tail of the journal");
            storage.truncate(&path, at as u64).map_err(io)?;
            report.truncated_bytes += cut;
        }
        expected = Some(next);
        report.last_seq = report.last_seq.max(next - 1);
    }
    Ok(report)
}

/// The names of the segments holding records after `after_seq`, or why
/// the journal cannot follow a state that covers up to it.
fn segments_after(
    storage: &dyn Storage,
    dir: &Path,
    after_seq: u64,
) -> Result<Vec<String>, JournalError> {
    let segs = segments(storage, dir)?;
    // Skip the segments wholly covered by `after_seq`.
    let skip = segs
        .windows(2)
        .take_while(|w| w[1].0 <= after_seq + 1)
        .count();
    if let Some((first, name)) = segs.get(skip) {
        if *first > after_seq + 1 {
            return Err(JournalError::Corrupt(format!(
                "{name}: the journal starts at {first} but the state covers only up to {after_seq}"
            )));
        }
    }
    Ok(segs.into_iter().skip(skip).map(|(_, n)| n).collect())
}

/// One segment file as `read` walks it.
struct Segment<'a> {
    name: &'a str,
    data: Vec<u8>,
    /// The newest segment: only its tail (or header) may be torn.
    last: bool,
}

/// What a segment's header says.
enum Header {
    /// The sequence of its first record.
    First(u64),
    /// Not whole in the newest segment while the writer runs: the writer
    /// is creating it.
    Creating,
    /// Torn in the newest segment: it never became durable.
    Torn,
}

/// Reads the header of `seg`; `live`: the writer runs (nothing is cut).
fn segment_header(seg: &Segment, live: bool) -> Result<Header, JournalError> {
    let (name, data) = (seg.name, &seg.data);
    if data.len() < HEADER_LEN || &data[0..4] != MAGIC {
        if live && seg.last {
            return Ok(Header::Creating);
        }
        if seg.last && data.len() < HEADER_LEN && MAGIC.starts_with(&data[..data.len().min(4)]) {
            return Ok(Header::Torn);
        }
        return Err(JournalError::Corrupt(format!("{name}: bad segment header")));
    }
    let version = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if version != EVENT_FORMAT_VERSION {
        return Err(JournalError::Corrupt(format!(
            "{name}: format version {version}"
        )));
    }
    let first = u64::from_le_bytes(
        data[8..16]
            .try_into()
            .map_err(|_| JournalError::Corrupt("header".into()))?,
    );
    Ok(Header::First(first))
}

/// Applies the records of `seg`, numbered from `first`, that come after
/// `range.0` (and up to `range.1`, while the writer runs). Answers the
/// sequence after the last one read and, if its tail is torn (never
/// durable), where the tail starts; a bad record with whole ones after it
/// is corruption.
fn read_records(
    seg: &Segment,
    first: u64,
    (after_seq, upto_seq): (u64, Option<u64>),
    apply: &mut impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
    report: &mut RecoveryReport,
) -> Result<(u64, Option<usize>), JournalError> {
    let (name, data) = (seg.name, &seg.data);
    let mut next = first;
    let mut at = HEADER_LEN;
    while at < data.len() {
        if upto_seq.is_some_and(|u| next > u) {
            break;
        }
        match decode_frame(data, at) {
            Some((seq, body, end)) if seq == next => {
                if seq > after_seq {
                    apply(seq, body)?;
                }
                report.records += 1;
                next += 1;
                at = end;
            }
            Some((seq, ..)) => {
                return Err(JournalError::Corrupt(format!(
                    "{name} at {at}: sequence {seq}, expected {next}"
                )));
            }
            None if upto_seq.is_some() => break,
            None => {
                // Torn tail or corruption? Only if no whole record follows
                // is it a tail that never became durable.
                let later = (at + 1..data.len()).any(|p| {
                    matches!(decode_frame(data, p), Some((s, ..)) if s >= next && s < next + (1 << 40))
                });
                if !seg.last || later {
                    return Err(JournalError::Corrupt(format!(
                        "{name}: bad record at byte {at} followed by valid records; refusing to guess"
                    )));
                }
                return Ok((next, Some(at)));
            }
        }
    }
    Ok((next, None))
}

impl Journal {
    /// Starts the writer on a new segment after `last_seq` (from recovery).
    pub fn start(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        last_seq: u64,
        durability: Durability,
    ) -> Result<(Journal, JoinHandle<()>), JournalError> {
        Self::start_with_segment_size(
            storage,
            dir,
            last_seq,
            durability,
            JOURNAL_SEGMENT_BYTES_MAX,
        )
    }

    /// `start` with another segment size (tests roll segments quickly).
    pub fn start_with_segment_size(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        last_seq: u64,
        durability: Durability,
        segment_bytes_max: u64,
    ) -> Result<(Journal, JoinHandle<()>), JournalError> {
        Self::start_replicated(storage, dir, last_seq, durability, segment_bytes_max, None)
    }

    /// `start` with a replication hook (a cluster shard's journal).
    pub fn start_replicated(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        last_seq: u64,
        durability: Durability,
        segment_bytes_max: u64,
        replication: Option<Replication>,
    ) -> Result<(Journal, JoinHandle<()>), JournalError> {
        let (tx, rx) = bounded(JOURNAL_QUEUE_RECORDS_MAX);
        let poisoned = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(JournalStats::default());
        stats.last_seq.store(last_seq, Ordering::Relaxed);
        let shipping_failed = Arc::new(parking_lot::Mutex::new(None));
        let committing = Arc::new(parking_lot::Mutex::new(()));
        let shipping = Arc::new(parking_lot::Mutex::new(()));
        let ship = match replication {
            Some(r) => Some(Shipper::start(
                storage.clone(),
                dir.clone(),
                r.shipped.min(last_seq) + 1,
                r,
                Guards {
                    poisoned: poisoned.clone(),
                    failed: shipping_failed.clone(),
                    shipping: shipping.clone(),
                },
                stats.clone(),
            )?),
            None => None,
        };
        let mut w = Writer {
            storage,
            dir,
            durability,
            file: None,
            segment_bytes: 0,
            segment_bytes_max,
            next_seq: last_seq + 1,
            poisoned: poisoned.clone(),
            committing: committing.clone(),
            stats: stats.clone(),
            buf: Vec::with_capacity(1 << 20),
            ship,
        };
        w.open_segment()?;
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| JournalError::Io(e.to_string()))?;
        Ok((
            Journal {
                tx,
                poisoned,
                stats,
                tickets: Arc::new(parking_lot::Mutex::new(0)),
                shipping_failed,
                committing,
                shipping,
            },
            handle,
        ))
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Stops the journal for good: every later write is refused (as
    /// replication's, retried elsewhere), and when this returns no batch is
    /// being written or shipped nor ever will be (a cluster leader giving
    /// up the lead cuts its journal back after this: `truncate_after`).
    pub fn halt(&self) {
        self.shipping_failed
            .lock()
            .get_or_insert_with(|| "this node no longer leads".to_string());
        self.poisoned.store(true, Ordering::Release);
        drop(self.committing.lock());
        // No chunk is being shipped now, and none will be (the shipper
        // looks at `shipping_failed` under this lock): `shipped_seq` is
        // final.
        drop(self.shipping.lock());
    }

    /// Queues a record; its place in the journal is fixed when this returns,
    /// so a caller that applies the change after `append` returns can never
    /// have its effect seen before the record is ordered.
    pub fn append(&self, e: &Event) -> Result<Durable, JournalError> {
        self.append_ticketed(e).map(|(d, _)| d)
    }

    /// `append`, and the record's ticket: its place among every append
    /// (and barrier) so far. Once `durable_ticket() >= ticket` the record
    /// is durable, and so is every change made before it was appended.
    pub fn append_ticketed(&self, e: &Event) -> Result<(Durable, u64), JournalError> {
        self.append_encoded_ticketed(encode_event(e)?)
    }

    /// `append_ticketed` of a record encoded beforehand by `encode_event`
    /// (an order's placement, encoded on the asker's thread so that the
    /// actor that decides spends no time on it).
    pub fn append_encoded_ticketed(&self, body: Vec<u8>) -> Result<(Durable, u64), JournalError> {
        let (ack, rx) = oneshot::channel();
        let ticket = self.send(Append {
            body,
            ack: Some(ack),
            ticket: 0,
        })?;
        Ok((Durable(rx), ticket))
    }

    /// The last ticket given: every append so far is at or before it.
    pub fn ticket_issued(&self) -> u64 {
        *self.tickets.lock()
    }

    /// Every append up to this ticket is durable.
    pub fn durable_ticket(&self) -> u64 {
        self.stats.durable_ticket.load(Ordering::Acquire)
    }

    /// Resolves when every record queued before it is durable; writes nothing.
    /// For answers that repeat an earlier write (confirming a confirmed
    /// reservation): the earlier write may still be in flight.
    pub fn barrier(&self) -> Result<Durable, JournalError> {
        let (ack, rx) = oneshot::channel();
        self.send(Append {
            body: Vec::new(),
            ack: Some(ack),
            ticket: 0,
        })?;
        Ok(Durable(rx))
    }

    /// Queues a record nobody waits for (an expiry decided by the engine);
    /// answers its ticket.
    pub fn append_unacknowledged(&self, e: &Event) -> Result<u64, JournalError> {
        let body = encode_event(e)?;
        self.send(Append {
            body,
            ack: None,
            ticket: 0,
        })
    }

    /// Queues a record already encoded (a follower copying its shard's
    /// stream); nobody waits for it. Answers its ticket.
    pub fn append_encoded(&self, body: Vec<u8>) -> Result<u64, JournalError> {
        if body.is_empty() || body.len() > JOURNAL_RECORD_BYTES_MAX {
            return Err(JournalError::Encode(format!(
                "record of {} bytes",
                body.len()
            )));
        }
        self.send(Append {
            body,
            ack: None,
            ticket: 0,
        })
    }

    /// Queues `a` with the next ticket; answers the ticket.
    fn send(&self, mut a: Append) -> Result<u64, JournalError> {
        if self.is_poisoned() {
            return Err(match self.shipping_failed.lock().as_ref() {
                Some(why) => JournalError::Replication(why.clone()),
                None => JournalError::Poisoned,
            });
        }
        let mut last = self.tickets.lock();
        let ticket = *last + 1;
        a.ticket = ticket;
        self.tx.try_send(a).map_err(|e| match e {
            TrySendError::Full(_) => JournalError::Full,
            TrySendError::Disconnected(_) => JournalError::Closed,
        })?;
        *last = ticket;
        Ok(ticket)
    }
}

struct Writer {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    durability: Durability,
    file: Option<Box<dyn WritableFile>>,
    segment_bytes: u64,
    segment_bytes_max: u64,
    next_seq: u64,
    poisoned: Arc<AtomicBool>,
    committing: Arc<parking_lot::Mutex<()>>,
    stats: Arc<JournalStats>,
    /// Reused for every batch.
    buf: Vec<u8>,
    ship: Option<Shipper>,
}

impl Writer {
    fn open_segment(&mut self) -> Result<(), JournalError> {
        let io = |e: std::io::Error| JournalError::Io(e.to_string());
        self.file = None;
        let path = self.dir.join(segment_name(self.next_seq));
        let mut f = self.storage.create(&path).map_err(io)?;
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&EVENT_FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&self.next_seq.to_le_bytes());
        f.write_all(&h).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.storage.sync_dir(&self.dir).map_err(io)?;
        self.file = Some(f);
        self.segment_bytes = HEADER_LEN as u64;
        Ok(())
    }

    fn run(mut self, rx: Receiver<Append>) {
        let mut batch: Vec<Append> = Vec::with_capacity(JOURNAL_BATCH_RECORDS_MAX);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < JOURNAL_BATCH_RECORDS_MAX {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            let committing = self.committing.clone();
            let held = committing.lock();
            let result = if self.poisoned.load(Ordering::Acquire) {
                Err(JournalError::Poisoned)
            } else {
                self.commit(&batch)
            };
            drop(held);
            match result {
                Ok(first_seq) => match &self.ship {
                    Some(ship) if ship.ack_after => ship.after(first_seq, &mut batch),
                    ship => {
                        let shipment = ship.as_ref().map(|_| Shipment::of(first_seq, &batch));
                        acknowledge(&self.stats, first_seq, &mut batch);
                        if let (Some(ship), Some(s)) = (ship, shipment) {
                            ship.behind(s);
                        }
                    }
                },
                Err(e) => {
                    if !self.poisoned.swap(true, Ordering::AcqRel) {
                        tracing::error!(error = %e, "journal write failed: poisoned, refusing every write until restart");
                    }
                    // A batch this write failed on may be on the disk all
                    // the same (found at the next start): its outcome is
                    // unknown, never "not written". One refused because
                    // the journal was poisoned before was never written.
                    let answer = match e {
                        JournalError::Poisoned => JournalError::Poisoned,
                        e => JournalError::WriteUnknown(e.to_string()),
                    };
                    for a in batch.drain(..) {
                        if let Some(ack) = a.ack {
                            let _ = ack.send(Err(answer.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Writes one batch with one write and one fdatasync; answers the
    /// sequence number of its first record.
    fn commit(&mut self, batch: &[Append]) -> Result<u64, JournalError> {
        let io = |e: std::io::Error| JournalError::Io(e.to_string());
        if self.segment_bytes >= self.segment_bytes_max {
            self.open_segment()?;
        }
        let first_seq = self.next_seq;
        self.buf.clear();
        let mut records = 0u64;
        for a in batch.iter().filter(|a| !a.body.is_empty()) {
            encode_frame(&mut self.buf, first_seq + records, &a.body);
            records += 1;
        }
        if records == 0 {
            // Only barriers: everything before them was acknowledged already
            // (or the journal would be poisoned).
            return Ok(first_seq);
        }
        let f = self.file.as_mut().ok_or(JournalError::Poisoned)?;
        f.write_all(&self.buf).map_err(io)?;
        if self.durability == Durability::Fsync {
            f.sync_data().map_err(io)?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.next_seq += records;
        self.segment_bytes += self.buf.len() as u64;
        self.stats.records.fetch_add(records, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.stats
            .last_seq
            .store(self.next_seq - 1, Ordering::Relaxed);
        Ok(first_seq)
    }
}

/// Answers a committed batch (`first_seq`: its first record's number) and
/// marks it durable.
fn acknowledge(stats: &JournalStats, first_seq: u64, batch: &mut Vec<Append>) {
    // Before any answer: whoever is acknowledged sees it.
    if let Some(last) = batch.last() {
        stats.durable_ticket.store(last.ticket, Ordering::Release);
    }
    // Barriers (empty bodies) take no sequence: they answer the sequence of
    // the record before them.
    let mut seq = first_seq - 1;
    for a in batch.drain(..) {
        if !a.body.is_empty() {
            seq += 1;
        }
        if let Some(ack) = a.ack {
            let _ = ack.send(Ok(seq));
        }
    }
}

/// What a replication hook's error starts with when the shipment may have
/// reached the replicas (its answer was lost): the records in it are
/// answered `ReplicationUnknown`, not refused.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown: ";

fn is_outcome_unknown(e: &str) -> bool {
    e.starts_with(OUTCOME_UNKNOWN)
}

/// Answers a committed batch (`first_seq`: its first record's number) of
/// which only the records up to `shipped` reached the replicas (a later
/// chunk of its shipment failed): those are acknowledged (the replicas
/// have them; a copy cut back keeps them), the rest fail with `e`: as
/// unknown when the hook could not tell whether the replicas took them
/// (this shipment, or an earlier read-back of these records), as refused
/// otherwise (a halt or a refusal sent nothing of what was not shipped).
fn fail_unshipped(
    stats: &JournalStats,
    first_seq: u64,
    shipped: u64,
    batch: &mut Vec<Append>,
    e: &str,
) {
    let unknown = is_outcome_unknown(e);
    let mut seq = first_seq - 1;
    for a in batch.drain(..) {
        if !a.body.is_empty() {
            seq += 1;
        }
        if seq <= shipped {
            stats.durable_ticket.fetch_max(a.ticket, Ordering::AcqRel);
            if let Some(ack) = a.ack {
                let _ = ack.send(Ok(seq));
            }
            continue;
        }
        let err = if unknown {
            JournalError::ReplicationUnknown(e.to_string())
        } else {
            JournalError::Replication(e.to_string())
        };
        if let Some(ack) = a.ack {
            let _ = ack.send(Err(err));
        }
    }
}

/// Committed records on their way to the replicas.
struct Shipment {
    first: u64,
    bodies: Vec<Vec<u8>>,
    /// With `ack_after`: the batch itself, answered once shipped.
    batch: Vec<Append>,
}

impl Shipment {
    /// The records of `batch` (copied: the batch is answered first).
    fn of(first: u64, batch: &[Append]) -> Shipment {
        Shipment {
            first,
            bodies: batch
                .iter()
                .filter(|a| !a.body.is_empty())
                .map(|a| a.body.clone())
                .collect(),
            batch: Vec::new(),
        }
    }
}

/// What the shipper shares with the journal's handle.
struct Guards {
    poisoned: Arc<AtomicBool>,
    failed: Arc<parking_lot::Mutex<Option<String>>>,
    shipping: Arc<parking_lot::Mutex<()>>,
}

/// The writer's end of the shipper thread.
struct Shipper {
    tx: Sender<Shipment>,
    ack_after: bool,
}

impl Shipper {
    fn start(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        next: u64,
        r: Replication,
        guards: Guards,
        stats: Arc<JournalStats>,
    ) -> Result<Shipper, JournalError> {
        let (tx, rx) = bounded(JOURNAL_SHIP_QUEUE);
        let ack_after = r.ack_after;
        stats.shipped_seq.store(next - 1, Ordering::Release);
        stats.replicated.store(true, Ordering::Release);
        let mut t = ShipperThread {
            hook: r.hook,
            batch_max: r.batch_max.max(1),
            storage,
            dir,
            next,
            poisoned: guards.poisoned,
            stats,
            failed: guards.failed,
            shipping: guards.shipping,
        };
        std::thread::Builder::new()
            .name("journal-shipper".into())
            .spawn(move || t.run(rx))
            .map_err(|e| JournalError::Io(e.to_string()))?;
        Ok(Shipper { tx, ack_after })
    }

    /// `ack_after`: hands the batch over to be answered once shipped
    /// (waiting for room: the shipper's pace is the journal's).
    fn after(&self, first: u64, batch: &mut Vec<Append>) {
        let batch = std::mem::take(batch);
        let bodies = Vec::new();
        let s = Shipment {
            first,
            bodies,
            batch,
        };
        if let Err(e) = self.tx.send(s) {
            // The shipper is gone (it never leaves first): fail the batch.
            for a in e.into_inner().batch {
                if let Some(ack) = a.ack {
                    let _ = ack.send(Err(JournalError::Closed));
                }
            }
        }
    }

    /// Without `ack_after`: records already answered; when the queue is
    /// full they are left to be read back from the segments.
    fn behind(&self, s: Shipment) {
        let _ = self.tx.try_send(s);
    }
}

struct ShipperThread {
    hook: Box<dyn Replicate>,
    batch_max: usize,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// The next record to ship.
    next: u64,
    poisoned: Arc<AtomicBool>,
    stats: Arc<JournalStats>,
    /// The first failure: every later record fails with it (shared with
    /// the journal's handle, which refuses new writes with it).
    failed: Arc<parking_lot::Mutex<Option<String>>>,
    /// Held while a chunk is shipped (`Journal::halt`).
    shipping: Arc<parking_lot::Mutex<()>>,
}

impl ShipperThread {
    fn run(&mut self, rx: Receiver<Shipment>) {
        loop {
            let first = match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(s) => s,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    // Records the queue dropped and nothing came after.
                    let last = self.stats.last_seq.load(Ordering::Relaxed);
                    if self.failed.lock().is_none() && last >= self.next {
                        self.catch_up(last);
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            let mut group = vec![first];
            let mut records: usize = group[0].len();
            while records < self.batch_max {
                match rx.try_recv() {
                    Ok(s) => {
                        records += s.len();
                        group.push(s);
                    }
                    Err(_) => break,
                }
            }
            self.ship_group(group);
        }
    }

    /// Ships the records of `group` not shipped yet, in order: records the
    /// queue dropped before a shipment (without `ack_after`) are read back
    /// from the segments first. Then answers the batches in it: those
    /// wholly shipped, or the failure.
    fn ship_group(&mut self, group: Vec<Shipment>) {
        // Failed before: this group was never sent.
        let before = self.failed.lock().clone();
        let mut outcome = match before.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        if outcome.is_ok() {
            // Records gathered to ship at once: `self.next..`.
            let mut bodies: Vec<&[u8]> = Vec::new();
            for s in &group {
                if s.first > self.next + bodies.len() as u64 {
                    outcome = self.ship_gathered(&mut bodies);
                    if outcome.is_err() {
                        break;
                    }
                    self.catch_up(s.first - 1);
                    if self.next != s.first {
                        break; // not read back: the next tick tries again
                    }
                }
                for (i, b) in s.records().enumerate() {
                    // Records before are shipped already (read back).
                    if s.first + i as u64 == self.next + bodies.len() as u64 {
                        bodies.push(b);
                    }
                }
            }
            if outcome.is_ok() {
                outcome = self.ship_gathered(&mut bodies);
            }
        }
        for mut s in group {
            if s.batch.is_empty() {
                continue;
            }
            let last = s.first + s.len() as u64 - 1;
            let shipped = self.stats.shipped_seq.load(Ordering::Acquire);
            if last <= shipped {
                acknowledge(&self.stats, s.first, &mut s.batch);
                continue;
            }
            let e = match &outcome {
                Err(e) => e.clone(),
                Ok(()) => "not shipped".to_string(),
            };
            fail_unshipped(&self.stats, s.first, shipped, &mut s.batch, &e);
        }
    }

    /// Ships the records gathered (`self.next..`) and moves past them.
    fn ship_gathered(&mut self, bodies: &mut Vec<&[u8]>) -> Result<(), String> {
        if bodies.is_empty() {
            return Ok(());
        }
        self.ship(self.next, bodies)?;
        self.next += bodies.len() as u64;
        bodies.clear();
        Ok(())
    }

    /// Ships `bodies` (records `first..`) in calls of `batch_max`; the
    /// first failure poisons the journal.
    fn ship(&mut self, first: u64, bodies: &[&[u8]]) -> Result<(), String> {
        for (i, chunk) in bodies.chunks(self.batch_max).enumerate() {
            let at = first + (i * self.batch_max) as u64;
            let shipping = self.shipping.clone();
            let _held = shipping.lock();
            // Halted (or failed) meanwhile: nothing more leaves.
            if let Some(e) = self.failed.lock().clone() {
                return Err(e);
            }
            if let Err(e) = self.hook.ship(at, chunk) {
                // The reason first: a write refused for the poison says it.
                *self.failed.lock() = Some(e.clone());
                if !self.poisoned.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, seq = at, "replication failed: the journal is poisoned, refusing every write");
                }
                return Err(e);
            }
            let last = at + chunk.len() as u64 - 1;
            self.stats.shipped_seq.fetch_max(last, Ordering::Release);
        }
        Ok(())
    }

    /// Reads records `next..=upto` back from the segments and ships them.
    fn catch_up(&mut self, upto: u64) {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        let from = self.next;
        let read = read_range(self.storage.as_ref(), &self.dir, from - 1, upto, |_, b| {
            bodies.push(b.to_vec());
            Ok(())
        });
        if let Err(e) = read {
            tracing::warn!(error = %e, from, upto, "shipper: reading back the journal");
            return;
        }
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        if !refs.is_empty() && self.ship(from, &refs).is_ok() {
            self.next = from + refs.len() as u64;
        }
    }
}

impl Shipment {
    fn len(&self) -> usize {
        self.records().count()
    }

    /// Its records in order: copied ones, or (`ack_after`) the batch's.
    fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.bodies.iter().map(Vec::as_slice).chain(
            self.batch
                .iter()
                .filter(|a| !a.body.is_empty())
                .map(|a| a.body.as_slice()),
        )
    }
}
