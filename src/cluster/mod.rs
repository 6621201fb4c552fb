//! The cluster (ARCHITECTURE.md, Cluster; `cluster.toml`): SKUs hashed to
//! shards, each shard owned by one node at a time through a lease in Redis
//! whose growing epoch fences every append to the shard's stream.
//!
//! - `log`: the shard log on Redis (leases, fenced appends with per-shard
//!   sequence numbers, reading, published snapshots and the trim behind
//!   them, the follower's rule for gaps and duplicates).
//! - `lease`: the node's lease keeper.
//! - `replica`: a shard's copies (the owner's shipping, the follower's
//!   mirror and its promotion to an engine).
//! - `node`: a node's copy of every shard, switched by its leases.
//! - `front`: any node accepts any request (served or forwarded).
//! - `feed`: the stock feed from this node's copies of the shards.

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
    /// SKU partitions (`crc32c(sku) % shards`): fixed for the cluster's life.
    pub shards: u32,
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

/// What a node does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisDown {
    /// Refuse writes with 503 `unavailable`.
    Refuse,
    /// Owners keep serving from their journal (leases cannot be renewed,
    /// so this gives up failover until Redis is back).
    Local,
}

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
        if !(1..=4096).contains(&self.shards) {
            return Err("shards must be 1..=4096".into());
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
        if self.replication.redis_down == RedisDown::Local
            && self.replication.durability == ClusterDurability::Replicated
        {
            return Err("replication: redis_down = \"local\" needs durability = \"local\" (\"replicated\" acknowledges only what Redis took)".into());
        }
        Ok(())
    }

    pub fn node(&self, id: &str) -> Result<&Node, String> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| format!("no node {id} in the cluster file"))
    }

    /// The shard of a SKU: the same on every node and every version (a
    /// fixed hash, not the process's). crc32c is linear: the low bits of
    /// SKUs that differ in one character take few values (A0..A15 fell in
    /// 2 of 4 shards), so it is mixed (Fibonacci hashing, the product's
    /// high half) before the modulo.
    pub fn shard_of(&self, sku: &str) -> u32 {
        let h = u64::from(crc32c::crc32c(sku.as_bytes())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 32) % u64::from(self.shards)) as u32
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
        // Stable: the same SKU, the same shard, whatever the process.
        assert_eq!(c.shard_of("A1"), c.shard_of(&String::from("A1")));
        let spread: HashSet<u32> = (0..1000).map(|i| c.shard_of(&format!("S{i}"))).collect();
        assert_eq!(spread.len() as u32, c.shards, "every shard gets SKUs");
        // Even SKUs that differ in their last character only spread.
        let few: HashSet<u32> = (0..16).map(|i| c.shard_of(&format!("A{i}"))).collect();
        assert!(few.len() >= 6, "A0..A15 in {} of 12 shards", few.len());
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
        let local = "[replication]\ndurability = \"local\"\nredis_down = \"local\"";
        assert!(ClusterConfig::parse(&base(local, &two)).is_ok());
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
                "needs durability",
            ),
        ];
        for (text, why) in cases {
            let e = ClusterConfig::parse(&text).expect_err(&text);
            assert!(e.contains(why), "{e} (expected {why})");
        }
    }
}
