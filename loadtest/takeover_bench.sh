#!/usr/bin/env bash
# Takeover time over KILLS kills of the leader (BENCHMARKS.md, "Cluster:
# one leader"): three nodes of the release build on a Redis of their own,
# cluster.toml's default lease (ttl_ms 3000, renew_ms 1000) unless TTL_MS
# says otherwise. Each round: a write through a follower every 20 ms; kill
# -9 of the leader; the time from the kill to the first write answered 200
# again (through a survivor, forwarded to the new leader); the old leader
# restarted, rejoins as a follower. Prints each time, then min, p50, p90,
# max. Usage: loadtest/takeover_bench.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
. loadtest/cluster_env.sh
f=$(cluster_file 3 "${TTL_MS:-3000}")
start_cluster "$f" 3
curl -sf -X PUT "$url/v1/skus/T" -H 'content-type: application/json' -d '{"name":"t"}' >/dev/null
times=()
for k in $(seq 1 "$kills"); do
  wait_leader "$f"
  victim=$leader
  survivor=$follower_url
  # Every node's copy caught up (a restarted node follows again).
  sleep 1
  t0=$(date +%s%N)
  kill -9 "${pids[$victim]}"
  wait "${pids[$victim]}" 2>/dev/null || true
  while true; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X PUT "$survivor/v1/skus/T" \
      -H 'content-type: application/json' -d "{\"name\":\"t$k\"}" || true)
    [ "$code" = 200 ] && break
    sleep 0.02
  done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  times+=("$ms")
  echo "kill $k (n$victim): writes answered again after $ms ms"
  start_node "$f" "$victim"
done
printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
v = [int(x) for x in sys.stdin]
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print("takeover over %d kills: min %d ms, p50 %d ms, p90 %d ms, max %d ms" % (len(v), v[0], q(0.5), q(0.9), v[-1]))'
stop_cluster
