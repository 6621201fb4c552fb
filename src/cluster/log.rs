//! A shard's log in Redis: its lease, its stream of committed events, its
//! published snapshot. Every rule that two nodes could disagree on is
//! decided inside Redis by one Lua script, so it is atomic:
//!
//! - Lease `holdfast:{c}:lease:{n}` (a hash: holder, epoch; expires after
//!   the TTL). Taking a free or lapsed lease gives a new epoch: above the
//!   shard's counter `holdfast:{c}:epoch:{n}`, above the epoch of the
//!   stream's last entry and of its snapshot, and above the `floor` the
//!   taker names (the highest it has seen): a Redis failover that lost the
//!   counter's last steps cannot hand out an epoch again that a follower
//!   saw. A holder is `node/incarnation`: a node restarted under the same
//!   id waits for its old lease to lapse and comes back with a new epoch.
//! - Stream `holdfast:{c}:shard:{n}`: an append names the lease it writes
//!   under (`Fence`: holder and epoch) and the sequence number of its
//!   first event; it is refused unless that lease is the one running (a
//!   stale owner: fencing; the holder is checked too, so even a reused
//!   epoch could not let two writers in), and when the sequence does not
//!   follow the shard's last (`holdfast:{c}:seq:{n}`); a retry of events
//!   already in is a no-op (`Appended::Duplicate`).
//! - Snapshot `holdfast:{c}:snapshot:{n}`: published by the owner at a
//!   sequence number with the stream entry that holds it; the stream is
//!   trimmed only behind a published snapshot, in the same script.
//!
//! A follower (`Follower`) applies entries in sequence: a duplicate is
//! skipped; a gap (trimmed or lost entries) or an entry that contradicts
//! what it applied (a Redis failover lost the tail it had read, and a new
//! owner wrote other events under the same numbers) means: resync from the
//! published snapshot.

use redis::{Connection, Script};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// Redis could not be reached or answered an error: nothing is known
    /// to be written.
    #[error("redis: {0}")]
    Redis(String),
    /// The lease is not held under this epoch (now `current`, 0: nobody).
    #[error("stale epoch: the shard's lease is at epoch {current}")]
    Stale { current: u64 },
    /// The first sequence number does not follow the shard's last.
    #[error("sequence gap: the shard expects {expected}")]
    Gap { expected: u64 },
    /// A snapshot at or before the published one, or whose stream entry
    /// does not hold its sequence number.
    #[error("snapshot refused: {0}")]
    Snapshot(String),
}

impl From<redis::RedisError> for LogError {
    fn from(e: redis::RedisError) -> Self {
        LogError::Redis(e.to_string())
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// In the stream; the id of its last entry.
    Added { last_id: String },
    /// Every event was in already (a retry after an unclear answer).
    Duplicate,
}

/// The lease a write is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub epoch: u64,
}

/// One event of a shard's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub seq: u64,
    pub epoch: u64,
    pub data: Vec<u8>,
}

/// A published snapshot: the shard's state after event `seq`, which is
/// stream entry `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub id: String,
    pub epoch: u64,
    pub data: Vec<u8>,
}

const ACQUIRE: &str = r"
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('HGET', KEYS[1], 'epoch'))
end
if holder then return 0 end
local e = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[3]))
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #last > 0 then
  local f = last[1][2]
  for i = 1, #f, 2 do if f[i] == 'epoch' then e = math.max(e, tonumber(f[i + 1])) end end
end
e = math.max(e, tonumber(redis.call('HGET', KEYS[4], 'epoch') or '0')) + 1
redis.call('SET', KEYS[2], e)
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'epoch', e)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return e
";

const RENEW: &str = r"
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
   and tonumber(redis.call('HGET', KEYS[1], 'epoch')) == tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

// The fence, shared by the scripts that write: ARGV[1] holder, ARGV[2]
// epoch must be the running lease's.
const FENCE: &str = r"
local e = redis.call('HGET', KEYS[1], 'epoch')
if not e or tonumber(e) ~= tonumber(ARGV[2]) or redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then
  return {'stale', tostring(e or 0)}
end
";

