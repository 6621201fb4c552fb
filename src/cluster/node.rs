//! A node of the cluster: its copy of the network's state, either followed
//! (a `Mirror`, kept hot from the stream) or leading (the single-node
//! engine, whose journal ships to the stream under the lease's fence),
//! switched by the lease keeper's word. One manager thread does every
//! switch and every read of the stream, so the copy is never both at once.
//! (The code keeps per-partition vectors of one: `PARTITION`.)
//!
//! Taking the lead: the lease is held first (nobody else appends), the
//! mirror reads the stream to its end, and the engine starts on the
//! mirror's model (unless a live node reported a longer copy: Redis lost
//! everything, and that node fills it again). Giving it up (the lease
//! lapsed, or the fence refused a write): the engine stops, its journal is
//! cut back to what the stream took (`cut_back`), and the copy is opened
//! again as a mirror, checked against the stream (`Mirror::open`).

use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lease::{LeaseKeeper, LeaseView, Placement};
use super::log::{Fence, LogError, Resync, ShardLog};
use super::replica::{CopyFeed, Mirror, MirrorError, StreamShip};
use super::{ClusterConfig, ClusterDurability};
use crate::actors::{Engine, EngineConfig, Recovered, Start};
use crate::clock::Clock;
use crate::domain::model::Model;
use crate::limits::FOLLOW_BATCH;
use crate::limits::FOLLOW_WAIT;
use crate::metrics::Metrics;
use crate::persistence::journal::Replication;
use crate::persistence::{Durability, JournalError, RealStorage, RecoveryReport, Storage};

/// What the HTTP side needs of an owned shard.
pub type Owned = Arc<crate::http::AppState>;

/// Builds the HTTP state of a shard just taken, around its engine.
pub type MakeState = Box<dyn Fn(Engine, &crate::actors::Recovered) -> Owned + Send + Sync>;

/// Per shard, as the HTTP side sees it.
#[derive(Default)]
struct ShardView {
    /// This node's engine for it, while it owns it.
    owned: Option<Owned>,
    /// Its owner (node id) and epoch, as last read from Redis.
    owner: Option<(String, u64)>,
    /// The last sequence number this node's copy applied.
    applied: u64,
    /// When this node's copy last had read everything the stream held.
    caught_up: Option<Instant>,
    /// When this node last answered a write of the shard.
    wrote_at: Option<Instant>,
    /// The epoch the engine in `owned` writes under.
    owned_epoch: u64,
    /// How far each node's copy goes, as they last said in Redis: (node,
    /// last sequence, when said, Unix ms).
    reports: Vec<(String, u64, u64)>,
    /// This node's copy while it follows the shard (its model and its
    /// stock feed; none while it is rebuilt), and a count of the changes
    /// of what feeds the shard here (`moved`): feed sessions follow again
    /// when it moves.
    feed: Option<CopyFeed>,
    moves: u64,
}

/// What feeds a shard's stock changes on this node now.
pub enum ShardFeed {
    /// Its engine (this node owns the shard).
    Owned(Owned),
    /// Its followed copy.
    Copy(CopyFeed),
}

impl ShardView {
    /// What feeds the shard here changed.
    fn moved(&mut self) {
        self.moves += 1;
    }
}

pub struct ClusterNode {
    pub config: ClusterConfig,
    pub node_id: String,
    holder: String,
    views: Vec<RwLock<ShardView>>,
    stop: Arc<AtomicBool>,
    manager: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Every shard engine of this node counts into these.
    pub metrics: Arc<Metrics>,
    pub stats: Arc<ClusterStats>,
    /// The lease keeper's word (set once it started).
    leases: std::sync::OnceLock<LeaseView>,
}

/// For `/metrics`.
#[derive(Default)]
pub struct ClusterStats {
    pub takeovers: AtomicU64,
    pub handovers: AtomicU64,
    pub resyncs: AtomicU64,
    pub forwarded: AtomicU64,
    pub snapshots_published: AtomicU64,
    /// Age of each entry's last applied by a follower, from its stream
    /// id (Redis's clock when appended; millisecond resolution).
    pub lag: crate::metrics::Histogram,
}

/// What every shard engine of the node starts with (its `data_dir` is
/// the shard's own).
pub struct Template {
    pub engine: EngineConfig,
    pub clock: Arc<dyn Clock>,
    pub make_state: MakeState,
}

