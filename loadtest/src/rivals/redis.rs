//! `redis`: the reservation semantics as Lua scripts run by EVALSHA on a
//! redis-server: all-or-nothing carts, TTL expiry, confirm, release, fulfil.
//! Each script runs atomically in Redis; durability is Redis's own
//! (`appendfsync always` or `everysec`, set by the harness that starts it).
//!
//! Keys: `s:{location}:{sku}` a hash (on_hand, reserved, version);
//! `l:{sku}` the set of its locations; `r:{id}` a hash (status, expires,
//! lines as JSON); `expiries` a sorted set of held ids by expiry. Scripts
//! touch the stock keys named in a reservation's lines, which Redis allows
//! on a single server (not in Redis Cluster).

use redis::aio::MultiplexedConnection;
use redis::Script;
use std::time::Duration;

use super::{
    now_ms, Backend, CountItem, Ids, Line, Record, ReservationView, Shortage, Transition,
    TransitionOutcome,
};

/// KEYS: the lines' stock keys, then `r:{id}`, then `expiries`.
/// ARGV: n, the n quantities, expires_ms, lines JSON, id.
/// Returns {} when held, else {line index, available, ...} of short lines.
const RESERVE: &str = r#"
local n = tonumber(ARGV[1])
local short = {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'on_hand', 'reserved')
  local avail = (tonumber(v[1]) or 0) - (tonumber(v[2]) or 0)
  if avail < tonumber(ARGV[1 + i]) then
    table.insert(short, i - 1)
    table.insert(short, math.max(avail, 0))
  end
end
if #short > 0 then return short end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'reserved', ARGV[1 + i])
  redis.call('HINCRBY', KEYS[i], 'version', 1)
end
redis.call('HSET', KEYS[n + 1], 'status', 'held', 'expires', ARGV[n + 2], 'lines', ARGV[n + 3])
redis.call('ZADD', KEYS[n + 2], ARGV[n + 2], ARGV[n + 4])
return {}
"#;

/// KEYS: `r:{id}`, `expiries`. ARGV: op (confirm, release, fulfil, expire),
/// now_ms, id. Returns {outcome, status, expires, lines}: outcome ok,
/// not_held, missing or not_due; one round trip answers the client.
const TRANSITION: &str = r#"
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', '', '0', '[]'} end
local op, now = ARGV[1], tonumber(ARGV[2])
local function unhold(fulfil)
  local lines = cjson.decode(redis.call('HGET', KEYS[1], 'lines'))
  for _, l in ipairs(lines) do
    local k = 's:' .. l.location .. ':' .. l.sku
    redis.call('HINCRBY', k, 'reserved', -l.qty)
    if fulfil then redis.call('HINCRBY', k, 'on_hand', -l.qty) end
    redis.call('HINCRBY', k, 'version', 1)
  end
end
local function set(s)
  redis.call('HSET', KEYS[1], 'status', s)
  redis.call('ZREM', KEYS[2], ARGV[3])
  return {'ok', s}
end
-- A held reservation past its expiry is expired, swept or not.
if st == 'held' and tonumber(redis.call('HGET', KEYS[1], 'expires')) <= now then
  unhold(false)
  set('expired')
  st = 'expired'
end
local function decide()
  if op == 'expire' then
    if st == 'held' then return {'not_due', st} end
    redis.call('ZREM', KEYS[2], ARGV[3])
    return {'ok', st}
  elseif op == 'confirm' then
    if st == 'confirmed' then return {'ok', st} end
    if st ~= 'held' then return {'not_held', st} end
    return set('confirmed')
  elseif op == 'release' then
    if st == 'released' or st == 'expired' then return {'ok', st} end
    if st == 'fulfilled' then return {'not_held', st} end
    unhold(false)
    return set('released')
  elseif op == 'fulfil' then
    if st ~= 'confirmed' then return {'not_held', st} end
    unhold(true)
    return set('fulfilled')
  end
  return {'missing', st}
end
local r = decide()
table.insert(r, redis.call('HGET', KEYS[1], 'expires'))
table.insert(r, redis.call('HGET', KEYS[1], 'lines'))
return r
"#;

/// KEYS: the stock key. ARGV: delta. Returns {1} or {0} (would go below 0).
const ADJUST: &str = r#"
local oh = tonumber(redis.call('HGET', KEYS[1], 'on_hand')) or 0
if oh + tonumber(ARGV[1]) < 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'on_hand', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
"#;

/// Expired reservations swept per round.
const SWEEP_BATCH_MAX: isize = 1_000;

pub struct RedisRival {
    conn: MultiplexedConnection,
    reserve: Script,
    transition: Script,
    adjust: Script,
    ids: Ids,
}

fn stock_key(location: &str, sku: &str) -> String {
    format!("s:{location}:{sku}")
}

fn err(e: redis::RedisError) -> String {
    format!("redis: {e}")
}

impl RedisRival {
    pub async fn connect(url: &str) -> Result<RedisRival, String> {
        let client = redis::Client::open(url).map_err(err)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(err)?;
        let rival = RedisRival {
            conn,
            reserve: Script::new(RESERVE),
            transition: Script::new(TRANSITION),
            adjust: Script::new(ADJUST),
            ids: Ids::new('x'),
        };
        Ok(rival)
    }