const APPEND: &str = r"
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local first = tonumber(ARGV[3])
local n = #ARGV - 3
if first + n - 1 <= last then return {'dup', ''} end
if first ~= last + 1 then return {'gap', tostring(last + 1)} end
local id = ''
for i = 1, n do
  id = redis.call('XADD', KEYS[2], '*', 'seq', first + i - 1, 'epoch', ARGV[2], 'data', ARGV[3 + i])
end
redis.call('SET', KEYS[3], first + n - 1)
return {'ok', id}
";

const PUBLISH: &str = r"
local have = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
if tonumber(ARGV[3]) <= have then return {'snapshot', 'at or before the published one'} end
local at = redis.call('XRANGE', KEYS[2], ARGV[4], ARGV[4])
if #at == 0 then return {'snapshot', 'no such stream entry'} end
local f = at[1][2]
local seq = nil
for i = 1, #f, 2 do if f[i] == 'seq' then seq = f[i + 1] end end
if tonumber(seq) ~= tonumber(ARGV[3]) then return {'snapshot', 'the entry holds another sequence'} end
redis.call('HSET', KEYS[3], 'seq', ARGV[3], 'id', ARGV[4], 'epoch', ARGV[2], 'data', ARGV[6])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[5])
return {'ok', ''}
";

// A stream that lost more than an owner's copy still holds as records
// (Redis lost its data; the copy's journal was cut behind its snapshot)
// starts again from that snapshot: published at ARGV[3] with no entry
// (id 0-1, before any the stream will get), the sequence set to it, what
// the stream held before it dropped.
const SEED: &str = r"
local at = tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[4]) or '0') >= at
   or tonumber(redis.call('HGET', KEYS[3], 'seq') or '0') >= at then
  return {'dup', ''}
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], 'seq', at, 'id', '0-1', 'epoch', ARGV[2], 'data', ARGV[4])
redis.call('SET', KEYS[4], at)
return {'ok', 'seeded'}
";

/// The first stream id after `id` ("ms-n" -> "ms-(n+1)").
fn next_id(id: &str) -> Result<String, LogError> {
    let bad = || LogError::Snapshot(format!("stream id {id:?}"));
    let (ms, n) = id.split_once('-').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    Ok(format!("{ms}-{}", n + 1))
}

/// A script's `{status, detail}` answer, as an outcome.
fn outcome(status: &str, detail: String) -> Result<String, LogError> {
    let number = || detail.parse::<u64>().unwrap_or(0);
    match status {
        "ok" | "dup" => Ok(detail),
        "stale" => Err(LogError::Stale { current: number() }),
        "gap" => Err(LogError::Gap { expected: number() }),
        _ => Err(LogError::Snapshot(detail)),
    }
}

/// A node's connection to the shard logs of one cluster.
pub struct ShardLog {
    conn: Connection,
    cluster: String,
    acquire: Script,
    renew: Script,
    release: Script,
    append: Script,
    publish: Script,
    seed: Script,
}

