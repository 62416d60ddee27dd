#!/usr/bin/env bash
# Exhaustion cases (issue 11): each runs on a fresh server beside a healthy
# client calling `hello` about 100 times a second, and reports that
# client's latency and the server's resident memory (at the start and its
# peak during the case); `baseline` is the healthy client alone (see
# abuse-bench's doc comment for the cases).
#
#   bench/abuse.sh [SECONDS] [CASE...]    (default 20 s a case, every case)
#
# Release builds; server and clients share the machine's cores. The server
# runs with its defaults, except a 2 s timeout for the spinning guest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_CASE="${1:-20}"
shift || true
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
# The attack opens thousands of connections.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -p cli -p bench --bin wok --bin abuse-bench >/dev/null
# The test guests (built by the test suite's build script).
cargo build --release -p guests >/dev/null
WOK="$ROOT/target/release/wok"
BENCH="$ROOT/target/release/abuse-bench"
GUESTS="$ROOT/target/guests/wasm32-wasip2/release"

CASES=("$@")
if [ ${#CASES[@]} -eq 0 ]; then
  CASES=(baseline connections async-flood batch-parse realtime live-queries spinners unknown-keys)
fi
DATA="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

PORT=18294
URL="http://127.0.0.1:$PORT"
echo "== wok abuse cases, ${SECONDS_PER_CASE}s each, a fresh server each ($(nproc) cores, shared by server and clients)"
for case in "${CASES[@]}"; do
  rm -rf "$DATA/wok"
  "$WOK" up --listen "127.0.0.1:$PORT" --data "$DATA/wok" >"$DATA/wok.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "$URL/healthz" && break
    sleep 0.05
  done
  TOKEN="$(cat "$DATA/wok/admin-token")"
  export WOK_DATA="$DATA/wok"
  "$WOK" deploy hello "$GUESTS/hello.wasm" >/dev/null
  "$WOK" deploy spin "$GUESTS/spin.wasm" --timeout 2s >/dev/null
  PUBLIC="$("$WOK" keys create --kind public --name abuse 2>/dev/null)"
  "$BENCH" "$URL" "$TOKEN" "$PUBLIC" "$SERVER" "$SECONDS_PER_CASE" "$case"
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  if grep -qiE "panicked" "$DATA/wok.log"; then
    echo "== server log ($case): panics"
    grep -iE "panicked" "$DATA/wok.log" | sort | uniq -c | sort -rn | head -20
  fi
done
