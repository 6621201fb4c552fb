//! A deterministic simulation of the cluster protocol (issues 6 and 18), on
//! turmoil: three nodes, two clients and a fake stream server, every one a
//! host of one simulated network whose latency, message loss, partitions,
//! held (late) messages, crashes, frozen nodes (SIGSTOP past the lease, then
//! resumed with requests waiting) and a node whose clock runs slow come
//! from one seed. A failing seed prints
//! the command that replays it exactly, and the run's last events.
//!
//! What is simulated is the protocol of `src/cluster/`, rule for rule:
//! - the stream server (`Server`): the Lua scripts of `log.rs` (lease with
//!   a growing epoch above the counter, the stream's last entry, the
//!   published snapshot and the taker's floor; appends fenced by holder and
//!   epoch, a retry of entries already in a no-op, a gap refused; a
//!   snapshot published at an entry trims the stream behind it; a log
//!   seeded from a snapshot), and Redis's asynchronous
//!   replication: each write reaches the replica after a lag, `WAIT` answers
//!   once the replica has it, and a failover promotes the replica, losing
//!   the tail it did not have;
//! - a node (`node`): the lease keeper's rules (a lease lets its holder write
//!   until `lease_valid_for` after the request was sent, taken only after a
//!   TTL for another's shard, a taken lease waited for when `WAIT` is
//!   configured), the leader's (a reservation journaled locally, shipped
//!   fenced, acknowledged only once shipped and only within its lease's
//!   deadline, a snapshot published every ten; a refused shipment answered
//!   503, an unanswered one 504; either hands the lead back and cuts the
//!   copy back to what the stream took), the
//!   follower's (`log::Follower`, the real type: duplicates skipped; a gap,
//!   a diverged tail or a lost position rebuilt from the published
//!   snapshot; a copy placed against the stream when it starts, rebuilt if
//!   longer than the stream), and the
//!   taker's (catch up, leave the shard to a live node with a longer copy,
//!   seed a stream that lost what its copy holds as a snapshot, ship a tail
//!   the stream lost);
//! - clients reserving one hot SKU through any node, retrying an unknown
//!   outcome under the same id (as an Idempotency-Key).
//!
//! Checked on every run: never more held than the stock (on any node's
//! copy, at any time, and in acknowledgements); no acknowledged reservation
//! lost; no two writers in one epoch (over every append any incarnation of
//! the server accepted, lost ones included); no definite answer from a node
//! past its lease's deadline; no hold answered 503 ever in the stream; and,
//! after the faults end,
//! one owner serving and every copy equal to the stream. (Without WAIT, a
//! Redis failover may lose acknowledged holds: docs/cluster.md's window; that
//! mode's runs count such losses instead of failing on them.)
//!
//! `HOLDFAST_SIM_SEEDS` sets how many seeds a test runs (default 250 each;
//! 2,000 per mode in BENCHMARKS.md); `HOLDFAST_SIM_SEED=n` replays one with its
//! trace printed (`cargo test --test cluster_sim replay -- --nocapture`).

mod common;

use common::redis::Redis;
use holdfast::cluster::lease::lease_valid_for;
use holdfast::cluster::log::{Appended, Entry, Fence, Follower, LogError, Published, ShardLog};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;
use turmoil::net::UdpSocket;

const REDIS_PORT: u16 = 6379;
const NODE_PORT: u16 = 8080;
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const CLIENTS: [&str; 2] = ["c1", "c2"];
const TTL_MS: u64 = 1_500;
const RENEW_MS: u64 = 500;
const RPC_TIMEOUT: Duration = Duration::from_millis(60);
const REPORT_MS: u64 = 100;
/// Faults and clients run until then; the run ends at `END_MS`, healed.
const FAULTS_END_MS: u64 = 7_000;
const END_MS: u64 = 11_000;
const READ_BATCH: usize = 64;
/// An owner publishes a snapshot every this many records it ships.
const PUBLISH_EVERY: u64 = 10;

/// Milliseconds since the simulation started (every host's one clock).
fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

fn any_addr(port: u16) -> (IpAddr, u16) {
    (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

/// SplitMix64: the scenario's own randomness (the network's is turmoil's,
/// seeded from the same seed).
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the run allows and what it breaks on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    /// `WAIT 1` after every append and every lease taken.
    wait: bool,
    /// Redis failovers among the faults.
    failover: bool,
    bug: Bug,
}

/// A rule of the protocol left out, to show the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    None,
    /// The owner acknowledges before the stream has the reservation.
    AckBeforeShip,
    /// The server appends without checking the lease (no fencing).
    NoFence,
    /// A leader answers whenever its answer is ready, its lease run out or
    /// not (a zombie's answers).
    NoDeadline,
}

// ---------------------------------------------------------------- wire

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Msg<T> {
    id: u64,
    body: T,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
enum Req {
    Acquire {
        holder: String,
        floor: u64,
        wait: bool,
    },
    Renew {
        holder: String,
        epoch: u64,
    },
    Release {
        holder: String,
    },
    Append {
        holder: String,
        epoch: u64,
        first: u64,
        data: Vec<String>,
        wait: bool,
    },
    Read {
        after: u64,
        count: usize,
    },
    /// The newest entry at or before `last` (a copy placing itself).
    Place {
        last: u64,
    },
    LastSeq,
    Report {
        node: String,
        seq: u64,
    },
    Copies,
    /// The owner's state after `seq` (its records): published, and the
    /// stream trimmed behind it.
    Publish {
        holder: String,
        epoch: u64,
        seq: u64,
        data: Vec<String>,
    },
    /// A log that lost more than the taker holds as records starts again
    /// from its snapshot (`ShardLog::seed`).
    Seed {
        holder: String,
        epoch: u64,
        seq: u64,
        data: Vec<String>,
    },
    Snapshot,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
enum Resp {
    /// A lease taken (0: another holds it).
    Epoch(u64),
    Done(bool),
    Appended,
    Stale,
    Gap,
    /// A page, and the shard's last sequence number.
    Entries(Vec<SEntry>, u64),
    Snapshot(Option<Snap>),
    Placed {
        entry: Option<SEntry>,
        /// No entry, and no published snapshot: Redis lost everything.
        lost_everything: bool,
    },
    Seq(u64),
    Copies(Vec<(String, u64, u64)>),
    /// `WAIT` not satisfied: the replica lost what it waited for.
    WaitFailed,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct SEntry {
    id: u64,
    seq: u64,
    epoch: u64,
    /// The record: `{reservation}@{ms}`, the time its owner made it (a
    /// real event carries its expiry, so the same reservation made again
    /// by another owner is another record).
    data: String,
}

impl SEntry {
    /// The reservation it holds.
    fn reservation(&self) -> &str {
        reservation_of(&self.data)
    }

    fn entry(&self) -> Entry {
        Entry {
            id: format!("0-{}", self.id),
            seq: self.seq,
            epoch: self.epoch,
            data: self.data.clone().into_bytes(),
        }
    }
}

/// A published snapshot: the records up to `seq`, stream entry `id`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Snap {
    seq: u64,
    id: u64,
    epoch: u64,
    data: Vec<String>,
}

/// The reservation a record holds (`{reservation}@{ms}`).
fn reservation_of(data: &str) -> &str {
    data.split('@').next().unwrap_or_default()
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Reserved,
    SoldOut,
    NotOwner,
    /// Nothing was done (HTTP 503).
    Unavailable,
    /// It may or may not have been done (HTTP 504): the client asks again.
    Unknown,
}

// ------------------------------------------------------------ the server

#[derive(Clone, Debug)]
struct Lease {
    holder: String,
    epoch: u64,
    expires: u64,
}

/// What one Redis holds.
#[derive(Clone, Default)]
struct Store {
    lease: Option<Lease>,
    counter: u64,
    stream: Vec<SEntry>,
    /// The shard's last sequence number, and the stream's last id (both
    /// outlive a trim, as Redis's `seq` key and stream metadata do).
    seq: u64,
    last_id: u64,
    snapshot: Option<Snap>,
    copies: BTreeMap<String, (u64, u64)>,
}

enum Op {
    Lease(Option<Lease>),
    Counter(u64),
    Push(SEntry),
    Copy(String, u64, u64),
    Publish(Snap),
    Seed(Snap),
}

impl Store {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Lease(l) => self.lease = l.clone(),
            Op::Counter(c) => self.counter = *c,
            Op::Push(e) => {
                self.stream.push(e.clone());
                (self.seq, self.last_id) = (e.seq, e.id);
            }
            Op::Copy(n, s, at) => {
                self.copies.insert(n.clone(), (*s, *at));
            }
            Op::Publish(p) => {
                self.stream.retain(|e| e.id > p.id);
                self.snapshot = Some(p.clone());
            }
            Op::Seed(p) => {
                self.stream.clear();
                (self.seq, self.last_id) = (p.seq, 0);
                self.snapshot = Some(p.clone());
            }
        }
    }
    fn live(&self, now: u64) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| l.expires > now)
    }
    fn last_seq(&self) -> u64 {
        self.seq
    }

    fn snapshot_seq(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |p| p.seq)
    }

    /// Whether `holder` writes under `epoch` now (the scripts' fence).
    fn fenced(&self, now: u64, holder: &str, epoch: u64) -> bool {
        self.live(now)
            .is_some_and(|l| l.holder == holder && l.epoch == epoch)
    }
}

