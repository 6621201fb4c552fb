# Sourced by the cluster benches (cluster_bench.sh, sourcing_bench.sh): a
# scratch directory, a Redis of their own on a free port, and clusters of
# the release build on it, all stopped on exit.
#   cluster_file NODES SHARDS   writes a cluster.toml, prints its path
#   start_cluster FILE NODES    starts its nodes, waits until every shard
#                               is owned; sets url (n1's) and pids
#   stop_cluster                stops them
tmp=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null 2>&1 &
redis_pid=$!
pids=()
cleanup() { kill "${pids[@]}" "$redis_pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
sleep 0.5

cluster_file() { # nodes shards
  local f="$tmp/cluster-$RANDOM.toml"
  printf 'cluster = "bench%s"\nshards = %s\nredis_url = "redis://127.0.0.1:%s/"\n[replication]\ndurability = "replicated"\n' \
    "$RANDOM" "$2" "$rport" > "$f"
  for i in $(seq 1 "$1"); do
    printf '[[nodes]]\nid = "n%s"\nhttp = "127.0.0.1:%s"\ndata_dir = "%s/d%s-n%s"\n' \
      "$i" "$(port)" "$tmp" "$RANDOM" "$i" >> "$f"
  done
  echo "$f"
}

start_cluster() { # file nodes
  pids=()
  for i in $(seq 1 "$2"); do
    RUST_LOG=warn target/release/holdfast serve --cluster "$1" --node "n$i" >/dev/null 2>>"$tmp/nodes.log" &
    pids+=($!)
  done
  url="http://$(grep -m1 '^http' "$1" | cut -d'"' -f2)"
  for _ in $(seq 1 100); do
    owned=0
    for p in $(grep '^http' "$1" | cut -d'"' -f2); do
      n=$(curl -s "http://$p/v1/cluster" | grep -o '"owned_here":true' | wc -l || true)
      owned=$((owned + n))
    done
    [ "$owned" -ge "$(grep -m1 '^shards' "$1" | grep -o '[0-9]*')" ] && break
    sleep 0.2
  done
}

stop_cluster() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
