#!/bin/bash
# Checkout beside webhook subscriptions and event-stream clients
# (BENCHMARKS.md, "Webhooks batched and niced"): each configuration a
# 10 s closed-loop checkout run, the server pinned to CPU 0 and the
# harness (load, receivers, stream clients) to CPU 1, rounds alternated.
#
#   BASE=/path/to/older/holdfast TAGS="base-none none all10-b100" ROUNDS="1 2 3" \
#     loadtest/webhooks_bench.sh
#
# Tags: base-none (the BASE binary, no subscription), none, all10-b1,
# all10-b100, some10-b1, some10-b100 (10 subscriptions of every type or
# of confirmations + crossings, batch 1 or 100), all1-b1, sse1000 (1,000
# stream clients of reservation.released), sse100all (100 of every
# type). Prints a line a run: round, tag, req/s, what the receivers and
# stream clients saw. Needs `cargo build --release --workspace`.
set -euf
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LT=$ROOT/target/release/loadtest
R=reservation.confirmed,stock.out,stock.back,stock.low
OUT=${OUT:-$(mktemp -d)}
for i in ${ROUNDS:-1 2 3}; do for tag in ${TAGS:-none all10-b100 some10-b100}; do
  bin=$ROOT/target/release/holdfast; n=0; t='*'; b=1; sse=0; st=stock.out,stock.back,stock.low
  case $tag in
    base-none) bin=${BASE:?BASE names the binary to compare with};;
    none) ;;
    all10-b1) n=10;; all10-b100) n=10; b=100;;
    some10-b1) n=10; t=$R;; some10-b100) n=10; t=$R; b=100;;
    all1-b1) n=1;;
    sse1000) sse=1000; st=reservation.released;;
    sse100all) sse=100; st='*';;
    *) echo "unknown tag $tag" >&2; exit 2;;
  esac
  "$LT" run --target holdfast --holdfast-bin "$bin" --scenario checkout --duration 10 --connections 16 \
    --webhooks $n --webhook-types "$t" --webhook-batch $b --sse-clients $sse --sse-types "$st" \
    --server-cpus 0 --client-cpus 1 --quiet --out "$OUT/$tag-$i" > "$OUT/$tag-$i.log" 2>&1
  echo "$i $tag $(awk '/^holdfast +checkout/ {print $4}' "$OUT/$tag-$i.log") $(grep -o 'webhooks:.*' "$OUT/$tag-$i.log" || true) $(grep -o '^ *event streams: [0-9]* clients.*' "$OUT/$tag-$i.log" || true)"
done; done