impl ClusterNode {
    /// Opens a copy of every shard under the node's data dir and starts
    /// the lease keeper and the manager.
    pub fn start(
        config: ClusterConfig,
        node_id: &str,
        template: Template,
    ) -> Result<Arc<ClusterNode>, String> {
        let node = config.node(node_id)?.clone();
        let index = config
            .nodes
            .iter()
            .position(|n| n.id == node_id)
            .ok_or("no such node")? as u32;
        let holder = format!("{node_id}/{:016x}", rand::random::<u64>());
        let metrics = Arc::new(Metrics::default());
        let n = ClusterNode {
            views: vec![Default::default()],
            config: config.clone(),
            node_id: node_id.to_string(),
            holder: holder.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            manager: parking_lot::Mutex::new(None),
            metrics,
            stats: Arc::new(ClusterStats::default()),
            leases: std::sync::OnceLock::new(),
        };
        let node_arc = Arc::new(n);
        let keeper = LeaseKeeper::start(Placement {
            redis_url: config.redis_url.clone(),
            cluster: config.cluster.clone(),
            index,
            holder,
            timings: config.lease,
            wait_aof: config.replication.wait_aof,
            wait_replicas: config.replication.wait_replicas,
        })
        .map_err(|e| e.to_string())?;
        let _ = node_arc.leases.set(keeper.view());
        let mut m = Manager {
            node: node_arc.clone(),
            keeper,
            template,
            dir: node.data_dir.clone(),
            log: None,
            connected_at: Instant::now(),
            copies: vec![Copy::Closed],
            last_owners: Instant::now() - Duration::from_secs(1),
            published: vec![0],
            idle: false,
            last_snapshots: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || m.run())
            .map_err(|e| e.to_string())?;
        *node_arc.manager.lock() = Some(thread);
        Ok(node_arc)
    }

    /// This node's engine for `shard`, if it owns it.
    pub fn owned(&self, shard: u32) -> Option<Owned> {
        self.views.get(shard as usize)?.read().owned.clone()
    }

    /// The leader's engine, while this node may answer as the leader: its
    /// lease is held under the engine's epoch now (on this node's clock,
    /// `lease_valid_for` after the renewal was sent: safely before anyone
    /// else may take it) and its journal takes writes. Asked on every
    /// request and again before a read's answer leaves: a leader whose
    /// lease ran out answers nothing more (no zombie answers).
    pub fn leading(&self) -> Option<Owned> {
        let v = self.views.first()?.read();
        let state = v.owned.clone()?;
        let lease = self.leases.get()?.owns(super::PARTITION)?;
        (lease == v.owned_epoch && !state.engine.journal().is_poisoned()).then_some(state)
    }

    /// This node's copy while it follows, whatever its age, and how long
    /// ago it had read everything the stream held (`None`: never since it
    /// opened): what a follower answers reads from when the leader cannot
    /// (its staleness shown).
    pub fn stale_copy(&self) -> Option<(Arc<RwLock<Model>>, Option<Duration>)> {
        let v = self.views.first()?.read();
        let model = v.feed.as_ref()?.model().clone();
        Some((model, v.caught_up.map(|t| t.elapsed())))
    }

    /// How far each node's copy goes, as they last said (`report_copies`).
    pub fn reports(&self) -> Vec<(String, u64, u64)> {
        self.views
            .first()
            .map_or(Vec::new(), |v| v.read().reports.clone())
    }

    /// This node's copy of `shard` while it follows it, if the copy had
    /// read everything the stream held no longer than `fresh` ago: reads
    /// it may answer (availability, stock records).
    pub fn fresh_copy(&self, shard: u32, fresh: Duration) -> Option<Arc<RwLock<Model>>> {
        let v = self.views.get(shard as usize)?.read();
        v.caught_up
            .filter(|t| t.elapsed() <= fresh && v.wrote_at.is_none_or(|w| *t >= w))?;
        v.feed.as_ref().map(|f| f.model().clone())
    }

    /// What feeds `shard`'s stock changes on this node now, if anything
    /// does (a copy being rebuilt does not).
    pub fn feed_of(&self, shard: u32) -> Option<ShardFeed> {
        let v = self.views.get(shard as usize)?.read();
        match (&v.owned, &v.feed) {
            (Some(state), _) => Some(ShardFeed::Owned(state.clone())),
            (None, Some(f)) => Some(ShardFeed::Copy(f.clone())),
            (None, None) => None,
        }
    }

    /// Counts the changes of what feeds `shard` here (`feed_of`).
    pub fn feed_moves(&self, shard: u32) -> u64 {
        self.views.get(shard as usize).map_or(0, |v| v.read().moves)
    }

    /// This node answered a write of `shard` now: its copy answers reads
    /// again once it read the stream after this (`fresh_copy`).
    pub fn wrote(&self, shard: u32) {
        if let Some(v) = self.views.get(shard as usize) {
            v.write().wrote_at = Some(Instant::now());
        }
    }

