//! The cluster (docs/cluster.md; `cluster.toml`): one leader and its
//! followers. The leader holds the network's lease in Redis, whose growing
//! epoch fences every append to the network's stream, and runs exactly the
//! single-node engine; followers keep a hot copy of the whole state from
//! the stream, serve reads and the stock feed, forward writes to the
//! leader, and one of them takes over when the lease lapses.
//!
//! The network is one partition (`PARTITION`): the code keeps its number
//! in Redis's keys and on the wire so that a deployment past one network
//! (partitions per brand, country or tenant, each with its own lease,
//! stream and leader: docs/cluster.md) changes no format.
//!
//! - `log`: the log on Redis (the lease, fenced appends with sequence
//!   numbers, reading, published snapshots and the trim behind them, the
//!   follower's rule for gaps and duplicates).
//! - `lease`: the node's lease keeper.
//! - `replica`: the copies (the leader's shipping, the follower's mirror
//!   and its promotion to an engine).
//! - `node`: this node's copy, leading or following by the lease.
//! - `front`: any node accepts any request (served, read from the copy,
//!   or forwarded to the leader).
//! - `feed`: the stock feed from this node's copy.

pub mod feed;
pub mod front;
pub mod lease;
pub mod log;
pub mod node;
pub mod replica;

use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `cluster.toml`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Names the cluster's keys in Redis: `holdfast:{cluster}:...`.
    pub cluster: String,
    /// No longer read: one leader writes the whole network (its engine's
    /// in-process shards are `[server] shards` of holdfast.toml, as on one
    /// node). Accepted so that files written for the sharded cluster keep
    /// working; a warning says it is ignored.
    #[serde(default)]
    pub shards: Option<u32>,
    pub redis_url: String,
    #[serde(default)]
    pub replication: Replication,
    #[serde(default)]
    pub lease: LeaseTimings,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    /// Where its HTTP API listens (other nodes forward to it).
    pub http: SocketAddr,
    pub data_dir: PathBuf,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterDurability {
    /// After the local fsync only: a failover can lose what Redis had not
    /// received yet.
    Local,
    /// After the local fsync and Redis's answer to the append.
    Replicated,
}

/// What a node does when Redis cannot be reached: the leader stops taking
/// writes once its lease runs out (503 with Retry-After), followers keep
/// serving reads with their staleness shown. The one choice left: the
/// `local` of the sharded cluster let a cut-off owner write beside a new
/// one, and is refused with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisDown {
    Refuse,
    Local,
}

/// The network's partition: its number in Redis's keys and on the wire.
pub const PARTITION: u32 = 0;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replication {
    pub durability: ClusterDurability,
    /// `WAITAOF 1 0` after each batch (Redis's own fsync; Redis 7.2+).
    pub wait_aof: bool,
    /// `WAIT n` after each batch (Redis replicas that have it).
    pub wait_replicas: u32,
    /// Events in one pipelined append at most.
    pub batch_max: usize,
    pub redis_down: RedisDown,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            durability: ClusterDurability::Replicated,
            wait_aof: false,
            wait_replicas: 0,
            batch_max: 256,
            redis_down: RedisDown::Refuse,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseTimings {
    /// A lease not renewed for this long lapses; a standby takes it.
    pub ttl_ms: u64,
    /// The owner renews this often.
    pub renew_ms: u64,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            ttl_ms: 3_000,
            renew_ms: 1_000,
        }
    }
}

impl LeaseTimings {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

impl ClusterConfig {
    pub fn load(path: &Path) -> Result<ClusterConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<ClusterConfig, String> {
        let c: ClusterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.cluster) {
            return Err("cluster: 1-64 of [A-Za-z0-9_-]".into());
        }
        if !self.redis_url.starts_with("redis://") {
            return Err("redis_url must start with redis://".into());
        }
        if self.nodes.is_empty() {
            return Err("at least one [[nodes]]".into());
        }
        let (mut ids, mut addrs) = (HashSet::new(), HashSet::new());
        for n in &self.nodes {
            if !name_ok(&n.id) {
                return Err(format!("node id {:?}: 1-64 of [A-Za-z0-9_-]", n.id));
            }
            if !ids.insert(&n.id) {
                return Err(format!("node id {} appears twice", n.id));
            }
            if !addrs.insert(n.http) {
                return Err(format!("http address {} appears twice", n.http));
            }
        }
        let l = self.lease;
        if l.renew_ms < 50 || l.ttl_ms < 2 * l.renew_ms {
            return Err("lease: renew_ms at least 50 and ttl_ms at least twice it".into());
        }
        if !(1..=10_000).contains(&self.replication.batch_max) {
            return Err("replication.batch_max must be 1..=10000".into());
        }
        if self.replication.redis_down == RedisDown::Local {
            return Err("replication: redis_down = \"local\" is no longer offered: it let a node cut off from Redis keep writing while another took over (two writers at once). Remove it: with Redis down the leader stops taking writes when its lease runs out, followers keep serving reads (docs/cluster.md)".into());
        }
        Ok(())
    }

    pub fn node(&self, id: &str) -> Result<&Node, String> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| format!("no node {id} in the cluster file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_at_the_root_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster.toml");
        let c = ClusterConfig::load(&path).expect("cluster.toml");
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.node("n2").expect("n2").id, "n2");
        assert!(c.node("n9").is_err());
        assert_eq!(c.replication.durability, ClusterDurability::Replicated);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let base = |extra: &str, nodes: &str| {
            format!(
                "cluster = \"c\"\nshards = 4\nredis_url = \"redis://127.0.0.1/\"\n{extra}\n{nodes}"
            )
        };
        let node = |id: &str, port: u16| {
            format!(
                "[[nodes]]\nid = \"{id}\"\nhttp = \"127.0.0.1:{port}\"\ndata_dir = \"d/{id}\"\n"
            )
        };
        let two = format!("{}{}", node("a", 1), node("b", 2));
        assert!(ClusterConfig::parse(&base("", &two)).is_ok());
        // A file of the sharded cluster: its shard count is accepted.
        assert_eq!(
            ClusterConfig::parse(&base("", &two)).map(|c| c.shards),
            Ok(Some(4))
        );
        let local = "[replication]\ndurability = \"local\"\nredis_down = \"local\"";
        let e = ClusterConfig::parse(&base(local, &two)).expect_err("two writers");
        assert!(e.contains("no longer offered"), "{e}");
        let cases = [
            (
                base("", &format!("{}{}", node("a", 1), node("a", 2))),
                "twice",
            ),
            (
                base("", &format!("{}{}", node("a", 1), node("b", 1))),
                "twice",
            ),
            (base("", ""), "nodes"),
            (base("[lease]\nttl_ms = 100\nrenew_ms = 80", &two), "lease"),
            (base("", &node("a b", 1)), "node id"),
            (base("typo = 1", &two), "unknown field"),
            (
                base("[replication]\ndurability = \"maybe\"", &two),
                "unknown variant",
            ),
            (
                base("[replication]\nredis_down = \"local\"", &two),
                "two writers at once",
            ),
        ];
        for (text, why) in cases {
            let e = ClusterConfig::parse(&text).expect_err(&text);
            assert!(e.contains(why), "{e} (expected {why})");
        }
    }
}
