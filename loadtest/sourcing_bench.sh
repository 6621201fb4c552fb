#!/usr/bin/env bash
# Planning carts on cluster nodes against one node, in one command
# (BENCHMARKS.md, "Sourcing on cluster nodes"): wrk posts
# /v1/sourcing/plan (3-line carts of 200 SKUs stocked at 20 stores, a door
# around them: loadtest/plan.lua) to
#   single     one node, the embedded default
#   leader     three nodes on a Redis of their own, through the leader
#              (the single-node engine; orders journaled and replicated)
#   follower   the same, through a follower (forwarded to the leader)
# alternating, ROUNDS times. With SCRIPT loadtest/orders.lua, the same
# for orders (BENCHMARKS.md, "Orders on cluster nodes").
# Usage: loadtest/sourcing_bench.sh [SECONDS] [ROUNDS] [SCRIPT]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
script=${3:-loadtest/plan.lua}
. loadtest/cluster_env.sh

wait_up() { # url
  for _ in $(seq 1 100); do
    curl -sf "$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not up: $1" >&2; return 1
}

start_single() { # sets url
  local p; p=$(port)
  HOLDFAST_LISTEN="127.0.0.1:$p" HOLDFAST_DATA_DIR="$tmp/single$RANDOM" RUST_LOG=warn target/release/holdfast serve >/dev/null 2>>"$tmp/nodes.log" &
  pids=($!)
  url="http://127.0.0.1:$p"
  wait_up "$url"
}

seed() { # the network at $url: 200 SKUs, 20 stores around (45.5, 9.5), 4,000 records
  python3 - "$url" <<'PY'
import json, sys, urllib.request
url = sys.argv[1]
def send(method, path, body):
    r = urllib.request.Request(url + path, data=json.dumps(body).encode(), method=method,
                               headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r) as a:
        assert a.status == 200, (path, a.status)
send("POST", "/v1/skus/batch", {"items": [{"sku": "A%d" % i, "name": "x"} for i in range(200)]})
for k in range(20):
    send("PUT", "/v1/locations/S%03d" % k, {"name": "s", "kind": "store", "lat": 45.0 + (k % 5) * 0.2,
         "lon": 9.0 + (k // 5) * 0.25, "priority": 10, "ship": True, "pickup": True, "active": True})
items = [{"location": "S%03d" % k, "sku": "A%d" % i, "on_hand": 1000 + (i * k) % 7}
         for k in range(20) for i in range(200) if (i + k) % 3 != 0]
send("POST", "/v1/inventory/batch", {"items": items})
PY
}

run() { # label
  seed
  local out
  out=$(wrk -t1 -c16 -d"${secs}s" --latency -s "$script" "$url" 2>&1)
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  printf '%-10s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

echo "$script (3-line carts), wrk -t1 -c16, $secs s a run, $rounds rounds"
for _ in $(seq 1 "$rounds"); do
  start_single; run single; stop_cluster
  start_cluster "$(cluster_file 3)" 3; run leader; stop_cluster
  start_cluster "$(cluster_file 3)" 3; url=$follower_url; run follower; stop_cluster
done