    /// The lease this node writes a shard under at `epoch`.
    fn fence(&self, epoch: u64) -> Fence {
        Fence {
            holder: self.holder.clone(),
            epoch,
        }
    }

    /// Whether this node's lease keeper reached Redis last time it tried.
    pub fn redis_reachable(&self) -> bool {
        self.leases.get().is_some_and(|l| l.redis_reachable())
    }

    /// The leader's engine while this node may act as the leader
    /// (`leading`): what the owed captures and refunds and the carriers'
    /// tracking run on, so that a node whose lease ran out calls no
    /// provider any more.
    pub fn owned_states(&self) -> Vec<Owned> {
        self.leading().into_iter().collect()
    }

    /// Any shard this node owns (for the node-wide answers: metrics).
    pub fn any_owned(&self) -> Option<Owned> {
        self.views.iter().find_map(|v| v.read().owned.clone())
    }

    /// Where `shard` is written now: its owner's HTTP address (another
    /// node's), if known.
    pub fn owner_addr(&self, shard: u32) -> Option<std::net::SocketAddr> {
        let v = self.views.get(shard as usize)?.read();
        let (node, _) = v.owner.as_ref()?;
        self.config
            .nodes
            .iter()
            .find(|n| &n.id == node)
            .map(|n| n.http)
    }

    /// The leader's epoch as last read from Redis (0: none known).
    pub fn leader_epoch(&self) -> u64 {
        self.views
            .first()
            .and_then(|v| v.read().owner.as_ref().map(|o| o.1))
            .unwrap_or(0)
    }

    /// Per shard: (owned here, owner node, epoch, last applied).
    pub fn status(&self) -> Vec<(bool, Option<String>, u64, u64)> {
        self.views
            .iter()
            .map(|v| {
                let v = v.read();
                let (owner, epoch) = v.owner.clone().map_or((None, 0), |(n, e)| (Some(n), e));
                let applied = v.owned.as_ref().map_or(v.applied, |s| {
                    s.engine.journal().stats.last_seq.load(Ordering::Relaxed)
                });
                (v.owned.is_some(), owner, epoch, applied)
            })
            .collect()
    }

    /// `GET /v1/cluster`: the leader and its epoch, this node's role and
    /// copy, and every node's copy as they last said it in Redis, with its
    /// lag behind the leader's (in records).
    pub fn view_json(&self) -> serde_json::Value {
        use serde_json::json;
        let status = self.status();
        let (here, owner, epoch, applied) = status.first().cloned().unwrap_or_default();
        let leading = self.leading().is_some();
        let reports = self.reports();
        let leader_seq = reports
            .iter()
            .find(|(n, ..)| Some(n) == owner.as_ref())
            .map(|r| r.1)
            .unwrap_or(if here { applied } else { 0 })
            .max(if here { applied } else { 0 });
        let now = unix_ms();
        let mut nodes: Vec<serde_json::Value> = self
            .config
            .nodes
            .iter()
            .map(|n| {
                let mine = n.id == self.node_id;
                let r = reports.iter().find(|(id, ..)| *id == n.id);
                let seq = if mine { Some(applied) } else { r.map(|r| r.1) };
                json!({
                    "node": n.id,
                    "http": n.http.to_string(),
                    "leader": owner.as_deref() == Some(n.id.as_str()),
                    "applied_seq": seq,
                    "lag_records": seq.map(|s| leader_seq.saturating_sub(s)),
                    "reported_ms_ago": r.map(|r| now.saturating_sub(r.2)),
                })
            })
            .collect();
        nodes.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
        json!({
            "cluster": self.config.cluster,
            "node": self.node_id,
            "role": if leading { "leader" } else { "follower" },
            "redis_reachable": self.redis_reachable(),
            "leader": owner.as_ref().map(|n| json!({"node": n, "epoch": epoch})),
            "epoch": epoch,
            "applied_seq": applied,
            "nodes": nodes,
            // The sharded cluster's shape, kept for its clients: the
            // network is one partition.
            "shards": [{
                "shard": super::PARTITION, "owner": owner, "epoch": epoch,
                "owned_here": here, "applied_seq": applied,
            }],
        })
    }