/// The fake Redis: a primary, its replica behind it, failovers.
struct Server {
    primary: Store,
    replica: Store,
    /// Writes the replica does not have yet, with when it gets them.
    backlog: VecDeque<(u64, Op)>,
    written: u64,
    replicated: u64,
    /// Bumped by a failover: a `WAIT` across it fails.
    generation: u64,
    rng: Rng,
    bug: Bug,
    /// Every append any incarnation accepted: epoch -> holders.
    writers: BTreeMap<u64, BTreeSet<String>>,
    failovers: u64,
}

impl Server {
    fn new(seed: u64, bug: Bug) -> Server {
        Server {
            primary: Store::default(),
            replica: Store::default(),
            backlog: VecDeque::new(),
            written: 0,
            replicated: 0,
            generation: 0,
            rng: Rng(seed ^ 0x5EED),
            bug,
            writers: BTreeMap::new(),
            failovers: 0,
        }
    }

    fn write(&mut self, now: u64, op: Op) {
        self.primary.apply(&op);
        let lag = self.rng.below(25);
        let due = self.backlog.back().map_or(0, |(d, _)| *d).max(now + lag);
        self.backlog.push_back((due, op));
        self.written += 1;
    }

    fn advance(&mut self, now: u64) {
        while self.backlog.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, op)) = self.backlog.pop_front() {
                self.replica.apply(&op);
                self.replicated += 1;
            }
        }
    }

    /// The replica becomes the primary: what it did not have is gone.
    fn failover(&mut self) {
        self.primary = self.replica.clone();
        self.backlog.clear();
        self.written = self.replicated;
        self.generation += 1;
        self.failovers += 1;
    }

    /// Answers `req`; `Some(offset)`: only once the replica has it.
    fn handle(&mut self, now: u64, req: Req) -> (Resp, Option<u64>) {
        self.advance(now);
        match req {
            Req::Acquire {
                holder,
                floor,
                wait,
            } => {
                if let Some(l) = self.primary.live(now).cloned() {
                    if l.holder != holder {
                        return (Resp::Epoch(0), None);
                    }
                    let renewed = Lease {
                        expires: now + TTL_MS,
                        ..l
                    };
                    let e = renewed.epoch;
                    self.write(now, Op::Lease(Some(renewed)));
                    return (Resp::Epoch(e), wait.then_some(self.written));
                }
                let last = self.primary.stream.last().map_or(0, |e| e.epoch);
                let snap = self.primary.snapshot.as_ref().map_or(0, |p| p.epoch);
                let e = self.primary.counter.max(floor).max(last).max(snap) + 1;
                self.write(now, Op::Counter(e));
                let lease = Lease {
                    holder,
                    epoch: e,
                    expires: now + TTL_MS,
                };
                self.write(now, Op::Lease(Some(lease)));
                (Resp::Epoch(e), wait.then_some(self.written))
            }
            Req::Renew { holder, epoch } => match self.primary.live(now).cloned() {
                Some(l) if l.holder == holder && l.epoch == epoch => {
                    self.write(
                        now,
                        Op::Lease(Some(Lease {
                            expires: now + TTL_MS,
                            ..l
                        })),
                    );
                    (Resp::Done(true), None)
                }
                _ => (Resp::Done(false), None),
            },
            Req::Release { holder } => {
                if self.primary.live(now).is_some_and(|l| l.holder == holder) {
                    self.write(now, Op::Lease(None));
                    return (Resp::Done(true), None);
                }
                (Resp::Done(false), None)
            }
            Req::Append {
                holder,
                epoch,
                first,
                data,
                wait,
            } => {
                if !self.primary.fenced(now, &holder, epoch) && self.bug != Bug::NoFence {
                    return (Resp::Stale, None);
                }
                let last = self.primary.last_seq();
                let n = data.len() as u64;
                if n == 0 || first + n - 1 <= last {
                    return (Resp::Appended, wait.then_some(self.written));
                }
                if first != last + 1 {
                    return (Resp::Gap, None);
                }
                // Redis's `XADD *`: the id is the clock's (ms, then a
                // count), past the stream's last; after a failover the
                // clock has moved on, so lost ids are not handed out again.
                let start = self.primary.last_id.max(now * 1_000);
                for (id, (i, d)) in (start + 1..).zip(data.into_iter().enumerate()) {
                    let e = SEntry {
                        id,
                        seq: first + i as u64,
                        epoch,
                        data: d,
                    };
                    self.write(now, Op::Push(e));
                }
                self.writers.entry(epoch).or_default().insert(holder);
                (Resp::Appended, wait.then_some(self.written))
            }
            Req::Read { after, count } => {
                let from = self.primary.stream.partition_point(|e| e.id <= after);
                let page = self.primary.stream[from..].iter().take(count).cloned();
                (Resp::Entries(page.collect(), self.primary.seq), None)
            }
            Req::Publish {
                holder,
                epoch,
                seq,
                data,
            } => {
                let at = self.primary.stream.iter().find(|e| e.seq == seq);
                match at.map(|e| e.id) {
                    Some(id)
                        if self.primary.fenced(now, &holder, epoch)
                            && seq > self.primary.snapshot_seq() =>
                    {
                        let snap = Snap {
                            seq,
                            id,
                            epoch,
                            data,
                        };
                        self.write(now, Op::Publish(snap));
                        (Resp::Done(true), None)
                    }
                    _ => (Resp::Done(false), None),
                }
            }
            Req::Seed {
                holder,
                epoch,
                seq,
                data,
            } => {
                if !self.primary.fenced(now, &holder, epoch) {
                    return (Resp::Stale, None);
                }
                if self.primary.seq.max(self.primary.snapshot_seq()) >= seq {
                    return (Resp::Done(false), None);
                }
                let snap = Snap {
                    seq,
                    id: 1,
                    epoch,
                    data,
                };
                self.write(now, Op::Seed(snap));
                (Resp::Done(true), None)
            }
            Req::Snapshot => (Resp::Snapshot(self.primary.snapshot.clone()), None),
            Req::Place { last } => {
                let s = &self.primary.stream;
                let entry = s.iter().rev().find(|e| e.seq <= last).cloned();
                (
                    Resp::Placed {
                        entry,
                        lost_everything: s.is_empty() && self.primary.snapshot.is_none(),
                    },
                    None,
                )
            }
            Req::LastSeq => (Resp::Seq(self.primary.last_seq()), None),
            Req::Report { node, seq } => {
                self.write(now, Op::Copy(node, seq, now));
                (Resp::Done(true), None)
            }
            Req::Copies => {
                let c = self.primary.copies.iter();
                let v = c.map(|(n, (s, at))| (n.clone(), *s, now.saturating_sub(*at)));
                (Resp::Copies(v.collect()), None)
            }
        }
    }
}

