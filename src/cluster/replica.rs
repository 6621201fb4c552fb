//! The cluster's copies. The leader's engine journals as a single node's
//! does and ships every committed record to the stream under its lease
//! (`StreamShip`, the journal's replication hook). A follower
//! (`Mirror`) copies the stream into a journal of its own, record for
//! record under the same sequence numbers, and applies each record to a
//! model in memory: the shard stays hot, and taking it over is starting an
//! engine on that model (`Mirror::promote`), with no replay.
//!
//! A mirror opened on a node's directory checks its copy against the
//! stream: the stream must hold its last record, or it rebuilds from the
//! stream (what the stream never took, or another leader wrote over, is
//! not the cluster's: `Mirror::place`).

use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::log::{Entry, Fence, Follower, LogError, Resync, ShardLog};
use crate::clock::Clock;
use crate::domain::catalog::SkuIdx;
use crate::domain::model::Model;
use crate::domain::stock::StockRecord;
use crate::feed::{Change, Copied, Feed, Scope, Sink, SnapshotText};
use crate::http::feed::{Part, Wanted};
use crate::limits::STREAM_READ_BATCH;
use crate::persistence::journal::{decode_event, read_range, Replicate, OUTCOME_UNKNOWN};
use crate::persistence::recovery::{apply_record, recover_model};
use crate::persistence::snapshot::{
    decode_snapshot, run_snapshotter, SnapshotPolicy, SnapshotStore,
};
use crate::persistence::{Durability, Journal, JournalError, RecoveryReport, Storage};

/// The owner's shipping: appends under the lease it was started with. A
/// moved lease (a stale epoch) fails at once; an unreachable Redis is
/// retried with backoff for `patience`, then fails. Either way the journal
/// is poisoned and the engine refuses writes from then on.
pub struct StreamShip {
    url: String,
    cluster: String,
    shard: u32,
    fence: Fence,
    patience: Duration,
    timeout: Duration,
    /// `[replication] wait_aof` / `wait_replicas`: Redis's own fsync and
    /// replicas before a batch counts as shipped.
    wait_aof: bool,
    wait_replicas: u32,
    log: Option<ShardLog>,
}

impl StreamShip {
    pub fn new(url: &str, cluster: &str, shard: u32, fence: Fence, patience: Duration) -> Self {
        StreamShip {
            url: url.to_string(),
            cluster: cluster.to_string(),
            shard,
            fence,
            patience,
            timeout: Duration::from_secs(2).min(patience.max(Duration::from_millis(100))),
            wait_aof: false,
            wait_replicas: 0,
            log: None,
        }
    }

    /// Also waits for Redis's fsync (`aof`) and `replicas` replicas.
    pub fn waiting_for(mut self, aof: bool, replicas: u32) -> Self {
        self.wait_aof = aof;
        self.wait_replicas = replicas;
        self
    }

    /// One attempt; its error, and whether the entries may have reached
    /// Redis (a connection that never opened sent nothing).
    fn append(&mut self, first: u64, bodies: &[&[u8]]) -> Result<(), (LogError, bool)> {
        if self.log.is_none() {
            let log = ShardLog::open(&self.url, &self.cluster, self.timeout);
            self.log = Some(log.map_err(|e| (e, false))?);
        }
        let (shard, fence) = (self.shard, &self.fence);
        let Some(log) = self.log.as_mut() else {
            return Err((LogError::Redis("no connection".into()), false));
        };
        // A retry after a failed wait finds the events in (a no-op) and
        // waits again: they count as shipped only once the wait holds.
        log.append(shard, fence, first, bodies)
            .map_err(|e| (e, true))?;
        // Half the connection's timeout: Redis answers before the socket
        // gives up on it.
        log.wait(self.wait_aof, self.wait_replicas, self.timeout / 2)
            .map_err(|e| (e, true))
    }
}

