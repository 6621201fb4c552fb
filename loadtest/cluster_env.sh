# Sourced by the cluster benches (cluster_bench.sh, takeover_bench.sh,
# sourcing_bench.sh, follower_reads.sh): a scratch directory, a Redis of
# their own on a free port, and clusters of the release build on it, all
# stopped on exit.
#   cluster_file NODES [TTL_MS]  writes a cluster.toml, prints its path
#   start_cluster FILE NODES     starts its nodes, waits for a leader every
#                                node names; sets url (the leader's),
#                                follower_url (another node's, if any),
#                                leader (its index, 1-based) and pids
#   wait_leader FILE             waits again (after a kill); sets the same
#   stop_cluster                 stops them
tmp=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null 2>&1 &
redis_pid=$!
pids=()
cleanup() { kill "${pids[@]}" "$redis_pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
sleep 0.5

cluster_file() { # nodes [ttl_ms]
  local f="$tmp/cluster-$RANDOM.toml" ttl=${2:-3000}
  printf 'cluster = "bench%s"\nredis_url = "redis://127.0.0.1:%s/"\n[replication]\ndurability = "replicated"\n[lease]\nttl_ms = %s\nrenew_ms = %s\n' \
    "$RANDOM" "$rport" "$ttl" "$((ttl / 3))" > "$f"
  for i in $(seq 1 "$1"); do
    printf '[[nodes]]\nid = "n%s"\nhttp = "127.0.0.1:%s"\ndata_dir = "%s/d%s-n%s"\n' \
      "$i" "$(port)" "$tmp" "$RANDOM" "$i" >> "$f"
  done
  echo "$f"
}

start_node() { # file index (1-based)
  RUST_LOG=warn target/release/holdfast serve --cluster "$1" --node "n$2" >/dev/null 2>>"$tmp/nodes.log" &
  pids[$2]=$!
}

wait_leader() { # file
  local addrs
  mapfile -t addrs < <(grep '^http' "$1" | cut -d'"' -f2)
  for _ in $(seq 1 500); do
    leader=""
    for i in "${!addrs[@]}"; do
      if curl -s --max-time 1 "http://${addrs[$i]}/v1/cluster" | grep -q '"role":"leader"'; then
        leader=$((i + 1))
      fi
    done
    if [ -n "$leader" ]; then
      url="http://${addrs[$((leader - 1))]}"
      follower_url=""
      for i in "${!addrs[@]}"; do
        [ $((i + 1)) = "$leader" ] && continue
        follower_url="http://${addrs[$i]}"
        break
      done
      return 0
    fi
    sleep 0.02
  done
  echo "no leader" >&2
  return 1
}

start_cluster() { # file nodes
  pids=()
  for i in $(seq 1 "$2"); do start_node "$1" "$i"; done
  wait_leader "$1"
}

stop_cluster() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