    /// Expires due reservations every 100 ms, as holdfast does within 1 s.
    pub fn spawn_sweeper(&self) {
        let (mut conn, script) = (self.conn.clone(), self.transition.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = now_ms();
                let due: Vec<String> = match redis::cmd("ZRANGEBYSCORE")
                    .arg("expiries")
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(SWEEP_BATCH_MAX)
                    .query_async(&mut conn)
                    .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "sweep");
                        continue;
                    }
                };
                for id in due {
                    let r: Result<Vec<String>, _> = script
                        .key(format!("r:{id}"))
                        .key("expiries")
                        .arg("expire")
                        .arg(now)
                        .arg(&id)
                        .invoke_async(&mut conn)
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "expire");
                    }
                }
            }
        });
    }

    async fn view(&self, id: &str) -> Result<Option<ReservationView>, String> {
        let mut c = self.conn.clone();
        let (status, expires, lines): (Option<String>, Option<u64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(format!("r:{id}"))
                .arg("status")
                .arg("expires")
                .arg("lines")
                .query_async(&mut c)
                .await
                .map_err(err)?;
        let (Some(status), Some(expires), Some(lines)) = (status, expires, lines) else {
            return Ok(None);
        };
        let lines: Vec<Line> = serde_json::from_str(&lines).map_err(|e| e.to_string())?;
        Ok(Some(ReservationView::new(id, &status, expires, lines)))
    }
}

impl Backend for RedisRival {
    async fn count(&self, items: Vec<CountItem>) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for it in &items {
            let k = stock_key(&it.location, &it.sku);
            pipe.hset(&k, "on_hand", it.on_hand)
                .ignore()
                .hincr(&k, "version", 1)
                .ignore()
                .sadd(format!("l:{}", it.sku), &it.location)
                .ignore();
        }
        let mut c = self.conn.clone();
        pipe.query_async::<()>(&mut c).await.map_err(err)
    }

    async fn record(&self, location: &str, sku: &str) -> Result<Record, String> {
        let mut c = self.conn.clone();
        let (oh, res, ver): (Option<i64>, Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(stock_key(location, sku))
            .arg("on_hand")
            .arg("reserved")
            .arg("version")
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(Record::new(
            location,
            sku,
            oh.unwrap_or(0),
            res.unwrap_or(0),
            ver.unwrap_or(0),
        ))
    }

    async fn availability(&self, sku: &str) -> Result<Vec<(String, i64)>, String> {
        let mut c = self.conn.clone();
        let locs: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("l:{sku}"))
            .query_async(&mut c)
            .await
            .map_err(err)?;
        let mut pipe = redis::pipe();
        for l in &locs {
            pipe.cmd("HMGET")
                .arg(stock_key(l, sku))
                .arg("on_hand")
                .arg("reserved");
        }
        let vals: Vec<(Option<i64>, Option<i64>)> = pipe.query_async(&mut c).await.map_err(err)?;
        Ok(locs
            .into_iter()
            .zip(vals)
            .map(|(l, (oh, r))| (l, (oh.unwrap_or(0) - r.unwrap_or(0)).max(0)))
            .collect())
    }

    async fn adjust(
        &self,
        location: &str,
        sku: &str,
        delta: i64,
    ) -> Result<Result<Record, Record>, String> {
        let mut c = self.conn.clone();
        let done: i64 = self
            .adjust
            .key(stock_key(location, sku))
            .arg(delta)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        let r = self.record(location, sku).await?;
        Ok(if done == 1 { Ok(r) } else { Err(r) })
    }

    async fn reserve(
        &self,
        lines: Vec<Line>,
        ttl_s: u64,
    ) -> Result<Result<ReservationView, Vec<Shortage>>, String> {
        let id = self.ids.next();
        let expires_ms = now_ms() + ttl_s * 1000;
        let json = serde_json::to_string(&lines).map_err(|e| e.to_string())?;
        let mut inv = self.reserve.prepare_invoke();
        for l in &lines {
            inv.key(stock_key(&l.location, &l.sku));
        }
        inv.key(format!("r:{id}")).key("expiries").arg(lines.len());
        for l in &lines {
            inv.arg(l.qty);
        }
        inv.arg(expires_ms).arg(json).arg(&id);
        let mut c = self.conn.clone();
        let short: Vec<i64> = inv.invoke_async(&mut c).await.map_err(err)?;
        if short.is_empty() {
            return Ok(Ok(ReservationView::new(&id, "held", expires_ms, lines)));
        }
        Ok(Err(short
            .chunks(2)
            .filter_map(|p| {
                let l = lines.get(usize::try_from(*p.first()?).ok()?)?;
                Some(Shortage {
                    sku: l.sku.clone(),
                    location: l.location.clone(),
                    requested: l.qty,
                    available: *p.get(1)?,
                })
            })
            .collect()))
    }

    async fn transition(&self, id: &str, t: Transition) -> Result<TransitionOutcome, String> {
        let op = match t {
            Transition::Confirm => "confirm",
            Transition::Release => "release",
            Transition::Fulfil => "fulfil",
        };
        let mut c = self.conn.clone();
        let out: Vec<String> = self
            .transition
            .key(format!("r:{id}"))
            .key("expiries")
            .arg(op)
            .arg(now_ms())
            .arg(id)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        match out.first().map(String::as_str) {
            Some("ok") => {
                let status = out.get(1).cloned().unwrap_or_default();
                let expires: u64 = out.get(2).and_then(|e| e.parse().ok()).unwrap_or(0);
                let lines: Vec<Line> = out
                    .get(3)
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or_default();
                Ok(TransitionOutcome::Done(ReservationView::new(
                    id, &status, expires, lines,
                )))
            }
            Some("not_held") => Ok(TransitionOutcome::NotHeld(
                out.get(1).cloned().unwrap_or_default(),
            )),
            _ => Ok(TransitionOutcome::NotFound),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ReservationView>, String> {
        self.view(id).await
    }
}
