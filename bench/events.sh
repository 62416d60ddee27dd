#!/usr/bin/env bash
# Events (issue 4): a durable queue into a trivial wasm function, cron
# punctuality, and a document write fanned out to live-query WebSockets.
# Each run waits for the trigger to drain what was published (at most four
# times the publishing time) before the next starts.
#
#   bench/events.sh [RATE] [SECONDS] [CLIENTS] [WRITES]
#                   (defaults 10000, 10, 1000, 20)
#
# Server on core 0, load on core 1 (release builds). The queue run
# publishes RATE messages a second to topic `bench` (read by the hello
# guest's trigger, concurrency 64) for SECONDS, then waits for the trigger
# to drain; a second run publishes as fast as four publishers can (RATE
# 1000000) to find the delivery ceiling. Latencies come from the server's histogram
# (`wok_event_delivery_latency_seconds`): publish (logged) to acknowledged
# delivery.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RATE="${1:-10000}"
SECONDS_PER_RUN="${2:-10}"
CLIENTS="${3:-1000}"
WRITES="${4:-20}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -p cli -p bench --bin wok --bin events-bench >/dev/null
WOK="$ROOT/target/release/wok"
BENCH="$ROOT/target/release/events-bench"
HELLO="$(ls -t target/guests/wasm32-wasip2/release/hello.wasm | head -1)"

DATA="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

PORT=18293
taskset -c 0 "$WOK" up --listen "127.0.0.1:$PORT" --data "$DATA/wok" >"$DATA/wok.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  sleep 0.05
done
URL="http://127.0.0.1:$PORT"
TOKEN="$(cat "$DATA/wok/admin-token")"
export WOK_DATA="$DATA/wok"

# The same trivial function (hello) three ways: a fresh instance per event,
# reused instances, and a fresh instance per batch of 10 events.
for setup in "fresh;batch=1;" "reuse;batch=1;--reuse" "fresh;batch=10;"; do
  IFS=';' read -r isolation batch flags <<<"$setup"
  # shellcheck disable=SC2086
  "$WOK" deploy sink "$HELLO" --trigger "queue=bench;concurrency=64;$batch" --max-concurrency 64 $flags >/dev/null
  echo "== queue -> hello ($isolation instances, $batch), $RATE/s for ${SECONDS_PER_RUN}s"
  taskset -c 1 "$BENCH" queue "$URL" "$TOKEN" "$RATE" "$SECONDS_PER_RUN"
  echo "== queue -> hello ($isolation instances, $batch), $((RATE * SECONDS_PER_RUN)) messages at once"
  taskset -c 1 "$BENCH" burst "$URL" "$TOKEN" "$((RATE * SECONDS_PER_RUN))"
done

"$WOK" deploy ticker "$HELLO" --trigger "cron=* * * * * *" >/dev/null
echo "== cron every second, 30 ticks"
taskset -c 1 "$BENCH" cron "$URL" "$TOKEN" ticker 30

echo "== one document write to $CLIENTS live-query clients, $WRITES writes"
taskset -c 1 "$BENCH" fanout "$URL" "$TOKEN" "$CLIENTS" "$WRITES"
