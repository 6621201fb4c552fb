//! A node's leases: a thread that takes and renews the leases of the
//! shards this node should own, takes over any shard whose owner let its
//! lease lapse, and says, for each shard, whether and under which epoch
//! this node may write it now.
//!
//! "Now" is judged on this node's monotonic clock, from the moment a
//! renewal was sent: Redis starts the TTL when it runs the script, later
//! than that, so this node stops believing it owns a shard before Redis
//! lets anyone else take it (minus `margin` for the clocks' drift). A
//! renewal that fails or cannot reach Redis is not retried into the past:
//! ownership simply ends when its time does.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::log::ShardLog;
use super::LeaseTimings;

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    until: Instant,
}

/// What the keeper knows and the engine asks.
#[derive(Default)]
struct Shared {
    held: Mutex<HashMap<u32, Held>>,
    /// The highest epoch this node has seen of each shard (held, or
    /// applied as a follower): a lease it takes is above it.
    floor: Mutex<HashMap<u32, u64>>,
    /// Shards this node leaves to others until then (`step_down`).
    back_off: Mutex<HashMap<u32, Instant>>,
    /// Whether the last round reached Redis (`/v1/cluster` says it).
    reachable: AtomicBool,
}

/// Where a keeper stands in the cluster.
#[derive(Debug, Clone)]
pub struct Placement {
    pub redis_url: String,
    pub cluster: String,
    /// This node's position among `nodes`: the first node takes the lease
    /// when the cluster starts; the others only once it lapsed.
    pub index: u32,
    /// `node/incarnation`: a restarted node is a new holder.
    pub holder: String,
    pub timings: LeaseTimings,
    /// `[replication] wait_aof` / `wait_replicas`: a lease taken counts
    /// only once Redis's own fsync / replicas have it, so that a Redis
    /// failover cannot forget the epoch and hand it out again (two writers
    /// in one epoch, had the first written entries the failover lost). The
    /// simulation (`tests/cluster_sim.rs`) runs with this wait; its window
    /// without it is too narrow for its seeds to hit.
    pub wait_aof: bool,
    pub wait_replicas: u32,
}

impl Shared {
    /// `shard`'s floor is at least `epoch`.
    fn raise_floor(&self, shard: u32, epoch: u64) {
        let mut f = self.floor.lock();
        let e = f.entry(shard).or_default();
        *e = (*e).max(epoch);
    }

    fn owns(&self, shard: u32) -> Option<u64> {
        let held = self.held.lock();
        let h = held.get(&shard)?;
        (Instant::now() < h.until).then_some(h.epoch)
    }

    /// This node leaves `shard` to others now (`step_down`).
    fn backing_off(&self, shard: u32) -> bool {
        self.back_off
            .lock()
            .get(&shard)
            .is_some_and(|until| Instant::now() < *until)
    }
}

/// What a keeper says of its leases, for the threads that must ask it
/// (`LeaseKeeper::view`).
#[derive(Clone)]
pub struct LeaseView(Arc<Shared>);

impl LeaseView {
    /// `LeaseKeeper::owns`.
    pub fn owns(&self, shard: u32) -> Option<u64> {
        self.0.owns(shard)
    }

    /// Whether the keeper's last round reached Redis.
    pub fn redis_reachable(&self) -> bool {
        self.0.reachable.load(Ordering::Acquire)
    }
}

