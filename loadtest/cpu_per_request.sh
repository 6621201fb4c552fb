#!/bin/bash
# Server CPU and context switches per request under a closed-loop checkout.
#
#   loadtest/cpu_per_request.sh BIN [SECONDS]
#
# SCENARIO (default checkout) names the loadtest scenario, e.g. orders.
# BIN is a holdfast binary (extra server environment through SERVER_ENV,
# e.g. SERVER_ENV="HOLDFAST_SHARDS=1") or the word `ceiling`. The server
# runs alone on a free port with a fresh data directory; the harness warms
# it for 2 s, then runs `loadtest run --url` for SECONDS (default 8) and
# reads /proc before and after. Needs `cargo build --release --workspace`.
set -euo pipefail
BIN=$1
SECS=${2:-8}
SCENARIO=${SCENARIO:-checkout}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LT=$ROOT/target/release/loadtest
D=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$BIN" = ceiling ]; then
  "$LT" rival ceiling --listen "127.0.0.1:$PORT" > "$D/log" 2>&1 &
else
  # shellcheck disable=SC2086
  env ${SERVER_ENV:-} HOLDFAST_LISTEN="127.0.0.1:$PORT" HOLDFAST_DATA_DIR="$D/data" "$BIN" serve > "$D/log" 2>&1 &
fi
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
ctx() { cat /proc/"$PID"/task/*/status 2> /dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }
"$LT" run --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" --duration 2 --out "$D/warm" > /dev/null 2>&1
c0=$(cpu); x0=$(ctx)
"$LT" run --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" --duration "$SECS" --out "$D/run" > "$D/out" 2>&1
c1=$(cpu); x1=$(ctx)
n=$(awk '/ closed: / {print $6; exit}' "$D/out")
python3 -c "
n = $n; tck = $(getconf CLK_TCK)
print('$(basename "$BIN")', '${SERVER_ENV:-}', 'requests', n,
      'cpu_us_per_request %.1f' % (($c1 - $c0) / tck * 1e6 / n),
      'context_switches_per_request %.2f' % (($x1 - $x0) / n))"