async fn server_host(server: Rc<RefCell<Server>>) -> turmoil::Result {
    let sock = UdpSocket::bind(any_addr(REDIS_PORT)).await?;
    // Answers held for a `WAIT`: (generation, offset, to, answer).
    let mut waiting: Vec<(u64, u64, std::net::SocketAddr, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let got = tokio::time::timeout(Duration::from_millis(1), sock.recv_from(&mut buf)).await;
        let now = now_ms();
        if let Ok(Ok((n, from))) = got {
            if let Ok(m) = serde_json::from_slice::<Msg<Req>>(&buf[..n]) {
                let (resp, wait) = server.borrow_mut().handle(now, m.body);
                let bytes = serde_json::to_vec(&Msg {
                    id: m.id,
                    body: resp,
                })?;
                match wait {
                    None => {
                        sock.send_to(&bytes, from).await?;
                    }
                    Some(offset) => {
                        let g = server.borrow().generation;
                        waiting.push((g, offset, from, bytes));
                    }
                }
                continue;
            }
        }
        let (generation, replicated) = {
            let mut s = server.borrow_mut();
            s.advance(now);
            (s.generation, s.replicated)
        };
        let mut keep = Vec::with_capacity(waiting.len());
        for (g, offset, to, bytes) in waiting.drain(..) {
            if g != generation {
                let id = serde_json::from_slice::<Msg<Resp>>(&bytes)?.id;
                let failed = serde_json::to_vec(&Msg {
                    id,
                    body: Resp::WaitFailed,
                })?;
                sock.send_to(&failed, to).await?;
            } else if replicated >= offset {
                sock.send_to(&bytes, to).await?;
            } else {
                keep.push((g, offset, to, bytes));
            }
        }
        waiting = keep;
    }
}

// ------------------------------------------------------------- the nodes

/// What a node keeps across its crashes (its journal), and what the
/// checks read.
#[derive(Default)]
struct NodeState {
    /// Records up to `base` held as a snapshot only (a copy started from a
    /// published one), and the journal after it: `copy[i]` holds sequence
    /// number `base + i + 1`.
    base: u64,
    base_data: Vec<String>,
    copy: Vec<SEntry>,
    incarnation: u64,
    /// The epoch it serves under, while it does.
    serving: Option<u64>,
}

impl NodeState {
    fn len(&self) -> u64 {
        self.base + self.copy.len() as u64
    }
    /// Every record, in order.
    fn records(&self) -> impl Iterator<Item = &String> {
        self.base_data
            .iter()
            .chain(self.copy.iter().map(|e| &e.data))
    }
    fn holds(&self, reservation: &str) -> bool {
        self.records().any(|d| reservation_of(d) == reservation)
    }
    /// Record `seq`, if the journal has it (not only the snapshot).
    fn record(&self, seq: u64) -> Option<&SEntry> {
        let i = seq.checked_sub(self.base + 1)?;
        self.copy.get(i as usize)
    }
    fn clear(&mut self) {
        (self.base, self.base_data, self.copy) = (0, Vec::new(), Vec::new());
    }
}

/// One run's shared record: what the checks need and the trace.
#[derive(Default)]
struct World {
    trace: Vec<String>,
    acked: BTreeSet<String>,
    acks: u64,
    sold_out: u64,
    unknown: u64,
    violations: Vec<String>,
    takeovers: u64,
    /// Acknowledged reservations the final stream does not hold.
    lost: usize,
    /// The records of the holds answered `Unavailable` (nothing done):
    /// none may ever be in the stream.
    refused: BTreeSet<String>,
    /// Nodes frozen now (the driver's `Freeze`): they run nothing.
    frozen: BTreeSet<&'static str>,
    /// Per node, how long its clock takes for a lease's time, in percent
    /// (100: true; one node of a run up to 130).
    clock_pct: Vec<u64>,
    freezes: u64,
}

impl World {
    fn log(&mut self, line: String) {
        self.trace.push(format!("{:>6} {line}", now_ms()));
    }
}

struct Rpc {
    sock: UdpSocket,
    next: u64,
}

impl Rpc {
    async fn call(&mut self, body: Req) -> Option<Resp> {
        self.next += 1;
        let id = self.next;
        let bytes = serde_json::to_vec(&Msg { id, body }).ok()?;
        let to = (turmoil::lookup("redis"), REDIS_PORT);
        self.sock.send_to(&bytes, to).await.ok()?;
        let deadline = tokio::time::Instant::now() + RPC_TIMEOUT;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let got = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await;
            let (n, _) = got.ok()?.ok()?;
            if let Ok(m) = serde_json::from_slice::<Msg<Resp>>(&buf[..n]) {
                if m.id == id {
                    return Some(m.body);
                }
            }
        }
    }
}

enum Role {
    /// Its copy not yet checked against the stream.
    Placing,
    Following(Follower),
    Owning {
        epoch: u64,
        shipped: u64,
    },
}

struct Node {
    name: &'static str,
    index: usize,
    holder: String,
    mode: Mode,
    stock: usize,
    state: Rc<RefCell<NodeState>>,
    world: Rc<RefCell<World>>,
    rpc: Rpc,
    started: u64,
    lease: Option<(u64, u64)>,
    back_off_until: u64,
    floor: u64,
    /// The last snapshot it published as an owner.
    published: u64,
    role: Role,
}

impl Node {
    fn log(&self, line: String) {
        self.world
            .borrow_mut()
            .log(format!("{} {line}", self.holder));
    }

    fn owns(&self, now: u64) -> Option<u64> {
        self.lease.filter(|(_, until)| now < *until).map(|(e, _)| e)
    }

    fn copy_len(&self) -> u64 {
        self.state.borrow().len()
    }

