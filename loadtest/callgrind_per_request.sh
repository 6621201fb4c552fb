#!/bin/bash
# Instructions executed by the server per request (callgrind's Ir: counts
# that repeat where timings on this machine do not), closed-loop checkout.
#
#   loadtest/callgrind_per_request.sh BIN [SHORT_S] [LONG_S]
#
# Runs the server BIN under `valgrind --tool=callgrind`, uninstrumented
# until it serves and a 2 s warm-up ran, then instrumented; runs `loadtest run --url` once for SHORT_S and once for
# LONG_S seconds (each sets up its own network of --skus 200 x
# --locations 5: the same work both times), and prints
# (Ir_long - Ir_short) / (requests_long - requests_short): what one more
# request costs, setup cancelled out (idle ticks are not: they grow with
# the seconds, and count in the figure). SCENARIO (default
# checkout) names the scenario. Needs `cargo build --release --workspace`.
set -euo pipefail
BIN=$1
SHORT=${2:-4}
LONG=${3:-12}
SCENARIO=${SCENARIO:-checkout}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LT=$ROOT/target/release/loadtest
D=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HOLDFAST_LISTEN="127.0.0.1:$PORT" HOLDFAST_DATA_DIR="$D/data" valgrind --tool=callgrind \
  --instr-atstart=no --callgrind-out-file="$D/cg.out" "$BIN" serve > "$D/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
run() {
  "$LT" run --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" --duration "$1" \
    --connections 4 --skus 200 --locations 5 --no-verify --timeout-s 60 --out "$D/run$1" > "$D/out$1" 2>&1
  awk '/ closed: / {print $6; exit}' "$D/out$1"
}
# Ir since the last dump (a dump zeroes the counts): the newest dump's.
ir() {
  callgrind_control -d "$PID" > /dev/null 2>&1
  sleep 1
  local f
  f=$(ls -t "$D"/cg.out* | head -1)
  # KEEP=DIR keeps the long run's profile there (callgrind_annotate).
  if [ -n "${KEEP:-}" ]; then cp "$f" "$KEEP/callgrind.out"; fi
  awk '/^(summary|totals):/ {print $2; exit}' "$f"
}
run 2 > /dev/null
callgrind_control -i on "$PID" > /dev/null 2>&1
ir > /dev/null
n1=$(run "$SHORT")
i1=$(ir)
n2=$(run "$LONG")
i2=$(ir)
python3 -c "
i1, i2, n1, n2 = $i1, $i2, $n1, $n2
print('$(basename "$BIN")', 'requests', n1, n2, 'Ir', i1, i2,
      'Ir_per_request %.0f' % ((i2 - i1) / (n2 - n1)))"
