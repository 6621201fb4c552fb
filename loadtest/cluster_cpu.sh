#!/usr/bin/env bash
# Where a hold's CPU goes on a three-node cluster (BENCHMARKS.md, "Cluster:
# one leader"): the checkout scenario for 10 s through the leader (or, with
# the argument follower, a follower), then each node's and Redis's CPU
# (utime + stime) per acknowledged hold. Usage: loadtest/cluster_cpu.sh [leader|follower]
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/cluster_env.sh
tck=$(getconf CLK_TCK)
f=$(cluster_file 3)
start_cluster "$f" 3
target=${1:-leader}
[ "$target" = follower ] && u=$follower_url || u=$url
declare -A c0
for i in 1 2 3; do c0[$i]=$(awk '{print $14+$15}' /proc/${pids[$i]}/stat); done
r0=$(awk '{print $14+$15}' /proc/$redis_pid/stat)
out=$(target/release/loadtest run --url "$u" --scenario checkout --duration 10 --out $tmp/o 2>&1)
holds=$(echo "$out" | awk '$1 == "reserve" {print $2; exit}')
echo "leader n$leader; holds $holds"
for i in 1 2 3; do c1=$(awk '{print $14+$15}' /proc/${pids[$i]}/stat); echo "n$i: $(( (c1 - ${c0[$i]}) * 1000000 / tck / holds )) us/hold"; done
r1=$(awk '{print $14+$15}' /proc/$redis_pid/stat); echo "redis: $(( (r1 - r0) * 1000000 / tck / holds )) us/hold"
stop_cluster
