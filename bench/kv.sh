#!/usr/bin/env bash
# Key-value over REST against Redis, side by side in one run (issue 3):
#
#   bench/kv.sh [SECONDS_PER_RUN]   (default 10)
#
# Servers on core 0, load on core 1, 64 connections. wok: durable PUT
# (SQLite, synchronous=FULL) and GET of random keys among 10,000 in one
# store, through wrk with the admin token. Redis from Debian's packages with
# appendonly yes, appendfsync everysec: redis-benchmark SET and GET, same
# key space, 64 clients. Prints requests per second and the ratios.
#
#   BASELINE_WOK=/path/to/older/wok bench/kv.sh   also measures PUT and GET
#   on that binary beside this checkout's, alternating (bench/baseline.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_RUN="${1:-10}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

for tool in wrk redis-server; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing $tool (Debian package)" >&2
    apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null
  fi
done
cargo build --release -p cli >/dev/null
WOK="$ROOT/target/release/wok"

DATA="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA" "${BASE_DATA:-}"
}
trap cleanup EXIT

WOK_PORT=18281 REDIS_PORT=18282
taskset -c 0 "$WOK" up --listen "127.0.0.1:$WOK_PORT" --data "$DATA/wok" >/dev/null 2>&1 &
PIDS+=($!)
mkdir -p "$DATA/redis"
taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" \
  --appendonly yes --appendfsync everysec --save '' >/dev/null &
PIDS+=($!)
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$WOK_PORT/healthz" && break
  sleep 0.05
done
TOKEN="$(cat "$DATA/wok/admin-token")"

source bench/wrk-scripts.sh
scripts() { kv_scripts "$@"; } # PREFIX TOKEN: PREFIX-put.lua and PREFIX-get.lua
scripts "$DATA/wok" "$TOKEN"

rps() { # SCRIPT [PORT]
  taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" -s "$1" "http://127.0.0.1:${2:-$WOK_PORT}" |
    awk '/Requests\/sec/ {print $2}'
}
redis_rps() { # TEST
  taskset -c 1 redis-benchmark -p "$REDIS_PORT" -c 64 -n $((SECONDS_PER_RUN * 30000)) \
    -r 10000 -d 64 -t "$1" -q 2>/dev/null | tr '\r' '\n' | awk '/requests per second/ {print $2}'
}

echo "== key-value, 64 connections, server on core 0, load on core 1, 10,000 keys, 64-byte values"
WOK_SET=$(rps "$DATA/wok-put.lua")
WOK_GET=$(rps "$DATA/wok-get.lua")
REDIS_SET=$(redis_rps set)
REDIS_GET=$(redis_rps get)
printf '%-44s %10s req/s\n' "redis SET (appendfsync everysec)" "$REDIS_SET"
printf '%-44s %10s req/s  (%.2f of Redis)\n' "wok PUT /v1/kv (durable: fsync before 200)" "$WOK_SET" "$(echo "$WOK_SET / $REDIS_SET" | bc -l)"
printf '%-44s %10s req/s\n' "redis GET" "$REDIS_GET"
printf '%-44s %10s req/s  (%.2f of Redis)\n' "wok GET /v1/kv" "$WOK_GET" "$(echo "$WOK_GET / $REDIS_GET" | bc -l)"

if [ -n "${BASELINE_WOK:-}" ]; then
  source bench/baseline.sh
  BASE_PORT=18283
  start_baseline "$BASE_PORT"
  scripts "$DATA/baseline" "$BASE_TOKEN"
  echo "== this checkout against $BASELINE_WOK, ${ROUNDS:-3} alternating rounds"
  compare "PUT /v1/kv" "rps $DATA/wok-put.lua" "rps $DATA/baseline-put.lua $BASE_PORT"
  compare "GET /v1/kv" "rps $DATA/wok-get.lua" "rps $DATA/baseline-get.lua $BASE_PORT"
fi
