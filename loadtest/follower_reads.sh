#!/usr/bin/env bash
# Reads at a cluster node that follows the SKUs' shards (BENCHMARKS.md,
# "Cluster"): GET /v1/availability of SKUs other nodes own, answered from
# the node's copy (x-holdfast-read: follower) against the same reads with
# Cache-Control: no-cache (forwarded to the owners), alternating, ROUNDS
# times, wrk with 64 connections. Usage:
#   loadtest/follower_reads.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
bin=target/release
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null 2>&1 &
pids=($!)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
sleep 0.5
f="$tmp/cluster.toml"
printf 'cluster = "reads"\nshards = 12\nredis_url = "redis://127.0.0.1:%s/"\n' "$rport" > "$f"
addrs=()
for i in 1 2 3; do
  a="127.0.0.1:$(port)"; addrs+=("$a")
  printf '[[nodes]]\nid = "n%s"\nhttp = "%s"\ndata_dir = "%s/n%s"\n' "$i" "$a" "$tmp" "$i" >> "$f"
done
for i in 1 2 3; do
  RUST_LOG=warn "$bin/holdfast" serve --cluster "$f" --node "n$i" >/dev/null 2>>"$tmp/nodes.log" &
  pids+=($!)
done
for _ in $(seq 1 100); do
  owned=0
  for a in "${addrs[@]}"; do
    n=$(curl -s "http://$a/v1/cluster" | grep -o '"owned_here":true' | wc -l || true)
    owned=$((owned + n))
  done
  [ "$owned" -ge 12 ] && break
  sleep 0.2
done
n1="http://${addrs[0]}"; n2="http://${addrs[1]}"
curl -sf -XPUT "$n1/v1/locations/S1" -d '{"name":"s","kind":"store","lat":45.0,"lon":9.0}' >/dev/null
items=""
for i in $(seq 0 63); do
  curl -sf -XPUT "$n1/v1/skus/A$i" -d '{"name":"x"}' >/dev/null
  items="$items{\"location\":\"S1\",\"sku\":\"A$i\",\"on_hand\":100},"
done
curl -sf -XPOST "$n1/v1/inventory/batch" -d "{\"items\":[${items%,}]}" >/dev/null
# The SKUs n2 answers from its copies (their shards are others').
paths=()
for i in $(seq 0 63); do
  if curl -si "$n2/v1/availability/A$i" | grep -qi '^x-holdfast-read: follower'; then
    paths+=("/v1/availability/A$i")
  fi
done
echo "n2 follows the shards of ${#paths[@]} of 64 SKUs; wrk -c64 -t2 -d${secs}s, $rounds rounds"
lua="$tmp/reads.lua"
{
  echo "local paths = {"
  for p in "${paths[@]}"; do echo "  \"$p\","; done
  echo "}"
  echo 'local i = 0'
  echo 'request = function() i = i % #paths + 1; return wrk.format("GET", paths[i], headers) end'
  echo 'headers = {}'
  echo 'if os.getenv("OWNER") then headers["Cache-Control"] = "no-cache" end'
} > "$lua"
run() { # label [OWNER]
  local out
  out=$(env ${2:+OWNER=1} wrk -c64 -t2 -d"${secs}s" --latency -s "$lua" "$n2" 2>&1)
  printf '%-22s %s req/s, p50 %s, p99 %s, non-2xx %s\n' "$1" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '/ 50%/ {print $2}')" \
    "$(echo "$out" | awk '/ 99%/ {print $2}')" \
    "$(echo "$out" | awk '/Non-2xx/ {print $NF}' | grep . || echo 0)"
}
for _ in $(seq 1 "$rounds"); do
  run "follower copy"
  run "forwarded to owner" owner
done