    /// The lease keeper's round.
    async fn leases(&mut self) {
        let sent = now_ms();
        // This node's clock may run slow, past the margin the lease leaves
        // for drift (`lease_valid_for`): it then believes in its lease
        // after Redis let it go, and only the fence stops its writes.
        let valid = lease_valid_for(Duration::from_millis(TTL_MS)).as_millis() as u64
            * self.world.borrow().clock_pct[self.index]
            / 100;
        if let Some((epoch, _)) = self.lease {
            let holder = self.holder.clone();
            match self.rpc.call(Req::Renew { holder, epoch }).await {
                Some(Resp::Done(true)) => self.lease = Some((epoch, sent + valid)),
                Some(_) => {
                    self.log(format!("lease lost at epoch {epoch}"));
                    self.lease = None;
                }
                None => {} // held until its time runs out, no longer
            }
            return;
        }
        let mine = self.index == 0;
        if sent < self.back_off_until || (!mine && sent < self.started + TTL_MS) {
            return;
        }
        let req = Req::Acquire {
            holder: self.holder.clone(),
            floor: self.floor,
            wait: self.mode.wait,
        };
        if let Some(Resp::Epoch(e)) = self.rpc.call(req).await {
            if e > 0 {
                self.lease = Some((e, sent + valid));
                self.floor = self.floor.max(e);
            }
        }
    }

    /// Hands the shard back (a refused write, or a longer copy elsewhere).
    async fn step_down(&mut self, why: &str) {
        self.log(format!("steps down: {why}"));
        self.lease = None;
        self.back_off_until = now_ms() + 2 * TTL_MS;
        self.role = Role::Placing;
        self.state.borrow_mut().serving = None;
        let holder = self.holder.clone();
        let _ = self.rpc.call(Req::Release { holder }).await;
    }

    /// `cut_back` of node.rs: a leader that gives up the lead keeps only
    /// what the stream took (`shipped`); a record Redis refused must never
    /// come back.
    fn cut_back(&mut self, shipped: u64) {
        let mut st = self.state.borrow_mut();
        if st.base > shipped {
            drop(st);
            self.wipe();
            return;
        }
        let keep = (shipped - st.base) as usize;
        if st.copy.len() > keep {
            let cut = st.copy.len() - keep;
            st.copy.truncate(keep);
            drop(st);
            self.log(format!("cuts its copy back to {shipped} ({cut} records)"));
        }
    }

    fn wipe(&mut self) {
        self.log(format!("wipes its copy of {}", self.copy_len()));
        self.state.borrow_mut().clear();
    }

    /// `Mirror::place`: the stream's newest entry at or before this copy's
    /// last must be the one this copy holds, or the copy starts again.
    async fn place(&mut self) {
        let last = self.copy_len();
        let Some(Resp::Placed {
            entry,
            lost_everything,
        }) = self.rpc.call(Req::Place { last }).await
        else {
            return;
        };
        let follow = match entry {
            Some(e) => {
                // The record, as the real copy compares its journal's
                // bytes (an owner's own entries carry no stream id).
                let same = self.state.borrow().record(e.seq).map(|x| &x.data) == Some(&e.data);
                // The stream must end at this copy's last record: a longer
                // copy holds what the stream never took.
                let whole = e.seq == last;
                if same && whole {
                    self.log(format!("placed at {last} (stream entry {} agrees)", e.seq));
                    Follower::placed(last, Some(&e.entry()))
                } else {
                    self.wipe();
                    Follower::default()
                }
            }
            None if lost_everything => Follower::placed(last, None),
            None => {
                self.wipe();
                Follower::default()
            }
        };
        self.role = Role::Following(follow);
    }

    /// Reads and applies what follows: how many entries it read (0 after a
    /// resync), None if the server did not answer.
    async fn poll(&mut self, follow: &mut Follower) -> Option<usize> {
        let after = follow.after.trim_start_matches("0-").parse().unwrap_or(0);
        let Some(Resp::Entries(page, stream)) = self
            .rpc
            .call(Req::Read {
                after,
                count: READ_BATCH,
            })
            .await
        else {
            return None;
        };
        // `follow` in node.rs: the stream says more than this copy has and
        // nothing follows its position: the position was lost.
        if page.is_empty() && stream > follow.confirmed {
            self.resync(follow, "position lost").await;
            return Some(0);
        }
        for e in &page {
            match follow.accept(&e.entry()) {
                Ok(true) => {
                    self.floor = self.floor.max(e.epoch);
                    self.push(e.clone());
                }
                Ok(false) => {}
                Err(why) => {
                    self.resync(follow, &format!("{why:?}")).await;
                    return Some(0);
                }
            }
        }
        Some(page.len())
    }

    /// `Mirror::rebuild`: from nothing, or from the published snapshot.
    async fn resync(&mut self, follow: &mut Follower, why: &str) {
        self.log(format!("resync: {why}"));
        self.wipe();
        *follow = Follower::default();
        if let Some(Resp::Snapshot(Some(p))) = self.rpc.call(Req::Snapshot).await {
            self.log(format!("starts from the snapshot at {}", p.seq));
            *follow = Follower::at(&Published {
                seq: p.seq,
                id: format!("0-{}", p.id),
                epoch: p.epoch,
                data: Vec::new(),
            });
            self.floor = self.floor.max(p.epoch);
            let mut st = self.state.borrow_mut();
            (st.base, st.base_data) = (p.seq, p.data);
            self.check_stock(&st);
        }
    }

    /// Never more held than the stock, on this copy.
    fn check_stock(&self, s: &NodeState) {
        let held = s.base_data.len() + s.copy.len();
        if held > self.stock {
            let v = format!("{}: oversold, {held} held of {}", self.holder, self.stock);
            self.world.borrow_mut().violations.push(v);
        }
    }

    /// An entry into the copy: never more held than the stock.
    fn push(&self, e: SEntry) {
        let mut s = self.state.borrow_mut();
        if e.seq != s.len() + 1 {
            let v = format!("{}: entry {} after {}", self.holder, e.seq, s.len());
            self.world.borrow_mut().violations.push(v);
        }
        if s.holds(e.reservation()) {
            let v = format!("{}: {} held twice", self.holder, e.reservation());
            self.world.borrow_mut().violations.push(v);
        }
        s.copy.push(e);
        self.check_stock(&s);
    }