pub struct LeaseKeeper {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseKeeper {
    pub fn start(p: Placement) -> std::io::Result<LeaseKeeper> {
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("leases".into())
            .spawn(move || run(p, s, st))?;
        Ok(LeaseKeeper {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The epoch under which this node may write `shard` now, if it may.
    pub fn owns(&self, shard: u32) -> Option<u64> {
        self.shared.owns(shard)
    }

    /// A handle that answers `owns` from another thread.
    pub fn view(&self) -> LeaseView {
        LeaseView(self.shared.clone())
    }

    /// The shards this node may write now, with their epochs, in order.
    pub fn owned(&self) -> Vec<(u32, u64)> {
        let now = Instant::now();
        let mut v: Vec<(u32, u64)> = self
            .shared
            .held
            .lock()
            .iter()
            .filter(|(_, h)| now < h.until)
            .map(|(s, h)| (*s, h.epoch))
            .collect();
        v.sort_unstable();
        v
    }

    /// This node has seen `shard` at `epoch` (a follower applied an entry
    /// of it): an epoch it takes from now on is above. After Redis lost
    /// its counters, an epoch is never handed out twice to this node.
    pub fn seen(&self, shard: u32, epoch: u64) {
        self.shared.raise_floor(shard, epoch);
    }

    /// Stops holding `shard` and leaves it to others for `for_`: the
    /// caller then releases the lease in Redis (a node whose copy is
    /// shorter than another's lets that one take the shard).
    pub fn step_down(&self, shard: u32, for_: Duration) {
        self.shared
            .back_off
            .lock()
            .insert(shard, Instant::now() + for_);
        self.shared.held.lock().remove(&shard);
    }

    /// Stops renewing (the leases lapse by themselves: as a crash would).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.held.lock().clear();
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a lease renewed (or taken) at some instant lets its holder
/// write, on the holder's clock from the instant the request was sent:
/// the TTL less a tenth for the clocks' drift and the answer's way back.
pub fn lease_valid_for(ttl: Duration) -> Duration {
    ttl - ttl / 10
}

fn run(p: Placement, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let t = p.timings;
    let (ttl, every) = (t.ttl(), Duration::from_millis(t.renew_ms));
    let valid = lease_valid_for(ttl);
    let started = Instant::now();
    let mut log: Option<ShardLog> = None;
    while !stop.load(Ordering::Acquire) {
        let tick = Instant::now();
        if log.is_none() {
            log = ShardLog::open(&p.redis_url, &p.cluster, every)
                .map_err(|e| tracing::warn!(error = %e, "leases: Redis unreachable"))
                .ok();
        }
        if let Some(l) = log.as_mut() {
            // Others' shards only once their owners had a TTL to take them.
            let takeover = started.elapsed() >= ttl;
            let mut failed = false;
            for shard in [super::PARTITION] {
                let mine = p.index == 0;
                let had = shared.held.lock().get(&shard).copied();
                if had.is_none() && !mine && !takeover {
                    continue;
                }
                if shared.backing_off(shard) {
                    continue;
                }
                let sent = Instant::now();
                let got = match had {
                    Some(h) => l
                        .renew(shard, &p.holder, h.epoch, ttl)
                        .map(|ok| ok.then_some(h.epoch)),
                    None => {
                        let floor = shared.floor.lock().get(&shard).copied().unwrap_or(0);
                        l.acquire(shard, &p.holder, ttl, floor).and_then(|got| {
                            if got.is_some() {
                                l.wait(p.wait_aof, p.wait_replicas, every)?;
                            }
                            Ok(got)
                        })
                    }
                };
                let mut held = shared.held.lock();
                // A step down that came while Redis answered wins.
                let stepped_down = shared.backing_off(shard);
                match got {
                    Ok(Some(_)) if stepped_down => {}
                    Ok(Some(epoch)) => {
                        if had.is_none() {
                            tracing::info!(shard, epoch, "leases: shard taken");
                            shared.raise_floor(shard, epoch);
                        }
                        held.insert(
                            shard,
                            Held {
                                epoch,
                                until: sent + valid,
                            },
                        );
                    }
                    Ok(None) => {
                        if had.is_some() {
                            tracing::warn!(shard, "leases: shard lost");
                        }
                        held.remove(&shard);
                    }
                    Err(e) => {
                        // Held until its time runs out, no longer.
                        tracing::warn!(shard, error = %e, "leases: Redis did not answer");
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                log = None;
            }
        }
        shared.reachable.store(log.is_some(), Ordering::Release);
        let rest = every.saturating_sub(tick.elapsed());
        std::thread::sleep(rest);
    }
}