    /// The cluster's lines of `/metrics`.
    pub fn render_metrics(&self, s: &mut String) {
        use std::fmt::Write;
        let st = &self.stats;
        let status = self.status();
        let owned = status.iter().filter(|x| x.0).count();
        let _ = writeln!(s, "# HELP holdfast_cluster_owned_shards 1 while this node leads (the network is one partition).\n# TYPE holdfast_cluster_owned_shards gauge\nholdfast_cluster_owned_shards {owned}");
        let _ = writeln!(s, "# HELP holdfast_cluster_shard_epoch The epoch of each shard's lease as last read.\n# TYPE holdfast_cluster_shard_epoch gauge");
        for (i, (_, _, epoch, _)) in status.iter().enumerate() {
            let _ = writeln!(s, "holdfast_cluster_shard_epoch{{shard=\"{i}\"}} {epoch}");
        }
        let _ = writeln!(s, "# HELP holdfast_cluster_shard_applied_seq The last sequence number of each shard this node holds.\n# TYPE holdfast_cluster_shard_applied_seq gauge");
        for (i, (_, _, _, applied)) in status.iter().enumerate() {
            let _ = writeln!(
                s,
                "holdfast_cluster_shard_applied_seq{{shard=\"{i}\"}} {applied}"
            );
        }
        for (name, help, v) in [
            (
                "holdfast_cluster_takeovers_total",
                "Times this node took the lead (its engine started).",
                &st.takeovers,
            ),
            (
                "holdfast_cluster_handovers_total",
                "Times this node gave up the lead (lease lost or a write refused).",
                &st.handovers,
            ),
            (
                "holdfast_cluster_resyncs_total",
                "Times this node's copy was rebuilt from the stream (a gap or a diverged tail).",
                &st.resyncs,
            ),
            (
                "holdfast_cluster_forwarded_total",
                "Requests this node forwarded to the leader.",
                &st.forwarded,
            ),
            (
                "holdfast_cluster_snapshots_published_total",
                "Snapshots this node published as the leader (the stream trimmed behind each).",
                &st.snapshots_published,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(s, "# HELP holdfast_cluster_replication_lag_seconds Age of a stream entry when this node's follower applied it.\n# TYPE holdfast_cluster_replication_lag_seconds histogram");
        st.lag
            .write(s, "holdfast_cluster_replication_lag_seconds", "");
    }

    /// Stops the manager; the engines of owned shards stop; leases lapse.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.manager.lock().take() {
            let _ = t.join();
        }
    }
}

/// This node's copy of one shard.
enum Copy {
    /// Not opened yet, or failed to (retried).
    Closed,
    Following(Box<Mirror>),
    Owning {
        engine: Engine,
        epoch: u64,
    },
}

struct Manager {
    node: Arc<ClusterNode>,
    keeper: LeaseKeeper,
    template: Template,
    dir: PathBuf,
    log: Option<ShardLog>,
    /// When `log` was (re)connected: shards are taken only a while after,
    /// once every live node has said how far its copies go.
    connected_at: Instant,
    copies: Vec<Copy>,
    last_owners: Instant,
    /// Per shard, the last snapshot this node published (or found
    /// published at or after it).
    published: Vec<u64>,
    last_snapshots: Instant,
    /// The follower's last poll found nothing: the next waits in Redis.
    idle: bool,
}

/// How often a node reads the owners and says how far its copies go.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// How often a node looks for snapshots of the shards it owns to publish.
const SNAPSHOTS_EVERY: Duration = Duration::from_secs(1);