    /// `Manager::take`: catch up, leave the shard to a longer copy, serve.
    async fn take(&mut self, epoch: u64, mut follow: Follower) {
        loop {
            match self.poll(&mut follow).await {
                None => {
                    self.role = Role::Following(follow);
                    return;
                }
                Some(0) => break,
                Some(_) => {}
            }
        }
        let (Some(Resp::Seq(stream)), Some(Resp::Copies(copies))) = (
            self.rpc.call(Req::LastSeq).await,
            self.rpc.call(Req::Copies).await,
        ) else {
            self.role = Role::Following(follow);
            return;
        };
        let mine = self.copy_len();
        let longest = copies
            .into_iter()
            .filter(|(n, _, age)| n != self.name && *age < 3 * TTL_MS)
            .map(|(n, s, _)| (s, n))
            .max();
        if let Some((seq, node)) = longest.filter(|(s, _)| *s > mine) {
            self.step_down(&format!("{node} has a longer copy ({seq} > {mine})"))
                .await;
            return;
        }
        if stream > mine {
            self.role = Role::Following(follow); // written meanwhile: not caught up
            return;
        }
        let (base, base_data) = {
            let st = self.state.borrow();
            (st.base, st.base_data.clone())
        };
        let mut stream = stream;
        if base > stream {
            // The stream lost what this copy holds as a snapshot only.
            let req = Req::Seed {
                holder: self.holder.clone(),
                epoch,
                seq: base,
                data: base_data,
            };
            match self.rpc.call(req).await {
                Some(Resp::Done(_)) => {}
                _ => {
                    self.role = Role::Following(follow);
                    return;
                }
            }
            self.log(format!("seeds the stream from its snapshot at {base}"));
            stream = base;
        }
        let shipped = stream.min(mine);
        self.log(format!(
            "serves at epoch {epoch}: copy {mine}, stream {stream}"
        ));
        self.world.borrow_mut().takeovers += 1;
        self.state.borrow_mut().serving = Some(epoch);
        self.role = Role::Owning { epoch, shipped };
    }

    /// Holds what it can of `batch`, ships, and answers each. An answer
    /// ready after the lease's deadline is not given (`Front::lead`): a
    /// hold made is `Unknown` (it is the cluster's; asked again, the next
    /// leader answers it), anything else `Unavailable` (nothing done).
    async fn serve(
        &mut self,
        epoch: u64,
        shipped: u64,
        batch: Vec<(u64, std::net::SocketAddr, String)>,
    ) -> Vec<(u64, std::net::SocketAddr, Answer)> {
        let mut made = Vec::new();
        for (_, _, id) in &batch {
            let (held, len) = {
                let s = self.state.borrow();
                (s.holds(id), s.len())
            };
            let count = self.state.borrow().records().count();
            if !held && count < self.stock {
                let e = SEntry {
                    id: 0,
                    seq: len + 1,
                    epoch,
                    data: format!("{id}@{}", now_ms()),
                };
                made.push(e.data.clone());
                self.push(e);
            }
        }
        let answer = |node: &Node, id: &str| {
            if node.state.borrow().holds(id) {
                Answer::Reserved
            } else {
                Answer::SoldOut
            }
        };
        if self.mode.bug == Bug::AckBeforeShip {
            let early: Vec<_> = batch
                .iter()
                .map(|(r, f, id)| (*r, *f, answer(self, id)))
                .collect();
            self.ship(epoch, shipped).await;
            return early;
        }
        let all = |batch: Vec<(u64, std::net::SocketAddr, String)>, a: Answer| {
            batch
                .into_iter()
                .map(|(r, f, _)| (r, f, a))
                .collect::<Vec<_>>()
        };
        match self.ship(epoch, shipped).await {
            Shipped::Yes => {}
            Shipped::Refused => {
                // Nothing of it is the cluster's: answered 503.
                self.world.borrow_mut().refused.extend(made);
                return all(batch, Answer::Unavailable);
            }
            Shipped::Unknown => return all(batch, Answer::Unknown),
        }
        let late = self.owns(now_ms()) != Some(epoch) && self.mode.bug != Bug::NoDeadline;
        batch
            .iter()
            .map(|(r, f, id)| {
                let a = match answer(self, id) {
                    Answer::Reserved if late => Answer::Unknown,
                    _ if late => Answer::Unavailable,
                    a => a,
                };
                (*r, *f, a)
            })
            .collect()
    }

    /// Ships the copy's tail after `shipped`; failing, the lead is given
    /// up (the journal's poisoning) and the copy cut back to what the
    /// stream took.
    async fn ship(&mut self, epoch: u64, shipped: u64) -> Shipped {
        let tail: Vec<String> = {
            let s = self.state.borrow();
            let from = (shipped.saturating_sub(s.base) as usize).min(s.copy.len());
            s.copy[from..].iter().map(|e| e.data.clone()).collect()
        };
        if tail.is_empty() {
            return Shipped::Yes;
        }
        let last = shipped + tail.len() as u64;
        let req = Req::Append {
            holder: self.holder.clone(),
            epoch,
            first: shipped + 1,
            data: tail,
            wait: self.mode.wait,
        };
        let got = self.rpc.call(req).await;
        let outcome = match &got {
            Some(Resp::Appended) => Shipped::Yes,
            // Refused by the script: not in the stream.
            Some(Resp::Stale | Resp::Gap) => Shipped::Refused,
            // No answer, or appended and not waited for: maybe in it.
            _ => Shipped::Unknown,
        };
        if outcome != Shipped::Yes {
            self.cut_back(shipped);
            self.step_down(&format!("shipment failed: {got:?}")).await;
            return outcome;
        }
        self.role = Role::Owning {
            epoch,
            shipped: last,
        };
        if last >= self.published + PUBLISH_EVERY {
            // The engine's snapshot, published (the stream trimmed behind
            // it).
            let data: Vec<String> = self.state.borrow().records().cloned().collect();
            let req = Req::Publish {
                holder: self.holder.clone(),
                epoch,
                seq: last,
                data,
            };
            if let Some(Resp::Done(true)) = self.rpc.call(req).await {
                self.published = last;
            }
        }
        Shipped::Yes
    }
}

/// What became of a shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shipped {
    Yes,
    /// Refused by the fence or a gap: not in the stream.
    Refused,
    /// Its answer lost (or its WAIT failed): maybe in the stream.
    Unknown,
}

