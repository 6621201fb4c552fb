#!/usr/bin/env bash
# The cluster against one node, in one command (BENCHMARKS.md, "Cluster"):
# the checkout scenario, closed loop, for each of
#   single      one node, the embedded default (fsync)
#   replicated  a one-node cluster on a Redis of its own (durability
#               "replicated": fsync, then Redis took the event), 4 shards
#   repl 1 shard the same with 1 shard (no cart split across shards)
#   3 nodes     three nodes on that Redis, the harness talking to n1 (the
#               others' shards forwarded; carts across nodes held by n1)
# alternating, ROUNDS times; then the replication lag the followers of the
# last 3-node run saw (holdfast_cluster_replication_lag_seconds, p50/p99 by
# its buckets). Usage: loadtest/cluster_bench.sh [SECONDS] [ROUNDS]
# With FEED=N, N stock-feed clients follow the stores through the node
# the harness talks to (on a cluster node: fed from its copies of the
# shards it follows and the engines of those it owns), and each run also
# prints the feed's line (changes delivered, latency from a change's ts).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
bin=target/release
. loadtest/cluster_env.sh

feed=()
[ -n "${FEED:-}" ] && feed=(--feed-clients "$FEED")

run() { # label [loadtest args]
  local label=$1; shift
  local out line
  out=$("$bin/loadtest" run --target holdfast --scenario checkout --duration "$secs" --quiet \
    --out "$tmp/out" "${feed[@]}" "$@" 2>&1 | tee -a "$tmp/loadtest.log")
  line=$(echo "$out" | grep -E '^holdfast +checkout' || true)
  printf '%-12s %s\n' "$label" "${line:-FAILED (see $tmp/loadtest.log)}"
  if [ -n "${FEED:-}" ]; then
    echo "$out" | grep -E '^ +feed:' | sed 's/^ */             /' || true
  fi
}

echo "checkout, closed loop, $secs s a run, $rounds rounds; columns as loadtest prints them"
for r in $(seq 1 "$rounds"); do
  run single
  f=$(cluster_file 1 4); start_cluster "$f" 1
  run replicated --url "$url"
  stop_cluster
  f=$(cluster_file 1 1); start_cluster "$f" 1
  run "repl 1 shard" --url "$url"
  stop_cluster
  f=$(cluster_file 3 12); start_cluster "$f" 3
  run "3 nodes" --url "$url"
  if [ "$r" = "$rounds" ]; then
    for p in $(grep '^http' "$f" | cut -d'"' -f2 | tail -n +2); do
      curl -s "http://$p/metrics" | grep '^holdfast_cluster_replication_lag_seconds_bucket'
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
  fi
  stop_cluster
done