impl ShardLog {
    /// Connects (bounded by `timeout`, and so is every command after).
    pub fn open(url: &str, cluster: &str, timeout: Duration) -> Result<ShardLog, LogError> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(ShardLog {
            conn,
            cluster: cluster.to_string(),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            append: Script::new(&format!("{FENCE}{APPEND}")),
            publish: Script::new(&format!("{FENCE}{PUBLISH}")),
            seed: Script::new(&format!("{FENCE}{SEED}")),
        })
    }

    fn key(&self, what: &str, shard: u32) -> String {
        format!("holdfast:{}:{what}:{shard}", self.cluster)
    }

    /// Takes the shard's lease for `holder` (`node/incarnation`) with an
    /// epoch above `floor` (the highest this node has seen of the shard),
    /// or renews it if `holder` has it: its epoch; `None` while another
    /// holder's lease runs.
    pub fn acquire(
        &mut self,
        shard: u32,
        holder: &str,
        ttl: Duration,
        floor: u64,
    ) -> Result<Option<u64>, LogError> {
        let epoch: u64 = self
            .acquire
            .key(self.key("lease", shard))
            .key(self.key("epoch", shard))
            .key(self.key("shard", shard))
            .key(self.key("snapshot", shard))
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .arg(floor)
            .invoke(&mut self.conn)?;
        Ok((epoch > 0).then_some(epoch))
    }

    /// Extends the lease `holder` has under `epoch`; false when it lapsed
    /// or another took it (the holder must stop writing).
    pub fn renew(
        &mut self,
        shard: u32,
        holder: &str,
        epoch: u64,
        ttl: Duration,
    ) -> Result<bool, LogError> {
        let ok: u32 = self
            .renew
            .key(self.key("lease", shard))
            .arg(holder)
            .arg(epoch)
            .arg(ttl.as_millis() as u64)
            .invoke(&mut self.conn)?;
        Ok(ok == 1)
    }

    /// Gives the lease up if `holder` has it (another may take it at once).
    pub fn release(&mut self, shard: u32, holder: &str) -> Result<bool, LogError> {
        let ok: u32 = self
            .release
            .key(self.key("lease", shard))
            .arg(holder)
            .invoke(&mut self.conn)?;
        Ok(ok == 1)
    }

    /// Says how far `node`'s copy of each shard goes (`last_seqs[shard]`),
    /// at `unix_ms`: what a node about to take a shard compares its own
    /// copy with.
    pub fn report_copies(
        &mut self,
        node: &str,
        last_seqs: &[u64],
        unix_ms: u64,
    ) -> Result<(), LogError> {
        let mut pipe = redis::pipe();
        for (shard, seq) in last_seqs.iter().enumerate() {
            pipe.hset(
                self.key("copies", shard as u32),
                node,
                format!("{seq}:{unix_ms}"),
            )
            .ignore();
        }
        pipe.query::<()>(&mut self.conn)?;
        Ok(())
    }

    /// The copies of `shard` reported: (node, last sequence, unix ms).
    pub fn copies(&mut self, shard: u32) -> Result<Vec<(String, u64, u64)>, LogError> {
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key("copies", shard))
            .query(&mut self.conn)?;
        Ok(h.into_iter()
            .filter_map(|(node, v)| {
                let (seq, ms) = v.split_once(':')?;
                Some((node, seq.parse().ok()?, ms.parse().ok()?))
            })
            .collect())
    }

    /// The lease's holder and epoch, if it runs.
    pub fn owner(&mut self, shard: u32) -> Result<Option<(String, u64)>, LogError> {
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key("lease", shard))
            .query(&mut self.conn)?;
        Ok(match (h.get("holder"), h.get("epoch")) {
            (Some(holder), Some(e)) => Some((holder.clone(), e.parse().unwrap_or(0))),
            _ => None,
        })
    }

    /// Appends `events` (sequence numbers `first..`) under the lease
    /// `fence`, all or none (see the module's rules).
    pub fn append(
        &mut self,
        shard: u32,
        fence: &Fence,
        first: u64,
        events: &[impl AsRef<[u8]>],
    ) -> Result<Appended, LogError> {
        if events.is_empty() {
            return Ok(Appended::Duplicate);
        }
        let mut call = self.append.prepare_invoke();
        call.key(self.key("lease", shard))
            .key(self.key("shard", shard))
            .key(self.key("seq", shard))
            .arg(&fence.holder)
            .arg(fence.epoch)
            .arg(first);
        for e in events {
            call.arg(e.as_ref());
        }
        let (status, detail): (String, String) = call.invoke(&mut self.conn)?;
        let detail = outcome(&status, detail)?;
        Ok(if status == "dup" {
            Appended::Duplicate
        } else {
            Appended::Added { last_id: detail }
        })
    }

    /// Waits until Redis's own fsync has what this connection wrote
    /// (`aof`: `WAITAOF 1 n`) and `replicas` replicas have it (`WAIT n`),
    /// for at most `timeout`; an error says how far it got.
    pub fn wait(&mut self, aof: bool, replicas: u32, timeout: Duration) -> Result<(), LogError> {
        let ms = timeout.as_millis().max(1) as u64;
        if aof {
            let (local, remote): (u32, u32) = redis::cmd("WAITAOF")
                .arg(1)
                .arg(replicas)
                .arg(ms)
                .query(&mut self.conn)?;
            if local < 1 || remote < replicas {
                return Err(LogError::Redis(format!(
                    "WAITAOF: fsynced locally {local}, by {remote} of {replicas} replicas"
                )));
            }
        } else if replicas > 0 {
            let got: u32 = redis::cmd("WAIT")
                .arg(replicas)
                .arg(ms)
                .query(&mut self.conn)?;
            if got < replicas {
                return Err(LogError::Redis(format!(
                    "WAIT: {got} of {replicas} replicas have the events"
                )));
            }
        }
        Ok(())
    }

    /// Up to `count` entries after stream id `after` ("0-0": from the
    /// start), in order.
    pub fn read(&mut self, shard: u32, after: &str, count: usize) -> Result<Vec<Entry>, LogError> {
        let raw: RawEntries = redis::cmd("XRANGE")
            .arg(self.key("shard", shard))
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query(&mut self.conn)?;
        entries(raw)
    }

    /// `read`, waiting up to `block` for an entry when there is none yet
    /// (`XREAD BLOCK`): a follower that caught up sleeps in Redis rather
    /// than asking again and again, and wakes when the leader appends.
    /// `block` stays under the connection's timeout.
    pub fn read_waiting(
        &mut self,
        shard: u32,
        after: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        let raw: Option<Vec<(String, RawEntries)>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.key("shard", shard))
            .arg(after)
            .query(&mut self.conn)?;
        let raw = raw
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .collect();
        entries(raw)
    }

    /// Up to `count` entries from `before` ("+": the last; "(id": before
    /// id) backwards, newest first.
    pub fn read_back(
        &mut self,
        shard: u32,
        before: &str,
        count: usize,
    ) -> Result<Vec<Entry>, LogError> {
        let raw: RawEntries = redis::cmd("XREVRANGE")
            .arg(self.key("shard", shard))
            .arg(before)
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query(&mut self.conn)?;
        entries(raw)
    }

    /// The stream id of the entry holding sequence number `seq`, if the
    /// stream holds it. Ids are Redis's clock and sequence numbers grow
    /// along the stream, so a binary search over the milliseconds finds it
    /// in about 40 one-entry reads, however long the stream.
    pub fn id_of(&mut self, shard: u32, seq: u64) -> Result<Option<String>, LogError> {
        let ms_of = |e: &Entry| -> Result<u64, LogError> {
            e.id.split_once('-')
                .and_then(|(ms, _)| ms.parse().ok())
                .ok_or_else(|| LogError::Redis(format!("stream id {:?}", e.id)))
        };
        let (Some(first), Some(last)) = (
            self.read(shard, "0-0", 1)?.pop(),
            self.read_back(shard, "+", 1)?.pop(),
        ) else {
            return Ok(None);
        };
        if seq < first.seq || seq > last.seq {
            return Ok(None);
        }
        // The entry's millisecond is within lo..=hi.
        let (mut lo, mut hi) = (ms_of(&first)?, ms_of(&last)?);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let raw: RawEntries = redis::cmd("XRANGE")
                .arg(self.key("shard", shard))
                .arg(mid + 1)
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query(&mut self.conn)?;
            match entries(raw)?.pop() {
                Some(e) if e.seq <= seq => lo = ms_of(&e)?,
                _ => hi = mid,
            }
        }
        let raw: RawEntries = redis::cmd("XRANGE")
            .arg(self.key("shard", shard))
            .arg(format!("{lo}-0"))
            .arg(format!("{lo}-{}", u64::MAX))
            .query(&mut self.conn)?;
        Ok(entries(raw)?
            .into_iter()
            .find(|e| e.seq == seq)
            .map(|e| e.id))
    }

    /// The shard's last sequence number in Redis (0: none yet).
    pub fn last_seq(&mut self, shard: u32) -> Result<u64, LogError> {
        let v: Option<u64> = redis::cmd("GET")
            .arg(self.key("seq", shard))
            .query(&mut self.conn)?;
        Ok(v.unwrap_or(0))
    }

    /// Publishes the shard's state after event `seq` (stream entry `id`)
    /// under the lease `fence`, and trims the stream up to that entry.
    pub fn publish_snapshot(
        &mut self,
        shard: u32,
        fence: &Fence,
        seq: u64,
        id: &str,
        data: &[u8],
    ) -> Result<(), LogError> {
        let (status, detail): (String, String) = self
            .publish
            .key(self.key("lease", shard))
            .key(self.key("shard", shard))
            .key(self.key("snapshot", shard))
            .arg(&fence.holder)
            .arg(fence.epoch)
            .arg(seq)
            .arg(id)
            .arg(next_id(id)?)
            .arg(data)
            .invoke(&mut self.conn)?;
        outcome(&status, detail).map(|_| ())
    }

    /// Starts the shard's log again from a snapshot at `seq` (under the
    /// lease `fence`) when it holds less than that: Redis lost what the
    /// owner's copy now holds only as a snapshot. True if it did; false
    /// if the stream or its published snapshot reaches `seq` already.
    pub fn seed(
        &mut self,
        shard: u32,
        fence: &Fence,
        seq: u64,
        data: &[u8],
    ) -> Result<bool, LogError> {
        let (status, detail): (String, String) = self
            .seed
            .key(self.key("lease", shard))
            .key(self.key("shard", shard))
            .key(self.key("snapshot", shard))
            .key(self.key("seq", shard))
            .arg(&fence.holder)
            .arg(fence.epoch)
            .arg(seq)
            .arg(data)
            .invoke(&mut self.conn)?;
        Ok(outcome(&status, detail)? == "seeded")
    }

    /// The sequence number of the shard's published snapshot (0: none).
    pub fn published_seq(&mut self, shard: u32) -> Result<u64, LogError> {
        let v: Option<u64> = redis::cmd("HGET")
            .arg(self.key("snapshot", shard))
            .arg("seq")
            .query(&mut self.conn)?;
        Ok(v.unwrap_or(0))
    }

    /// The shard's published snapshot, if any.
    pub fn snapshot(&mut self, shard: u32) -> Result<Option<Published>, LogError> {
        let mut h: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.key("snapshot", shard))
            .query(&mut self.conn)?;
        if h.is_empty() {
            return Ok(None);
        }
        let mut text = |k: &str| {
            h.remove(k)
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or_else(|| LogError::Redis(format!("snapshot of shard {shard}: no {k}")))
        };
        let (seq, id, epoch) = (text("seq")?, text("id")?, text("epoch")?);
        let number = |v: &str| {
            v.parse()
                .map_err(|_| LogError::Redis(format!("snapshot of shard {shard}: {v:?}")))
        };
        Ok(Some(Published {
            seq: number(&seq)?,
            epoch: number(&epoch)?,
            id,
            data: h.remove("data").unwrap_or_default(),
        }))
    }
}

