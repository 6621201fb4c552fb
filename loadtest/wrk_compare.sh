#!/usr/bin/env bash
# The first HTTP figure: wrk (1 thread, 64 connections) against
# POST /v1/reservations of holdfast (fsync and none), beside the same wrk
# against a bare warp endpoint: the gap to the HTTP stack's limit.
# Usage: loadtest/wrk_compare.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release --bin holdfast --example bare_warp >/dev/null 2>&1
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

seed() {
  local b=$1
  for i in $(seq 0 999); do curl -s -o /dev/null -XPUT "$b/v1/skus/A$i" -d "{\"name\":\"sku $i\"}"; done
  for j in $(seq 0 9); do curl -s -o /dev/null -XPUT "$b/v1/locations/S00$j" -d "{\"name\":\"s$j\",\"kind\":\"store\",\"lat\":45,\"lon\":9}"; done
  python3 - "$b" <<'PY'
import json, sys, urllib.request
b = sys.argv[1]
items = [{"location": f"S00{j}", "sku": f"A{i}", "on_hand": 100000000} for i in range(1000) for j in range(10)]
req = urllib.request.Request(b + "/v1/inventory/batch", data=json.dumps({"items": items}).encode(), method="POST", headers={"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
}

run() {
  local name=$1 url=$2
  local out
  out=$(wrk -t1 -c64 -d"${secs}s" --latency -s loadtest/reserve.lua "$url")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  local errors
  errors=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  echo "$name|$rps|$p50|$p99|${errors:-0}"
}

results=()
target/release/examples/bare_warp 127.0.0.1:18090 & sleep 0.5
results+=("$(run "bare warp (fixed 201)" http://127.0.0.1:18090)")
kill %1; wait %1 2>/dev/null || true
for d in none fsync; do
  HOLDFAST_LISTEN=127.0.0.1:18080 HOLDFAST_DATA_DIR="$tmp/$d" HOLDFAST_DURABILITY=$d RUST_LOG=warn target/release/holdfast serve &
  sleep 1
  seed http://127.0.0.1:18080
  results+=("$(run "holdfast durability=$d" http://127.0.0.1:18080)")
  kill %1; wait %1 2>/dev/null || true
done
base=$(echo "${results[0]}" | cut -d'|' -f2)
printf '%-28s %12s %9s %9s %9s  %s\n' target req/s "vs bare" p50 p99 non-2xx
for r in "${results[@]}"; do
  IFS='|' read -r name rps p50 p99 st <<<"$r"
  printf '%-28s %12s %8.2fx %9s %9s  %s\n' "$name" "$rps" "$(echo "$rps / $base" | bc -l)" "$p50" "$p99" "$st"
done