async fn node_host(
    name: &'static str,
    index: usize,
    mode: Mode,
    stock: usize,
    state: Rc<RefCell<NodeState>>,
    world: Rc<RefCell<World>>,
) -> turmoil::Result {
    let holder = {
        let mut s = state.borrow_mut();
        s.incarnation += 1;
        s.serving = None;
        format!("{name}/{}", s.incarnation)
    };
    let floor = state.borrow().copy.last().map_or(0, |e| e.epoch);
    let published = state.borrow().base;
    let inbox = UdpSocket::bind(any_addr(NODE_PORT)).await?;
    let rpc = Rpc {
        sock: UdpSocket::bind(any_addr(9000)).await?,
        next: 0,
    };
    let mut node = Node {
        name,
        index,
        holder,
        mode,
        stock,
        state,
        world,
        rpc,
        started: now_ms(),
        lease: None,
        back_off_until: 0,
        floor,
        published,
        role: Role::Placing,
    };
    node.log("starts".into());
    let (mut next_lease, mut next_report) = (0, 0);
    let mut buf = vec![0u8; 1 << 16];
    // Just resumed from a freeze: the requests that waited are served
    // before anything else runs (as a resumed process's HTTP threads may
    // answer before its lease keeper has looked).
    let mut thawed = false;
    loop {
        if node.world.borrow().frozen.contains(name) {
            thawed = true;
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let now = now_ms();
        if now >= next_lease && !thawed {
            next_lease = now + RENEW_MS;
            node.leases().await;
        }
        let owns = node.owns(now_ms());
        match std::mem::replace(&mut node.role, Role::Placing) {
            Role::Owning { epoch, shipped } if owns == Some(epoch) || thawed => {
                node.role = Role::Owning { epoch, shipped };
            }
            Role::Owning { epoch, shipped } => {
                node.log(format!("no longer owns epoch {epoch}"));
                node.state.borrow_mut().serving = None;
                node.cut_back(shipped);
            }
            Role::Placing => node.place().await,
            Role::Following(f) => match owns {
                Some(epoch) => node.take(epoch, f).await,
                None => {
                    let mut f = f;
                    node.poll(&mut f).await;
                    node.role = Role::Following(f);
                }
            },
        }
        if now >= next_report {
            next_report = now + REPORT_MS;
            let seq = match node.role {
                Role::Owning { shipped, .. } => shipped,
                _ => node.copy_len(),
            };
            let _ = node
                .rpc
                .call(Req::Report {
                    node: name.into(),
                    seq,
                })
                .await;
        }
        let mut batch = Vec::new();
        while batch.len() < 16 {
            let Ok((n, from)) = inbox.try_recv_from(&mut buf) else {
                break;
            };
            if let Ok(m) = serde_json::from_slice::<Msg<String>>(&buf[..n]) {
                batch.push((m.id, from, m.body));
            }
        }
        if !batch.is_empty() {
            let zombie = node.mode.bug == Bug::NoDeadline;
            let answers = match node.role {
                Role::Owning { epoch, shipped } if node.owns(now_ms()) == Some(epoch) || zombie => {
                    node.serve(epoch, shipped, batch).await
                }
                _ => batch
                    .into_iter()
                    .map(|(r, f, _)| (r, f, Answer::NotOwner))
                    .collect(),
            };
            for (id, to, body) in answers {
                // A definite answer only from a leader within its lease's
                // deadline (on its clock).
                let definite = matches!(body, Answer::Reserved | Answer::SoldOut);
                if definite && node.owns(now_ms()).is_none() {
                    let v = format!(
                        "{}: answered {body:?} past its lease's deadline",
                        node.holder
                    );
                    node.world.borrow_mut().violations.push(v);
                }
                let bytes = serde_json::to_vec(&Msg { id, body })?;
                inbox.send_to(&bytes, to).await?;
            }
        }
        thawed = false;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ----------------------------------------------------------- the clients

async fn client_host(name: &'static str, seed: u64, world: Rc<RefCell<World>>) -> turmoil::Result {
    let sock = UdpSocket::bind(any_addr(7000)).await?;
    let mut rng = Rng(seed ^ (u64::from(name.as_bytes()[1]) << 8));
    let mut buf = vec![0u8; 1 << 16];
    let mut k = 0u64;
    let mut msg = 0u64;
    while now_ms() < FAULTS_END_MS {
        k += 1;
        let rid = format!("{name}-{k}");
        let mut outcome = None;
        for _ in 0..8 {
            msg += 1;
            let node = NODES[rng.below(NODES.len() as u64) as usize];
            let bytes = serde_json::to_vec(&Msg {
                id: msg,
                body: rid.clone(),
            })?;
            sock.send_to(&bytes, (turmoil::lookup(node), NODE_PORT))
                .await?;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
            let answer = loop {
                let got = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
                let Ok(Ok((n, _))) = got else { break None };
                if let Ok(m) = serde_json::from_slice::<Msg<Answer>>(&buf[..n]) {
                    if m.id == msg {
                        break Some(m.body);
                    }
                }
            };
            match answer {
                Some(a @ (Answer::Reserved | Answer::SoldOut)) => {
                    outcome = Some(a);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        {
            let mut w = world.borrow_mut();
            match outcome {
                Some(Answer::Reserved) => {
                    w.acks += 1;
                    w.acked.insert(rid);
                }
                Some(_) => w.sold_out += 1,
                None => w.unknown += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ------------------------------------------------------------ the driver

#[derive(Debug, Clone)]
enum Fault {
    Crash(&'static str),
    Restart(&'static str),
    Partition(&'static str, &'static str),
    Repair(&'static str, &'static str),
    Hold(&'static str, &'static str),
    Release(&'static str, &'static str),
    Failover,
    /// The node runs nothing (SIGSTOP), then resumes (SIGCONT).
    Freeze(&'static str),
    Thaw(&'static str),
}

fn schedule(rng: &mut Rng, mode: Mode) -> Vec<(u64, Fault)> {
    let mut v = Vec::new();
    let faults = 4 + rng.below(7);
    for _ in 0..faults {
        let at = 500 + rng.below(FAULTS_END_MS - 1_500);
        let lasts = 200 + rng.below(3_000);
        let node = NODES[rng.below(3) as usize];
        let end = (at + lasts).min(FAULTS_END_MS);
        match rng.below(if mode.failover { 7 } else { 6 }) {
            0 | 1 => {
                v.push((at, Fault::Crash(node)));
                v.push((end, Fault::Restart(node)));
            }
            5 => {
                // Frozen past its lease, mostly (a leader then resumes
                // with requests waiting).
                let thaw = at + TTL_MS / 2 + rng.below(3 * TTL_MS);
                v.push((at, Fault::Freeze(node)));
                v.push((thaw.min(FAULTS_END_MS), Fault::Thaw(node)));
            }
            2 => {
                v.push((at, Fault::Partition(node, "redis")));
                v.push((end, Fault::Repair(node, "redis")));
            }
            3 => {
                v.push((at, Fault::Hold(node, "redis")));
                v.push((
                    at + rng.below(2 * TTL_MS).min(end - at),
                    Fault::Release(node, "redis"),
                ));
            }
            4 => {
                let client = CLIENTS[rng.below(2) as usize];
                v.push((at, Fault::Partition(node, client)));
                v.push((end, Fault::Repair(node, client)));
            }
            _ => v.push((at, Fault::Failover)),
        }
    }
    v.sort_by_key(|(t, _)| *t);
    v
}

struct Outcome {
    world: World,
    digest: u64,
}

fn run(seed: u64, mode: Mode) -> Outcome {
    let mut rng = Rng(seed);
    let stock = 20 + rng.below(150) as usize;
    let faults = schedule(&mut rng, mode);
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .simulation_duration(Duration::from_millis(END_MS + 1_000))
        .min_message_latency(Duration::from_millis(0))
        .max_message_latency(Duration::from_millis(4))
        .fail_rate(0.0005)
        .repair_rate(0.2);
    let mut sim = b.build();
    let mut clock_pct = vec![100; NODES.len()];
    clock_pct[rng.below(NODES.len() as u64) as usize] = 100 + rng.below(31);
    let world = Rc::new(RefCell::new(World {
        clock_pct,
        ..World::default()
    }));
    let server = Rc::new(RefCell::new(Server::new(seed, mode.bug)));
    let states: Vec<Rc<RefCell<NodeState>>> = NODES
        .iter()
        .map(|_| Rc::new(RefCell::new(NodeState::default())))
        .collect();
    let s = server.clone();
    sim.host("redis", move || server_host(s.clone()));
    for (i, name) in NODES.iter().enumerate() {
        let (st, w) = (states[i].clone(), world.clone());
        sim.host(*name, move || {
            node_host(name, i, mode, stock, st.clone(), w.clone())
        });
    }
    for name in CLIENTS {
        let w = world.clone();
        sim.host(name, move || client_host(name, seed, w.clone()));
    }
    let pct = world.borrow().clock_pct.clone();
    world.borrow_mut().trace.push(format!(
        "seed {seed} {mode:?} stock {stock} clocks {pct:?} faults {faults:?}"
    ));
    let mut faults = VecDeque::from(faults);
    let mut down: BTreeSet<&str> = BTreeSet::new();
    let mut healed = false;
    loop {
        let t = sim.elapsed().as_millis() as u64;
        while faults.front().is_some_and(|(at, _)| *at <= t) {
            let Some((_, f)) = faults.pop_front() else {
                break;
            };
            world.borrow_mut().trace.push(format!("{t:>6} fault {f:?}"));
            match f {
                Fault::Crash(n) if down.insert(n) => sim.crash(n),
                Fault::Restart(n) if down.remove(n) => sim.bounce(n),
                Fault::Partition(a, b) => sim.partition(a, b),
                Fault::Repair(a, b) => sim.repair(a, b),
                Fault::Hold(a, b) => sim.hold(a, b),
                Fault::Release(a, b) => sim.release(a, b),
                Fault::Failover => server.borrow_mut().failover(),
                Fault::Freeze(n) => {
                    let mut w = world.borrow_mut();
                    w.frozen.insert(n);
                    w.freezes += 1;
                }
                Fault::Thaw(n) => {
                    world.borrow_mut().frozen.remove(n);
                }
                _ => {}
            }
        }
        if !healed && t >= FAULTS_END_MS {
            healed = true;
            sim.set_fail_rate(0.0);
            for n in std::mem::take(&mut down) {
                sim.bounce(n);
            }
            for n in NODES {
                sim.release(n, "redis");
                sim.repair(n, "redis");
            }
            world.borrow_mut().frozen.clear();
            world.borrow_mut().trace.push(format!("{t:>6} healed"));
        }
        if t >= END_MS {
            break;
        }
        if let Err(e) = sim.step() {
            world
                .borrow_mut()
                .violations
                .push(format!("the simulation failed: {e}"));
            break;
        }
    }
    drop(sim);
    let mut w = Rc::try_unwrap(world)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    check(&mut w, mode, stock, &server.borrow(), &states);
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    for line in &w.trace {
        for b in line.bytes() {
            digest = (digest ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    Outcome { world: w, digest }
}

fn check(
    w: &mut World,
    mode: Mode,
    stock: usize,
    server: &Server,
    states: &[Rc<RefCell<NodeState>>],
) {
    // What the log holds: its snapshot's records, then the stream's after.
    let p = &server.primary;
    let snap_seq = p.snapshot_seq();
    let stream: Vec<&String> = p
        .snapshot
        .iter()
        .flat_map(|s| s.data.iter())
        .chain(
            p.stream
                .iter()
                .filter(|e| e.seq > snap_seq)
                .map(|e| &e.data),
        )
        .collect();
    if stream.len() as u64 != p.seq {
        w.violations.push(format!(
            "the log holds {} records under {} sequence numbers",
            stream.len(),
            p.seq
        ));
    }
    let held: BTreeSet<&str> = stream.iter().map(|d| reservation_of(d)).collect();
    let came_back: Vec<&&String> = stream.iter().filter(|d| w.refused.contains(**d)).collect();
    if !came_back.is_empty() {
        w.violations.push(format!(
            "holds answered 503 are in the stream: {came_back:?}"
        ));
    }
    if held.len() != stream.len() || stream.len() > stock {
        w.violations.push(format!(
            "the stream holds {} ({} distinct) of {stock}",
            stream.len(),
            held.len()
        ));
    }
    let lost: Vec<String> = w
        .acked
        .iter()
        .filter(|a| !held.contains(a.as_str()))
        .cloned()
        .collect();
    w.lost = lost.len();
    // Lost acknowledgements (and their units sold again) are the
    // documented window of `replicated` without WAIT when Redis fails
    // over; every other mode loses none.
    if mode.wait || !mode.failover || mode.bug != Bug::None {
        if w.acked.len() > stock {
            w.violations.push(format!(
                "oversold: {} acknowledged of {stock}",
                w.acked.len()
            ));
        }
        if !lost.is_empty() {
            w.violations.push(format!(
                "{} acknowledged reservations lost: {lost:?}",
                lost.len()
            ));
        }
        for (epoch, holders) in &server.writers {
            if holders.len() > 1 {
                w.violations
                    .push(format!("two writers in epoch {epoch}: {holders:?}"));
            }
        }
    }
    let serving: Vec<u64> = states.iter().filter_map(|s| s.borrow().serving).collect();
    if serving.len() != 1 {
        w.violations.push(format!(
            "after healing, {} nodes serve the shard",
            serving.len()
        ));
    }
    for (i, s) in states.iter().enumerate() {
        let st = s.borrow();
        let copy: Vec<&String> = st.records().collect();
        let differ = copy.iter().zip(&stream).position(|(a, b)| a != b);
        if copy.len() < stream.len() || differ.is_some() {
            w.violations.push(format!(
                "{}'s copy ({}) is not the stream ({}): they differ from sequence {:?}",
                NODES[i],
                copy.len(),
                stream.len(),
                differ.map(|d| d + 1)
            ));
        }
    }
}

fn seeds() -> u64 {
    std::env::var("HOLDFAST_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250)
}

/// Runs `count` seeds from `first`; panics with the first failing seed.
fn sweep(first: u64, count: u64, mode: Mode) {
    let started = std::time::Instant::now();
    let (mut acks, mut takeovers, mut unknown, mut sold_out, mut freezes) = (0, 0, 0, 0, 0);
    for seed in first..first + count {
        let o = run(seed, mode);
        if !o.world.violations.is_empty() {
            let tail = o.world.trace.len().saturating_sub(80);
            panic!(
                "seed {seed} ({mode:?}): {:?}\nreplay: HOLDFAST_SIM_SEED={seed} HOLDFAST_SIM_MODE={} cargo test --test cluster_sim replay -- --nocapture\n{}",
                o.world.violations,
                mode_name(mode),
                o.world.trace[tail..].join("\n")
            );
        }
        acks += o.world.acks;
        takeovers += o.world.takeovers;
        unknown += o.world.unknown;
        sold_out += o.world.sold_out;
        freezes += o.world.freezes;
    }
    println!(
        "{count} seeds from {first} ({mode:?}) in {:.1} s: {acks} acknowledged, {sold_out} sold out, {unknown} unknown, {takeovers} takeovers, {freezes} freezes; no violation",
        started.elapsed().as_secs_f64()
    );
}

fn mode_name(m: Mode) -> &'static str {
    match (m.wait, m.failover) {
        (true, _) => "wait",
        (false, true) => "nowait-failover",
        (false, false) => "nowait",
    }
}

const WAIT: Mode = Mode {
    wait: true,
    failover: true,
    bug: Bug::None,
};
const NO_WAIT: Mode = Mode {
    wait: false,
    failover: false,
    bug: Bug::None,
};

/// `replicated` with `wait_replicas = 1`: partitions, crashes, late and
/// lost messages and Redis failovers lose nothing acknowledged.
#[test]
fn replicated_with_wait_survives_failovers() {
    sweep(1, seeds(), WAIT);
}

/// `replicated` without WAIT, every fault but Redis's failover.
#[test]
fn replicated_survives_crashes_and_partitions() {
    sweep(1_000_001, seeds(), NO_WAIT);
}

/// The window README.md documents: without WAIT, a Redis failover can
/// lose acknowledged reservations (and sell their units again); the
/// simulation finds such seeds, so the checks above are not blind to it.
#[test]
fn without_wait_a_redis_failover_can_lose_acknowledged_holds() {
    let mode = Mode {
        wait: false,
        failover: true,
        bug: Bug::None,
    };
    let found = (1..=400).find(|s| run(*s, mode).world.lost > 0);
    assert!(
        found.is_some(),
        "no seed of 400 lost an acknowledged hold without WAIT"
    );
    println!(
        "without WAIT, seed {} lost acknowledged holds in a failover",
        found.unwrap_or(0)
    );
}

/// Each rule left out is caught: within a few hundred seeds, or by the
/// seed that found it (a seed replays exactly). The fence matters only
/// when a node's clock runs slower than the lease's margin allows (one
/// node of a run may): seed 431 found it. A copy that keeps a tail the
/// stream never took is caught on real processes instead
/// (tests/cluster_faults.rs, tests/cluster_replica.rs): the seeds here
/// rarely make a refused append whose leader then leads again.
#[test]
fn a_broken_protocol_is_caught() {
    for bug in [Bug::AckBeforeShip, Bug::NoDeadline] {
        let mode = Mode { bug, ..WAIT };
        let caught = (1..=300).find(|s| !run(*s, mode).world.violations.is_empty());
        assert!(caught.is_some(), "{bug:?} went unnoticed in 300 seeds");
        println!("{bug:?}: caught by seed {}", caught.unwrap_or(0));
    }
    let no_fence = Mode {
        bug: Bug::NoFence,
        ..WAIT
    };
    let v = run(431, no_fence).world.violations;
    assert!(!v.is_empty(), "NoFence went unnoticed by its seed");
    println!("NoFence: caught by seed 431: {v:?}");
}

/// A seed replays exactly: the same trace, event for event.
#[test]
fn a_seed_replays_exactly() {
    for seed in [7, 8] {
        let (a, b) = (run(seed, WAIT), run(seed, WAIT));
        assert_eq!(a.world.trace, b.world.trace, "seed {seed}");
        assert_eq!(a.digest, b.digest);
        assert!(a.world.trace.len() > 10, "the run did something");
    }
}

/// The fake server is only as good as its likeness to the real one: the
/// same random sequences of lease and append requests (three holders,
/// floors, stale and foreign epochs, retries, gaps) go to the Lua scripts
/// on a `redis-server` of the test's own and to the fake, and every answer
/// and the streams they leave must agree.
#[test]
fn the_fake_server_answers_as_the_lua_scripts_do() {
    let redis = Redis::start();
    let ttl = Duration::from_millis(TTL_MS);
    let mut answers: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..20u64 {
        let cluster = format!("diff{round}");
        let mut real =
            ShardLog::open(&redis.url(), &cluster, Duration::from_secs(2)).expect("connect");
        let mut fake = Server::new(round, Bug::None);
        let mut rng = Rng(round);
        for step in 0..60 {
            // Mostly the running lease's holder and epoch (so that appends
            // go through), else any holder and an epoch near the counter.
            let running = fake.primary.lease.clone().filter(|_| rng.below(3) > 0);
            let near = fake.primary.counter + rng.below(3);
            let (holder, epoch) = match running {
                Some(l) => (l.holder, l.epoch),
                None => (
                    ["a", "b", "c"][rng.below(3) as usize].to_string(),
                    near.saturating_sub(1),
                ),
            };
            let what = rng.below(5);
            let (got, want) = match what {
                0 => {
                    let floor = rng.below(4) * near;
                    let r = real.acquire(0, &holder, ttl, floor).expect("acquire");
                    let (f, _) = fake.handle(
                        0,
                        Req::Acquire {
                            holder,
                            floor,
                            wait: false,
                        },
                    );
                    (
                        format!("{:?}", r.unwrap_or(0)),
                        format!("{f:?}").replace("Epoch(", "").replace(')', ""),
                    )
                }
                1 => {
                    let r = real.renew(0, &holder, epoch, ttl).expect("renew");
                    let (f, _) = fake.handle(0, Req::Renew { holder, epoch });
                    (format!("Done({r})"), format!("{f:?}"))
                }
                2 => {
                    let r = real.release(0, &holder).expect("release");
                    let (f, _) = fake.handle(0, Req::Release { holder });
                    (format!("Done({r})"), format!("{f:?}"))
                }
                _ => {
                    let last = fake.primary.last_seq();
                    let first = (last + 1 + rng.below(3))
                        .saturating_sub(rng.below(3))
                        .max(1);
                    let n = 1 + rng.below(3);
                    let data: Vec<String> = (0..n).map(|i| format!("{round}-{step}-{i}")).collect();
                    let fence = Fence {
                        holder: holder.clone(),
                        epoch,
                    };
                    let r = match real.append(0, &fence, first, &data) {
                        Ok(Appended::Added { .. } | Appended::Duplicate) => "Appended".to_string(),
                        Err(LogError::Stale { .. }) => "Stale".to_string(),
                        Err(LogError::Gap { .. }) => "Gap".to_string(),
                        Err(e) => panic!("append: {e}"),
                    };
                    let (f, _) = fake.handle(
                        0,
                        Req::Append {
                            holder,
                            epoch,
                            first,
                            data,
                            wait: false,
                        },
                    );
                    (r, format!("{f:?}"))
                }
            };
            assert_eq!(got, want, "round {round} step {step} (request kind {what})");
            let kind = match (what, want.as_str()) {
                (0, "0") => "refused".to_string(),
                (0, _) => "taken".to_string(),
                _ => want,
            };
            *answers.entry(kind).or_default() += 1;
        }
        let real_stream: Vec<(u64, u64, Vec<u8>)> = real
            .read(0, "0-0", 10_000)
            .expect("read")
            .into_iter()
            .map(|e| (e.seq, e.epoch, e.data))
            .collect();
        let fake_stream: Vec<(u64, u64, Vec<u8>)> = fake
            .primary
            .stream
            .iter()
            .map(|e| (e.seq, e.epoch, e.data.clone().into_bytes()))
            .collect();
        assert_eq!(real_stream, fake_stream, "round {round}");
    }
    println!("answers compared: {answers:?}");
    // Each kind of answer was compared, not only refusals.
    for kind in [
        "Appended",
        "Stale",
        "Gap",
        "Done(true)",
        "Done(false)",
        "taken",
        "refused",
    ] {
        assert!(
            answers.get(kind).is_some_and(|n| *n >= 5),
            "{kind}: {answers:?}"
        );
    }
}

/// `HOLDFAST_SIM_SEED=n [HOLDFAST_SIM_MODE=wait|nowait|nowait-failover]`:
/// one run, its trace printed.
#[test]
fn replay() {
    let Some(seed) = std::env::var("HOLDFAST_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let mode = match std::env::var("HOLDFAST_SIM_MODE").as_deref() {
        Ok("nowait") => NO_WAIT,
        Ok("nowait-failover") => Mode {
            wait: false,
            failover: true,
            bug: Bug::None,
        },
        _ => WAIT,
    };
    let o = run(seed, mode);
    println!("{}", o.world.trace.join("\n"));
    println!("violations: {:?}", o.world.violations);
    assert!(o.world.violations.is_empty());
}