impl Replicate for StreamShip {
    /// Appends `bodies`, retried (a retry of entries the stream holds is a
    /// no-op) for `patience`. Failing, the error says whether an attempt
    /// may have reached Redis (`OUTCOME_UNKNOWN`: its answer was lost, the
    /// entries may be in the stream) or none did (refused, or no
    /// connection).
    fn ship(&mut self, first: u64, bodies: &[&[u8]]) -> Result<(), String> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        let mut maybe_sent = false;
        loop {
            match self.append(first, bodies) {
                Ok(()) => return Ok(()),
                Err((LogError::Redis(e), sent)) => {
                    self.log = None; // a fresh connection next time
                    maybe_sent |= sent;
                    if started.elapsed() + backoff > self.patience {
                        let unknown = if maybe_sent { OUTCOME_UNKNOWN } else { "" };
                        return Err(format!(
                            "{unknown}shard {}: redis unreachable: {e}",
                            self.shard
                        ));
                    }
                    tracing::warn!(shard = self.shard, error = %e, "shipping: redis unreachable, retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                // Refused now; an earlier attempt may still have been taken.
                Err((e, _)) => {
                    let unknown = if maybe_sent { OUTCOME_UNKNOWN } else { "" };
                    return Err(format!("{unknown}shard {}: {e}", self.shard));
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// The stream no longer follows what this copy applied.
    #[error("resync needed: {0:?}")]
    Resync(Resync),
    #[error("shard {shard}: {detail}")]
    Stream { shard: u32, detail: String },
}

/// A follower's copy of one shard.
pub struct Mirror {
    shard: u32,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    durability: Durability,
    journal: Option<(Journal, JoinHandle<()>)>,
    /// Orders the owner's snapshots passivated (when this directory was an
    /// owner's): an event of one loads it back.
    archive: Option<(Arc<SnapshotStore>, u64)>,
    model: Arc<RwLock<Model>>,
    follow: Follower,
    /// When to snapshot the copy (as an engine's snapshotter does: from
    /// the journal, off the model in memory; the journal is cut behind),
    /// and the snapshotter's thread while the journal runs.
    snapshots: Option<SnapshotPolicy>,
    snapshotter: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// The copy's stock feed (`start_feed`): the records each entry
    /// changes, for the feed sessions of this node. `applied` is the
    /// sequence number of the copy's last record (`last_seq`), set under
    /// the model's write lock: a feed's snapshot reads it with the records.
    feed: Option<(Feed, Arc<AtomicBool>, JoinHandle<()>)>,
    applied: Arc<AtomicU64>,
    /// The records an entry changed, for the feed (kept: one allocation,
    /// not one an entry).
    touched: Vec<crate::domain::history::Moved>,
}

/// What a node's feed sessions follow of a followed copy: its feed, and
/// its records with the sequence number they hold.
#[derive(Clone)]
pub struct CopyFeed {
    feed: Feed,
    model: Arc<RwLock<Model>>,
    applied: Arc<AtomicU64>,
}

impl CopyFeed {
    /// The copy's state (`Mirror::model`).
    pub fn model(&self) -> &Arc<RwLock<Model>> {
        &self.model
    }

    /// Whether the copy's catalog names `want`.
    pub fn names(&self, want: &Wanted) -> bool {
        want.scope(&self.model.read().catalog).is_some()
    }

    /// Subscribes `sink` to `want`, then adds the copy's records of it to
    /// `text`. Its changes are numbered by the entries that made them (one
    /// stock shard, 0): those at or before the copy's last when it was
    /// read are in `text` already.
    pub fn follow(
        &self,
        want: &Wanted,
        sink: Box<dyn Sink>,
        text: &mut SnapshotText,
    ) -> Option<Part> {
        let scope = want.scope(&self.model.read().catalog)?;
        // Subscribed first (no lock held: the feed's thread reads the
        // model too): an entry applied after it reaches the sink.
        let sub = self.feed.subscribe(scope, sink);
        let m = self.model.read();
        let seen = vec![self.applied.load(Ordering::Acquire)];
        let records: Vec<(SkuIdx, StockRecord)> = match scope {
            Scope::Location(l) => m.stock.at_location(l).collect(),
            Scope::Sku(s) => m.stock.records_of(s).map(|r| (s, r)).collect(),
        };
        text.add(&m.catalog, &records);
        Some(Part { sub, seen })
    }
}

impl Mirror {
    /// Opens the copy of `shard` under `dir` (`journal/`, `snapshots/`), and
    /// finds where it stands in the stream: after its last record if the
    /// stream holds that record, else (a tail the cluster never took) from
    /// the stream's start.
    pub fn open(
        dir: &Path,
        storage: Arc<dyn Storage>,
        durability: Durability,
        log: &mut ShardLog,
        shard: u32,
        snapshots: Option<SnapshotPolicy>,
    ) -> Result<Mirror, MirrorError> {
        let store = Arc::new(SnapshotStore::open(&dir.join("snapshots"))?);
        let snapshot = store.load();
        let base = snapshot.as_ref().map_or(0, |(s, _)| *s);
        let (model, report) = recover_model(
            storage.as_ref(),
            &dir.join("journal"),
            snapshot,
            Some(&store),
        )?;
        let mut m = Mirror {
            shard,
            dir: dir.to_path_buf(),
            storage,
            durability,
            journal: None,
            archive: Some((store, base)),
            model: Arc::new(RwLock::new(model)),
            follow: Follower::default(),
            snapshots,
            snapshotter: None,
            feed: None,
            applied: Arc::new(AtomicU64::new(report.last_seq)),
            touched: Vec::new(),
        };
        if m.last_seq() > 0 {
            match m.place(log)? {
                Some(f) => m.follow = f,
                None => {
                    tracing::warn!(
                        shard,
                        last_seq = m.last_seq(),
                        "this copy disagrees with the stream: rebuilding it from the stream"
                    );
                    m.wipe()?;
                }
            }
        }
        m.start_journal()?;
        Ok(m)
    }

    /// Where this copy stands in the stream, if it agrees with it: the
    /// stream must hold this copy's last record, the same bytes under the
    /// same number. A copy longer than the stream holds records the stream
    /// never took (a leader killed with a refused append or an unshipped
    /// tail): they were never acknowledged in `replicated` mode and must
    /// not come back, so the copy rebuilds from the stream. An empty
    /// stream with no published snapshot (Redis lost everything) holds
    /// nothing to disagree with: the copy is kept (the longest copy takes
    /// the lead and fills the stream again); one emptied by a snapshot's
    /// trim holds its records only in that snapshot, so the copy cannot be
    /// checked: it rebuilds.
    fn place(&self, log: &mut ShardLog) -> Result<Option<Follower>, MirrorError> {
        let mut before = "+".to_string();
        loop {
            let page = log.read_back(self.shard, &before, STREAM_READ_BATCH)?;
            let Some(oldest) = page.last() else {
                let lost_everything = before == "+" && log.published_seq(self.shard)? == 0;
                return Ok(lost_everything.then(|| Follower::placed(self.last_seq(), None)));
            };
            if let Some(e) = page.iter().find(|e| e.seq <= self.last_seq()) {
                let same = e.seq == self.last_seq()
                    && self.local_record(e.seq)?.is_some_and(|b| b == e.data);
                return Ok(same.then(|| Follower::placed(self.last_seq(), Some(e))));
            }
            before = format!("({}", oldest.id);
        }
    }

    /// This copy's record `seq`, if its journal still holds it (not only a
    /// snapshot).
    fn local_record(&self, seq: u64) -> Result<Option<Vec<u8>>, MirrorError> {
        let mut found = None;
        read_range(
            self.storage.as_ref(),
            &self.dir.join("journal"),
            seq - 1,
            seq,
            |_, b| {
                found = Some(b.to_vec());
                Ok(())
            },
        )?;
        Ok(found)
    }

    /// Drops the local copy: it starts again from nothing (with an empty
    /// snapshot store of its own).
    fn wipe(&mut self) -> Result<(), MirrorError> {
        self.stop_journal()?;
        self.archive = None;
        for sub in ["journal", "snapshots"] {
            match std::fs::remove_dir_all(self.dir.join(sub)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(JournalError::Io(e.to_string()).into()),
            }
        }
        let store = SnapshotStore::open(&self.dir.join("snapshots"))?;
        self.archive = Some((Arc::new(store), 0));
        let mut model = self.model.write();
        *model = Model::default();
        self.applied.store(0, Ordering::Release);
        drop(model);
        self.follow = Follower::default();
        Ok(())
    }

    fn start_journal(&mut self) -> Result<(), MirrorError> {
        let dir = self.dir.join("journal");
        self.storage
            .create_dir_all(&dir)
            .map_err(|e| JournalError::Io(e.to_string()))?;
        let (journal, writer) = Journal::start(
            self.storage.clone(),
            dir.clone(),
            self.last_seq(),
            self.durability,
        )?;
        if let (Some(policy), Some((store, _))) = (self.snapshots, &self.archive) {
            let stop = Arc::new(AtomicBool::new(false));
            let (store, storage, stats, halt, last) = (
                store.clone(),
                self.storage.clone(),
                journal.stats.clone(),
                stop.clone(),
                self.last_seq(),
            );
            let thread = std::thread::Builder::new()
                .name("mirror-snapshots".into())
                .spawn(move || run_snapshotter(store, storage, dir, stats, policy, halt, last))
                .map_err(|e| JournalError::Io(e.to_string()))?;
            self.snapshotter = Some((stop, thread));
        }
        self.journal = Some((journal, writer));
        Ok(())
    }

    /// Waits until every record copied is durable, and stops the writer.
    fn stop_journal(&mut self) -> Result<(), MirrorError> {
        if let Some((stop, thread)) = self.snapshotter.take() {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
        if let Some((journal, writer)) = self.journal.take() {
            let synced = journal.barrier().map(|d| d.wait());
            drop(journal);
            let _ = writer.join();
            synced??;
        }
        Ok(())
    }

    /// Copies and applies up to `max` stream entries after the last one
    /// applied; answers how many it read (0: none there yet).
    pub fn poll(&mut self, log: &mut ShardLog, max: usize) -> Result<usize, MirrorError> {
        self.poll_waiting(log, max, None)
    }

    /// `poll`, waiting up to `wait` for an entry when none is there yet.
    pub fn poll_waiting(
        &mut self,
        log: &mut ShardLog,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<usize, MirrorError> {
        let entries = match wait {
            Some(block) => log.read_waiting(self.shard, &self.follow.after, max, block)?,
            None => log.read(self.shard, &self.follow.after, max)?,
        };
        for e in &entries {
            self.apply(e)?;
        }
        Ok(entries.len())
    }

    /// Polls until the stream has nothing more.
    pub fn catch_up(&mut self, log: &mut ShardLog) -> Result<(), MirrorError> {
        while self.poll(log, STREAM_READ_BATCH)? > 0 {}
        Ok(())
    }

    fn apply(&mut self, e: &Entry) -> Result<(), MirrorError> {
        let mut next = self.follow.clone();
        if !next.accept(e).map_err(MirrorError::Resync)? {
            self.follow = next; // a duplicate delivery: nothing changes
            return Ok(());
        }
        let bad = |detail: String| MirrorError::Stream {
            shard: self.shard,
            detail,
        };
        let event = decode_event(&e.data).map_err(|err| bad(format!("entry {}: {err}", e.seq)))?;
        // The journal first: a full queue leaves nothing changed (the
        // entry is read again); once it is queued, the model follows.
        let (journal, _) = self.journal.as_ref().ok_or(JournalError::Closed)?;
        journal.append_encoded(e.data.clone())?;
        self.follow = next;
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        let mut model = self.model.write();
        apply_record(
            &mut model,
            &event,
            self.archive.as_ref().map(|(s, b)| (s.as_ref(), *b)),
            self.feed.is_some().then_some(&mut touched),
        )
        // The copy is not the stream's any more: the caller rebuilds it.
        .map_err(|err| bad(format!("entry {}: {err}", e.seq)))?;
        self.applied.store(e.seq, Ordering::Release);
        if let Some((feed, _, _)) = &self.feed {
            let at_ms = crate::clock::SystemClock.now_ms();
            for m in touched.iter().filter(|m| m.applied) {
                feed.change(Change {
                    sku: m.sku,
                    record: model.stock.get_or_empty(m.sku, m.location),
                    at_ms,
                    ticket: 0,
                    shard: 0,
                    shard_seq: e.seq,
                });
            }
        }
        drop(model);
        self.touched = touched;
        Ok(())
    }

    /// Starts the copy's stock feed (a thread releasing its changes every
    /// `window`), for `feed()`.
    pub fn start_feed(&mut self, window: Duration) -> std::io::Result<()> {
        if self.feed.is_none() {
            let stop = Arc::new(AtomicBool::new(false));
            let (feed, thread) = Feed::start(Copied(self.model.clone()), window, stop.clone())?;
            self.feed = Some((feed, stop, thread));
        }
        Ok(())
    }

    /// The copy's feed, once started.
    pub fn feed(&self) -> Option<CopyFeed> {
        let (feed, _, _) = self.feed.as_ref()?;
        Some(CopyFeed {
            feed: feed.clone(),
            model: self.model.clone(),
            applied: self.applied.clone(),
        })
    }

    fn stop_feed(&mut self) {
        if let Some((_, stop, thread)) = self.feed.take() {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
    }

    /// Starts again (after `Resync`): from the shard's published snapshot
    /// if there is one (the stream is trimmed behind it), else from the
    /// stream's start.
    pub fn rebuild(&mut self, log: &mut ShardLog) -> Result<(), MirrorError> {
        self.wipe()?;
        let bootstrapped = self.bootstrap(log);
        // The journal runs whatever the bootstrap did: a copy left without
        // one could apply nothing again (every later round would fail).
        // Without the snapshot the copy is empty, and its next read finds
        // the gap again.
        self.start_journal()?;
        bootstrapped?;
        self.catch_up(log)
    }

    /// Starts the (wiped) copy at the published snapshot, if there is one.
    fn bootstrap(&mut self, log: &mut ShardLog) -> Result<(), MirrorError> {
        let Some(p) = log.snapshot(self.shard)? else {
            return Ok(());
        };
        let bad = |detail: String| MirrorError::Stream {
            shard: self.shard,
            detail: format!("published snapshot: {detail}"),
        };
        let (seq, model) = decode_snapshot(&p.data).map_err(bad)?;
        if seq != p.seq {
            return Err(bad(format!("holds {seq}, published as {}", p.seq)));
        }
        if let Some((store, base)) = &mut self.archive {
            store.save(seq, &model)?;
            *base = seq;
        }
        tracing::info!(
            shard = self.shard,
            seq,
            "copy bootstrapped from the published snapshot"
        );
        let mut m = self.model.write();
        *m = model;
        self.applied.store(seq, Ordering::Release);
        drop(m);
        self.follow = Follower::at(&p);
        Ok(())
    }

    /// The copy's newest snapshot as stored (`SnapshotStore::newest_encoded`).
    pub fn newest_snapshot(&self) -> Option<(u64, Vec<u8>)> {
        self.archive.as_ref()?.0.newest_encoded()
    }

    /// The state after the last record applied, shared with the readers
    /// this copy serves (availability and stock records on a follower):
    /// each record is applied under the write lock.
    pub fn model(&self) -> &Arc<RwLock<Model>> {
        &self.model
    }

    pub fn last_seq(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The stream id of the last entry read (`ms-n`: Redis's clock when
    /// it was appended).
    pub fn last_id(&self) -> &str {
        &self.follow.after
    }

    /// The epoch of the last record applied.
    pub fn epoch(&self) -> u64 {
        self.follow.epoch
    }

    /// The last record the stream was seen to hold as this copy does
    /// (`Follower::confirmed`).
    pub fn confirmed(&self) -> u64 {
        self.follow.confirmed
    }

    /// Ends the copy for its owner's engine to start on (`Start::recovered`):
    /// every record copied is durable and its journal closed.
    pub fn promote(mut self) -> Result<(Model, RecoveryReport), MirrorError> {
        self.stop_feed();
        self.stop_journal()?;
        if self.durability != Durability::Fsync {
            // Copied without fsync (the stream held it): durable before the
            // engine acknowledges anything on top of it.
            crate::persistence::journal::sync_segments(
                self.storage.as_ref(),
                &self.dir.join("journal"),
            )?;
        }
        self.archive = None; // the engine opens the snapshot store itself
        let report = RecoveryReport {
            last_seq: self.last_seq(),
            ..RecoveryReport::default()
        };
        Ok((std::mem::take(&mut *self.model.write()), report))
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop_feed();
        let _ = self.stop_journal();
    }
}
