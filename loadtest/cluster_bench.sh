#!/usr/bin/env bash
# The cluster against one node, in one command (BENCHMARKS.md, "Cluster:
# one leader"): the checkout scenario, closed loop, alternating ROUNDS
# times between
#   single     one node, the embedded default (fsync, no Redis)
#   leader     three nodes on a Redis of their own (durability
#              "replicated": fsync, then Redis took the batch), the
#              harness talking to the leader
#   follower   the same cluster, the harness talking to a follower (every
#              write forwarded to the leader, one hop)
# For each run: requests/s, holds acknowledged, and the server CPU per
# acknowledged hold and per request, of every process serving it (the
# node; or the three nodes and Redis). Then the replication lag the
# followers of the last cluster saw (holdfast_cluster_replication_lag_
# seconds, p50/p99 by its buckets).
# Usage: loadtest/cluster_bench.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
bin=target/release
. loadtest/cluster_env.sh
tck=$(getconf CLK_TCK)

cpu_of() { # pids...: utime + stime, in ticks
  local t=0 p
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

run() { # label url pids...
  local label=$1 target=$2; shift 2
  local c0 c1 out line holds reqs
  c0=$(cpu_of "$@")
  out=$("$bin/loadtest" run --url "$target" --scenario checkout --duration "$secs" \
    --out "$tmp/out" 2>&1 | tee -a "$tmp/loadtest.log")
  c1=$(cpu_of "$@")
  line=$(echo "$out" | grep -E '^holdfast +checkout' | awk '{print $4}')
  holds=$(echo "$out" | awk '$1 == "reserve" {print $2; exit}')
  reqs=$(echo "$out" | awk '/ closed: / {print $6; exit}')
  verified=$(echo "$out" | grep -E '^holdfast +checkout' | awk '{print $NF}')
  python3 -c "
c = ($c1 - $c0) / $tck * 1e6
print('%-9s %8s req/s  %7d holds  %6.1f us CPU/hold  %5.1f us CPU/request  verified %s' % (
    '$label', '$line', $holds, c / $holds, c / $reqs, '$verified'))"
}

lag() { # file: the followers' replication lag
  for p in $(grep '^http' "$1" | cut -d'"' -f2); do
    curl -s "http://$p/metrics" | grep '^holdfast_cluster_replication_lag_seconds_bucket' || true
  done | python3 -c '
import sys, collections
b = collections.Counter()
for line in sys.stdin:
    le = line.split("le=\"")[1].split("\"")[0]
    b[le] += int(line.split()[-1])
keys = sorted((float("inf") if k == "+Inf" else float(k), k) for k in b)
total = b["+Inf"]
def q(p):
    for v, k in keys:
        if b[k] >= p * total:
            return "<= %g ms" % (v * 1000)
print("replication lag at the followers (%d entries applied): p50 %s, p99 %s" % (total, q(0.5), q(0.99)))'
}

echo "checkout, closed loop, $secs s a run, $rounds rounds"
for r in $(seq 1 "$rounds"); do
  sport=$(port)
  HOLDFAST_LISTEN="127.0.0.1:$sport" HOLDFAST_DATA_DIR="$tmp/single-$r" RUST_LOG=warn \
    "$bin/holdfast" serve >/dev/null 2>&1 &
  spid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$sport/healthz" >/dev/null && break; sleep 0.1; done
  run single "http://127.0.0.1:$sport" "$spid"
  kill "$spid"; wait "$spid" 2>/dev/null || true

  f=$(cluster_file 3)
  start_cluster "$f" 3
  run leader "$url" "${pids[@]}" "$redis_pid"
  stop_cluster
  f=$(cluster_file 3)
  start_cluster "$f" 3
  run follower "$follower_url" "${pids[@]}" "$redis_pid"
  lag "$f"
  stop_cluster
done
