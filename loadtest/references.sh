#!/usr/bin/env bash
# Raw reference figures for the rivals' engines, without HTTP: the same
# operation as a one-line hold (conditional increment of `reserved`) through
# redis-benchmark (EVAL on a redis-server with appendfsync always, then
# everysec) and pgbench (a conditional UPDATE in its own transaction,
# synchronous_commit on, on a scratch database of the local PostgreSQL).
# Usage: loadtest/references.sh [seconds]   (needs redis-server,
# redis-benchmark, pgbench, psql; PostgreSQL at 127.0.0.1 as user postgres)
set -euo pipefail
secs=${1:-10}
tmp=$(mktemp -d)
db=holdfast_ref_$$
cleanup() {
  [ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# One hold: 1,000 SKUs at one location, the same check as the Lua rival.
HOLD="local v = redis.call('HMGET', KEYS[1], 'on_hand', 'reserved') if (tonumber(v[1]) or 1000000) - (tonumber(v[2]) or 0) >= 1 then return redis.call('HINCRBY', KEYS[1], 'reserved', 1) end return -1"

for fsync in always everysec; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$tmp/$fsync"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync "$fsync" \
    --dir "$tmp/$fsync" --daemonize no >"$tmp/redis-$fsync.log" 2>&1 &
  rpid=$!
  for _ in $(seq 50); do [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  n=$((secs * 40000))
  out=$(redis-benchmark -p "$port" -c 64 -n "$n" -r 1000 -q EVAL "$HOLD" 1 "s:L:A__rand_int__" | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second.*' | tail -1)
  echo "redis-benchmark EVAL hold, appendfsync $fsync, 64 clients: $out"
  kill "$rpid"; wait "$rpid" 2>/dev/null || true; rpid=
done

psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" postgres
psql -h 127.0.0.1 -U postgres -q "$db" <<'SQL'
CREATE TABLE stock (location text, sku text, on_hand bigint NOT NULL, reserved bigint NOT NULL DEFAULT 0,
                    version bigint NOT NULL DEFAULT 0, PRIMARY KEY (location, sku));
INSERT INTO stock (location, sku, on_hand) SELECT 'L', 'A' || i, 100000000 FROM generate_series(0, 999) i;
INSERT INTO stock (location, sku, on_hand) VALUES ('L', 'HOT', 100000000);
SQL
cat >"$tmp/spread.sql" <<'SQL'
\set s random(0, 999)
UPDATE stock SET reserved = reserved + 1, version = version + 1 WHERE location = 'L' AND sku = 'A' || :s AND on_hand - reserved >= 1;
SQL
cat >"$tmp/hot.sql" <<'SQL'
UPDATE stock SET reserved = reserved + 1, version = version + 1 WHERE location = 'L' AND sku = 'HOT' AND on_hand - reserved >= 1;
SQL
for w in spread hot; do
  out=$(pgbench -h 127.0.0.1 -U postgres -n -c 32 -j 2 -T "$secs" -f "$tmp/$w.sql" "$db" 2>&1 | grep -E '^tps' | head -1)
  echo "pgbench conditional UPDATE ($w SKUs), synchronous_commit on, 32 clients: $out"
done