impl Manager {
    fn run(&mut self) {
        let storage: Arc<dyn Storage> = Arc::new(RealStorage);
        while !self.node.stop.load(Ordering::Acquire) {
            let read = match self.round(&storage) {
                Ok(n) => n,
                Err(e) => {
                    // Redis unreachable, most often: connect again.
                    tracing::warn!(error = %e, "cluster: a round failed");
                    self.log = None;
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            // A follower with nothing to read waits in Redis next round
            // (`FOLLOW_WAIT`); a leader has only its lease and snapshots to
            // look after; without a connection, nothing was waited for.
            let waits = self.log.is_some() && self.node.owned(super::PARTITION).is_none();
            if read == 0 && !waits {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for s in 0..self.copies.len() {
            self.close(s as u32);
        }
        self.keeper.stop();
    }

    /// Logs a round's step that failed; a connection that failed is opened
    /// again by the next step that needs it.
    fn step_failed(&mut self, what: &str, step: Result<(), MirrorError>) {
        if let Err(e) = step {
            tracing::warn!(error = %e, "cluster: {what} failed");
            if matches!(e, MirrorError::Log(LogError::Redis(_))) {
                self.log = None;
            }
        }
    }

    fn log(&mut self) -> Result<&mut ShardLog, MirrorError> {
        connect(&mut self.log, &self.node.config, &mut self.connected_at)
    }

    /// One pass over the shards; answers the stream entries read.
    fn round(&mut self, storage: &Arc<dyn Storage>) -> Result<usize, MirrorError> {
        // First what needs no Redis: engines that may no longer write.
        self.give_up_lost();
        // Each step on its own: one that fails (said in the log) keeps
        // neither the copy from following nor a follower from taking over.
        let reporting = self.last_owners.elapsed() >= REPORT_EVERY;
        if reporting {
            self.last_owners = Instant::now();
            let step = self.refresh_owners().and_then(|()| self.report_copies());
            self.step_failed("reading the leader and reporting the copy", step);
        }
        if self.last_snapshots.elapsed() >= SNAPSHOTS_EVERY {
            self.last_snapshots = Instant::now();
            let step = self.publish_snapshots();
            self.step_failed("publishing a snapshot", step);
        }
        let mut read = 0;
        for s in 0..self.copies.len() as u32 {
            let lease = self.keeper.owns(s);
            if matches!(self.copies[s as usize], Copy::Closed) {
                let dir = self.dir.clone();
                // A copy is written without fsync: the stream holds every
                // record of it, a copy cut short by a power loss catches up
                // from there, and it is made durable when it is promoted
                // (`Mirror::promote`). Two fsyncs a batch on each follower
                // cost as much CPU as the leader's own work.
                let durability = Durability::None;
                let policy = self.template.engine.snapshot;
                let log = self.log()?;
                let mut m = Mirror::open(&dir, storage.clone(), durability, log, s, policy)?;
                m.start_feed(self.template.engine.feed_window)
                    .map_err(|e| JournalError::Io(e.to_string()))?;
                self.node.views[s as usize].write().caught_up = None;
                self.copies[s as usize] = Copy::Following(Box::new(m));
            }
            if let Copy::Following(m) = &mut self.copies[s as usize] {
                let m: &mut Mirror = m;
                let log = match &mut self.log {
                    Some(l) => l,
                    None => return Ok(read),
                };
                // Read to the stream's end (as it was when the read began)?
                let polled_at = Instant::now();
                let caught_up = match follow(s, m, log, &self.node.stats, reporting, self.idle) {
                    Ok(n) => {
                        read += n;
                        self.idle = n == 0;
                        n < FOLLOW_BATCH
                    }
                    Err(why @ (MirrorError::Resync(_) | MirrorError::Stream { .. })) => {
                        tracing::warn!(
                            shard = s,
                            %why,
                            "cluster: resyncing the shard from its stream"
                        );
                        self.node.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                        // Not read from nor fed from while it starts again
                        // from nothing.
                        let mut v = self.node.views[s as usize].write();
                        (v.caught_up, v.feed) = (None, None);
                        v.moved();
                        drop(v);
                        m.rebuild(log)?;
                        true
                    }
                    // The copy itself failed (its journal): it is opened
                    // again from its directory next round.
                    Err(e @ MirrorError::Journal(_)) => {
                        tracing::error!(shard = s, error = %e, "cluster: the shard's copy failed: opening it again");
                        self.close(s);
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                let mut v = self.node.views[s as usize].write();
                v.applied = m.last_seq();
                if v.feed.is_none() {
                    // Opened, or rebuilt: it feeds again.
                    v.feed = m.feed();
                    v.moved();
                }
                if caught_up {
                    v.caught_up = Some(polled_at);
                }
                drop(v);
                self.keeper.seen(s, m.epoch());
                if let Some(epoch) = lease {
                    self.take(s, epoch)?;
                }
            }
        }
        Ok(read)
    }

    /// Stops the engines whose lease ended or whose write was refused
    /// (a poisoned journal): the copy opens again as a mirror.
    fn give_up_lost(&mut self) {
        for s in 0..self.copies.len() as u32 {
            let (held, poisoned) = match &self.copies[s as usize] {
                Copy::Owning { epoch, engine } => (*epoch, engine.journal().is_poisoned()),
                _ => continue,
            };
            let lease = self.keeper.owns(s);
            if lease != Some(held) || poisoned {
                tracing::warn!(
                    shard = s,
                    held,
                    ?lease,
                    poisoned,
                    "cluster: giving up the shard"
                );
                self.node.stats.handovers.fetch_add(1, Ordering::Relaxed);
                self.close(s);
            }
        }
    }

    /// Whether this node, its copy at `applied` and the stream at
    /// `shipped`, must not take `shard` yet: while it settles after
    /// connecting, while a node not heard from may hold a longer copy, or
    /// when a node is heard with a longer one (the lease is then left to
    /// it).
    fn leave_to_others(
        &mut self,
        shard: u32,
        applied: u64,
        shipped: u64,
    ) -> Result<bool, MirrorError> {
        let log = connect(&mut self.log, &self.node.config, &mut self.connected_at)?;
        // The stream is the truth, unless Redis lost entries: then the
        // longest copy must take the shard, or what only it holds (writes
        // acknowledged before the loss) would be written over.
        let ttl = self.node.config.lease.ttl();
        let now = unix_ms();
        let heard: Vec<(String, u64)> = log
            .copies(shard)?
            .into_iter()
            .filter(|(node, _, at)| {
                *node != self.node.node_id && now.saturating_sub(*at) < 3 * ttl.as_millis() as u64
            })
            .map(|(node, seq, _)| (node, seq))
            .collect();
        let longest = heard.iter().map(|(node, seq)| (*seq, node.clone())).max();
        // Redis holds less than this copy (it lost entries, its reports
        // with them): every other node must say how far its copy goes
        // before this one takes the shard, or a longer copy not heard yet
        // would be written over (the test of `redis_down = "local"` lost
        // the outage's writes that way under load). A node silent for
        // three lease times after this one connected counts as down.
        let unheard = applied > shipped
            && self.connected_at.elapsed() < 3 * ttl
            && self
                .node
                .config
                .nodes
                .iter()
                .any(|n| n.id != self.node.node_id && !heard.iter().any(|(h, _)| *h == n.id));
        let settling = self.connected_at.elapsed() < 5 * REPORT_EVERY || unheard;
        let behind = longest.as_ref().filter(|(seq, _)| *seq > applied);
        if let Some((seq, node)) = behind {
            tracing::warn!(shard, applied, longest = seq, %node, "cluster: leaving the shard to the node with the longest copy");
            self.keeper.step_down(shard, 2 * ttl);
            log.release(shard, &self.node.holder)?;
        }
        Ok(settling || behind.is_some())
    }

    /// The engine of `shard` under the lease `epoch`, on the copy's state
    /// (`recovered`), shipping to the stream after `shipped`.
    fn open_engine(
        &self,
        shard: u32,
        epoch: u64,
        recovered: (Model, RecoveryReport),
        shipped: u64,
    ) -> Result<(Engine, Recovered), MirrorError> {
        let c = &self.node.config;
        let mut cfg = self.template.engine.clone();
        cfg.data_dir = self.dir.clone();
        let ship = StreamShip::new(
            &c.redis_url,
            &c.cluster,
            shard,
            self.node.fence(epoch),
            c.lease.ttl(),
        )
        .waiting_for(c.replication.wait_aof, c.replication.wait_replicas);
        let opened = Engine::open_with(
            &cfg,
            Arc::new(RealStorage),
            self.template.clock.clone(),
            self.node.metrics.clone(),
            Start {
                recovered: Some(recovered),
                replication: Some(Replication {
                    hook: Box::new(ship),
                    ack_after: c.replication.durability == ClusterDurability::Replicated,
                    batch_max: c.replication.batch_max,
                    shipped,
                }),
            },
        );
        opened.map_err(|e| {
            tracing::error!(shard, error = %e, "cluster: the engine did not start");
            // Closed: opened again as a mirror after the round's pause.
            MirrorError::Stream {
                shard,
                detail: format!("the engine did not start: {e}"),
            }
        })
    }

    /// Starts the engine of `shard` under the lease `epoch`: the mirror
    /// first reads the stream to its end (nobody else appends now).
    fn take(&mut self, shard: u32, epoch: u64) -> Result<(), MirrorError> {
        let i = shard as usize;
        let Copy::Following(mut m) = std::mem::replace(&mut self.copies[i], Copy::Closed) else {
            return Ok(());
        };
        let log = connect(&mut self.log, &self.node.config, &mut self.connected_at)?;
        if let Err(e) = m.catch_up(log) {
            self.copies[i] = Copy::Following(m);
            return Err(e);
        }
        let applied = m.last_seq();
        // What the stream holds: a copy ahead of it ships the rest first.
        let mut shipped = log.last_seq(shard)?;
        if self.leave_to_others(shard, applied, shipped)? {
            self.copies[i] = Copy::Following(m);
            return Ok(());
        }
        let log = connect(&mut self.log, &self.node.config, &mut self.connected_at)?;
        // Redis lost more than this copy's journal holds (it was cut
        // behind its snapshot): the stream starts again from that snapshot.
        if let Some((seq, bytes)) = m.newest_snapshot().filter(|(seq, _)| *seq > shipped) {
            if log.seed(shard, &self.node.fence(epoch), seq, &bytes)? {
                tracing::warn!(shard, seq, stream = shipped, "cluster: the stream lost what this copy holds as a snapshot: started again from it");
            }
            shipped = log.last_seq(shard)?;
        }
        // Not read from once its model moves into the engine.
        let mut v = self.node.views[i].write();
        (v.caught_up, v.feed) = (None, None);
        v.moved();
        drop(v);
        let recovered = m.promote()?;
        let (engine, recovered) = self.open_engine(shard, epoch, recovered, shipped)?;
        let state = (self.template.make_state)(engine.clone(), &recovered);
        let mut v = self.node.views[i].write();
        v.owned = Some(state);
        v.owned_epoch = epoch;
        v.moved();
        drop(v);
        self.copies[i] = Copy::Owning { engine, epoch };
        self.node.stats.takeovers.fetch_add(1, Ordering::Relaxed);
        tracing::info!(shard, epoch, applied, "cluster: serving the shard");
        Ok(())
    }

    /// Publishes the newest snapshot of each owned shard once the stream
    /// holds it (its engine's snapshotter took it; publishing trims the
    /// stream behind it, so a new node starts from it rather than from the
    /// whole history). Followed copies snapshot themselves (`Mirror`).
    fn publish_snapshots(&mut self) -> Result<(), MirrorError> {
        for (s, copy) in self.copies.iter_mut().enumerate() {
            let shard = s as u32;
            if let Copy::Owning { engine, epoch } = copy {
                // Read first what is cheap: whether there is a newer
                // snapshot the stream holds (a snapshot may be large).
                let stats = &engine.journal().stats;
                let newest = stats.snapshot_seq.load(Ordering::Acquire);
                let shipped = stats.shipped_seq.load(Ordering::Acquire);
                if newest <= self.published[s] || newest > shipped {
                    continue;
                }
                let Some((seq, bytes)) = engine.snapshots().and_then(|st| st.newest_encoded())
                else {
                    continue;
                };
                if seq <= self.published[s] || seq > shipped {
                    continue;
                }
                let log = connect(&mut self.log, &self.node.config, &mut self.connected_at)?;
                let Some(id) = log.id_of(shard, seq)? else {
                    continue; // not in the stream (trimmed): a later one will be
                };
                match log.publish_snapshot(shard, &self.node.fence(*epoch), seq, &id, &bytes) {
                    Ok(()) => {
                        tracing::info!(
                            shard,
                            seq,
                            bytes = bytes.len(),
                            "cluster: snapshot published, stream trimmed behind it"
                        );
                        self.node
                            .stats
                            .snapshots_published
                            .fetch_add(1, Ordering::Relaxed);
                        self.published[s] = seq;
                    }
                    // One at or after it is published already.
                    Err(LogError::Snapshot(_)) => self.published[s] = seq,
                    // The lease moved: the engine is given up next round.
                    Err(LogError::Stale { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Stops whatever copy of `shard` runs (an engine: no longer served; a
    /// mirror: its journal stopped); it is opened again next round.
    ///
    /// An engine given up cuts its copy back to what the stream took
    /// (`cut_back`): a record Redis refused was answered 503, and must
    /// never come back (were this copy to lead again, it would ship it).
    fn close(&mut self, shard: u32) {
        let i = shard as usize;
        let closing = std::mem::replace(&mut self.copies[i], Copy::Closed);
        let mut v = self.node.views[i].write();
        (v.owned, v.caught_up, v.feed) = (None, None, None);
        v.moved();
        drop(v);
        if let Copy::Owning { engine, .. } = closing {
            let shipped = cut_back(&engine, &self.dir);
            self.node.views[i].write().applied = shipped;
        }
    }

    /// Says in Redis how far this node's copy of each shard goes. An
    /// owner's: as far as the stream took it (in `replicated` mode a tail
    /// it holds alone was never acknowledged, and must not keep a standby
    /// from taking the shard when this node dies; in `local` mode the
    /// shipping trails by milliseconds). But in `local` mode, a journal
    /// the stream has been behind for a second (Redis was down: what it
    /// holds past the stream was acknowledged) is reported whole: this
    /// copy must be the one that takes the shard back.
    fn report_copies(&mut self) -> Result<(), MirrorError> {
        let seqs: Vec<u64> = self
            .copies
            .iter()
            .zip(&self.node.views)
            .map(|(c, v)| match c {
                Copy::Owning { engine, .. } => {
                    engine.journal().stats.shipped_seq.load(Ordering::Acquire)
                }
                _ => v.read().applied,
            })
            .collect();
        let id = self.node.node_id.clone();
        self.log()?.report_copies(&id, &seqs, unix_ms())?;
        Ok(())
    }

    fn refresh_owners(&mut self) -> Result<(), MirrorError> {
        let shards = self.copies.len() as u32;
        let log = self.log()?;
        let mut owners = HashMap::new();
        for s in 0..shards {
            owners.insert(s, (log.owner(s)?, log.copies(s)?));
        }
        for (s, (o, reports)) in owners {
            let o = o.map(|(holder, epoch)| {
                let node = holder.split('/').next().unwrap_or_default().to_string();
                (node, epoch)
            });
            let mut v = self.node.views[s as usize].write();
            v.owner = o;
            v.reports = reports;
        }
        Ok(())
    }
}

/// Stops a leader's engine for good and cuts its copy back to the records
/// the stream took: the journal halts (no batch is being written, none will
/// be), then loses its records past `shipped_seq`. A snapshot past them
/// (taken of records Redis never had) cannot be cut: the copy is dropped
/// whole and rebuilt from the stream. Answers the sequence kept.
fn cut_back(engine: &Engine, dir: &std::path::Path) -> u64 {
    let journal = engine.journal();
    journal.halt();
    // Its snapshotter stopped first: the newest snapshot is final too.
    engine.shutdown();
    let shipped = journal.stats.shipped_seq.load(Ordering::Acquire);
    let last = journal.stats.last_seq.load(Ordering::Acquire);
    let snapshot = engine
        .snapshots()
        .and_then(|s| s.newest_encoded())
        .map_or(0, |(seq, _)| seq);
    if last <= shipped {
        return shipped;
    }
    let storage = RealStorage;
    let result = if snapshot > shipped {
        ["journal", "snapshots"]
            .iter()
            .try_for_each(|sub| match std::fs::remove_dir_all(dir.join(sub)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            })
            .map(|()| 0)
    } else {
        crate::persistence::journal::truncate_after(&storage, &dir.join("journal"), shipped)
            .and_then(|cut| {
                // The movements and events of the records cut go with them.
                if let Some(store) = engine.snapshots() {
                    store.history().cut_after(shipped)?;
                    store.events().cut_after(shipped)?;
                }
                Ok(cut)
            })
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(cut) => tracing::warn!(
            shipped,
            last,
            cut,
            snapshot,
            "cluster: the copy cut back to what the stream took"
        ),
        Err(e) => tracing::error!(error = %e, "cluster: cutting the copy back failed"),
    }
    shipped
}

/// Applies what the stream has past the mirror; records the lag of the
/// last entry (its stream id is Redis's clock when appended).
///
/// `check` (a tenth of a second apart): the stream's last sequence number
/// is read before the poll; numbers only grow, so a stream that says it
/// has more than this copy confirms while the poll finds nothing after
/// the copy's position has lost that position (Redis started it again
/// from a snapshot, or a trim took what another owner wrote over a tail
/// this copy kept): the copy resyncs.
///
/// `wait`: the last poll found nothing, so this one waits in Redis for the
/// next entry (`FOLLOW_WAIT`). After entries, the next poll does not wait:
/// finding nothing then, the copy is known to hold the whole stream as of
/// that poll (freshness for reads, `ClusterNode::fresh_copy`).
fn follow(
    shard: u32,
    m: &mut Mirror,
    log: &mut ShardLog,
    stats: &ClusterStats,
    check: bool,
    wait: bool,
) -> Result<usize, MirrorError> {
    let stream = if check { log.last_seq(shard)? } else { 0 };
    let (before, confirmed) = (m.last_seq(), m.confirmed());
    let n = m.poll_waiting(log, FOLLOW_BATCH, wait.then_some(FOLLOW_WAIT))?;
    // Past what the stream was seen to hold as this copy does: a copy with
    // a tail the stream lacked is behind too once the stream has more than
    // the confirmed part and none of it can be read (trimmed).
    if n == 0 && stream > confirmed {
        return Err(MirrorError::Resync(Resync::Gap {
            expected: confirmed + 1,
            got: stream,
        }));
    }
    if m.last_seq() > before {
        if let Some(ms) = m
            .last_id()
            .split('-')
            .next()
            .and_then(|t| t.parse::<u64>().ok())
        {
            let lag = unix_ms().saturating_sub(ms);
            stats.lag.observe(lag * 1000);
        }
    }
    Ok(n)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The manager's connection to Redis, opened if need be (a field-level
/// borrow: the manager's other fields stay usable beside it).
fn connect<'a>(
    log: &'a mut Option<ShardLog>,
    c: &ClusterConfig,
    connected_at: &mut Instant,
) -> Result<&'a mut ShardLog, MirrorError> {
    if log.is_none() {
        *log = Some(ShardLog::open(
            &c.redis_url,
            &c.cluster,
            Duration::from_secs(2),
        )?);
        *connected_at = Instant::now();
    }
    log.as_mut().ok_or(MirrorError::Stream {
        shard: 0,
        detail: "no connection".into(),
    })
}
