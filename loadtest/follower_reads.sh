#!/usr/bin/env bash
# Reads at a cluster follower (BENCHMARKS.md, "Cluster"): GET
# /v1/availability answered from the follower's copy (x-holdfast-read:
# follower) against the same reads with Cache-Control: no-cache
# (forwarded to the leader), alternating, ROUNDS times, wrk with 64
# connections. Usage:
#   loadtest/follower_reads.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
bin=target/release
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
. loadtest/cluster_env.sh
start_cluster "$(cluster_file 3)" 3
n1=$url; n2=$follower_url
curl -sf -XPUT "$n1/v1/locations/S1" -d '{"name":"s","kind":"store","lat":45.0,"lon":9.0}' >/dev/null
items=""
for i in $(seq 0 63); do
  curl -sf -XPUT "$n1/v1/skus/A$i" -d '{"name":"x"}' >/dev/null
  items="$items{\"location\":\"S1\",\"sku\":\"A$i\",\"on_hand\":100},"
done
curl -sf -XPOST "$n1/v1/inventory/batch" -d "{\"items\":[${items%,}]}" >/dev/null
# The SKUs n2 answers from its copy (every one, once it has read them).
sleep 1
paths=()
for i in $(seq 0 63); do
  if curl -si "$n2/v1/availability/A$i" | grep -qi '^x-holdfast-read: follower'; then
    paths+=("/v1/availability/A$i")
  fi
done
echo "the follower answers ${#paths[@]} of 64 SKUs from its copy; wrk -c64 -t2 -d${secs}s, $rounds rounds"
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
  run "forwarded to leader" owner
done