type RawEntries = Vec<(String, HashMap<String, Vec<u8>>)>;

/// Stream entries as Redis answers them, read.
fn entries(raw: RawEntries) -> Result<Vec<Entry>, LogError> {
    raw.into_iter()
        .map(|(id, mut f)| {
            let num = |f: &HashMap<String, Vec<u8>>, k: &str| {
                f.get(k)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                    .ok_or_else(|| LogError::Redis(format!("entry {id}: no {k}")))
            };
            Ok(Entry {
                seq: num(&f, "seq")?,
                epoch: num(&f, "epoch")?,
                data: f.remove("data").unwrap_or_default(),
                id,
            })
        })
        .collect()
}

/// Why a follower must resync from the published snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resync {
    /// Entries between are gone (trimmed, or lost by Redis).
    Gap { expected: u64, got: u64 },
    /// An entry under a number it applied, from a later epoch: what it
    /// applied was lost by Redis and written over.
    Diverged { seq: u64 },
    /// An epoch went back: two writers (never, if the fencing holds).
    EpochBack { seq: u64 },
}

/// Where a follower of one shard is: the next sequence number it applies,
/// the epoch of the last it applied, and the stream id to read after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    pub next_seq: u64,
    pub epoch: u64,
    pub after: String,
    /// The last number the stream was seen to hold as this copy holds it.
    /// Records after it and before `next_seq` are a tail the stream did
    /// not have when the copy was placed (`unconfirmed`): the next entry
    /// read must be the one right after `confirmed`, for one beyond means
    /// the stream moved past that tail (another owner wrote those numbers
    /// and a snapshot's trim took them) unseen: the copy must resync.
    pub confirmed: u64,
}

impl Default for Follower {
    fn default() -> Self {
        Follower {
            next_seq: 1,
            epoch: 0,
            after: "0-0".into(),
            confirmed: 0,
        }
    }
}

impl Follower {
    /// Resumes after a published snapshot.
    pub fn at(p: &Published) -> Follower {
        Follower {
            next_seq: p.seq + 1,
            epoch: p.epoch,
            after: p.id.clone(),
            confirmed: p.seq,
        }
    }

    /// Placed on a copy whose records end at `last`, where the stream's
    /// entry `at` (at or before `last`; `None`: an empty stream) holds the
    /// copy's record: records after it are unconfirmed (`confirmed`).
    pub fn placed(last: u64, at: Option<&Entry>) -> Follower {
        Follower {
            next_seq: last + 1,
            epoch: at.map_or(0, |e| e.epoch),
            after: at.map_or_else(|| "0-0".to_string(), |e| e.id.clone()),
            confirmed: at.map_or(0, |e| e.seq),
        }
    }

    /// Whether to apply `e` (false: a duplicate, already applied); moves
    /// past it.
    pub fn accept(&mut self, e: &Entry) -> Result<bool, Resync> {
        if e.seq > self.confirmed + 1 && self.confirmed + 1 < self.next_seq {
            return Err(Resync::Gap {
                expected: self.confirmed + 1,
                got: e.seq,
            });
        }
        if e.seq < self.next_seq {
            if e.epoch > self.epoch {
                return Err(Resync::Diverged { seq: e.seq });
            }
            self.after = e.id.clone();
            self.confirmed = self.confirmed.max(e.seq);
            return Ok(false);
        }
        if e.seq > self.next_seq {
            return Err(Resync::Gap {
                expected: self.next_seq,
                got: e.seq,
            });
        }
        if e.epoch < self.epoch {
            return Err(Resync::EpochBack { seq: e.seq });
        }
        self.next_seq += 1;
        self.epoch = e.epoch;
        self.after = e.id.clone();
        self.confirmed = e.seq;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, epoch: u64) -> Entry {
        Entry {
            id: format!("1-{seq}"),
            seq,
            epoch,
            data: vec![],
        }
    }

    #[test]
    fn a_follower_applies_in_order_skips_duplicates_and_stops_at_gaps() {
        let mut f = Follower::default();
        assert_eq!(f.accept(&entry(1, 1)), Ok(true));
        assert_eq!(f.accept(&entry(2, 1)), Ok(true));
        assert_eq!(f.accept(&entry(2, 1)), Ok(false), "a duplicate delivery");
        assert_eq!(f.accept(&entry(3, 2)), Ok(true), "a new owner continues");
        assert_eq!(
            f.accept(&entry(5, 2)),
            Err(Resync::Gap {
                expected: 4,
                got: 5
            })
        );
        assert_eq!(f.accept(&entry(3, 3)), Err(Resync::Diverged { seq: 3 }));
        assert_eq!(f.accept(&entry(4, 1)), Err(Resync::EpochBack { seq: 4 }));
        assert_eq!(f.next_seq, 4, "nothing refused moved it");
        assert_eq!(f.after, "1-3");
        let p = Published {
            seq: 10,
            id: "7-0".into(),
            epoch: 2,
            data: vec![],
        };
        let mut g = Follower::at(&p);
        assert_eq!(g.accept(&entry(11, 2)), Ok(true));
    }

    /// A copy placed with a tail the stream lacked: the stream going on
    /// past that tail unseen (another owner's entries under those numbers
    /// trimmed away) is a gap, not the next record; the tail shipped again
    /// (the same entries) confirms it.
    #[test]
    fn a_tail_the_stream_lacked_is_confirmed_or_resynced() {
        let at = entry(3, 1);
        let mut f = Follower::placed(5, Some(&at));
        assert_eq!(
            f.accept(&entry(6, 2)),
            Err(Resync::Gap {
                expected: 4,
                got: 6
            })
        );
        assert_eq!(f.accept(&entry(4, 2)), Err(Resync::Diverged { seq: 4 }));
        assert_eq!(f.accept(&entry(4, 1)), Ok(false), "the tail, shipped again");
        assert_eq!(f.accept(&entry(5, 1)), Ok(false));
        assert_eq!(f.accept(&entry(6, 2)), Ok(true), "confirmed: it goes on");
        let mut h = Follower::placed(2, None);
        assert_eq!(
            h.accept(&entry(9, 2)),
            Err(Resync::Gap {
                expected: 1,
                got: 9
            })
        );
    }

    #[test]
    fn stream_ids_step_to_the_next() {
        assert_eq!(next_id("1700-4"), Ok("1700-5".to_string()));
        assert!(next_id("nonsense").is_err());
    }
}
