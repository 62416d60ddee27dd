#!/usr/bin/env bash
# Side-by-side HTTP benchmark of wok against its baselines, in one run.
#
#   bench/run.sh [SECONDS_PER_RUN] [FUNCTIONS_FOR_RESTART_TEST]   (defaults: 10, 1000)
#
# Servers are pinned to core 0 and wrk (64 connections, 1 thread) to core 1.
# Compared on the same hello answer:
#   - hyper-hello (crates/bench): a minimal hyper server, the ceiling;
#   - raw wasmtime (crates/bench/benches/raw_wasmtime.rs): in-process, the
#     work of one request with a fresh and with a reused instance; then the
#     same served by hyper with nothing else (the most a wasmtime-based
#     server can do), and hyper-hello spinning that long per request;
#   - `wasmtime serve -S cli=y` on the same component, fresh instance per
#     request, if a `wasmtime` 48.0.8 is on PATH (install it once, outside the
#     repo: `cargo install wasmtime-cli@48.0.8 --locked`, ~30 min here);
#   - wok /fn/hello with a fresh instance per request, and with --reuse.
# Then: first request after a deploy, restart-to-ready and resident memory
# with N deployed functions. Prints ratios; record them in BENCHMARKS.md.
#
#   BASELINE_WOK=/path/to/older/wok bench/run.sh   also measures /fn/hello
#   (fresh and reuse) on that binary beside this checkout's, alternating
#   (bench/baseline.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_RUN="${1:-10}"
FUNCTIONS="${2:-1000}"
# wasmtime captures a backtrace per store drop when this is set (see ECOSYSTEM).
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -p cli -p bench --bins -p guests >/dev/null
# The raw wasmtime baseline is a bench target of crates/bench (see its doc).
RAW="$(cargo bench -p bench --bench raw_wasmtime --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "raw_wasmtime" and m.get("executable"):
        print(m["executable"])')"
WOK="$ROOT/target/release/wok"
HYPER="$ROOT/target/release/hyper-hello"
HELLO="$ROOT/target/guests/wasm32-wasip2/release/hello.wasm"

PIDS=()
DATA="$(mktemp -d)"
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA" "${BASE_DATA:-}"
}
trap cleanup EXIT

wait_for() { # URL
  for _ in $(seq 1 600); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for $1" >&2; exit 1
}

rps() { # URL -> requests per second
  taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" "$1" | awk '/Requests\/sec/ {print $2}'
}

ms_since() { # start-ns
  echo "scale=2; ($(date +%s%N) - $1) / 1000000" | bc
}

echo "== raw wasmtime in-process (the work of one request, no server): $RAW"
taskset -c 0 "$RAW" | tee "$DATA.raw"
RAW_US="$(tail -1 "$DATA.raw")"

WOK_PORT=18181 HYPER_PORT=18182 WASMTIME_PORT=18183 RAW_PORT=18184 SPIN_PORT=18185
taskset -c 0 "$WOK" up --listen "127.0.0.1:$WOK_PORT" --data "$DATA" >/dev/null 2>"$DATA.log" &
PIDS+=($!)
WOK_PID=$!
wait_for "http://127.0.0.1:$WOK_PORT/healthz"
export WOK_DATA="$DATA"
"$WOK" deploy hello "$HELLO" >/dev/null
"$WOK" deploy hello-reuse "$HELLO" --reuse >/dev/null

taskset -c 0 "$HYPER" "127.0.0.1:$HYPER_PORT" >/dev/null &
PIDS+=($!)
wait_for "http://127.0.0.1:$HYPER_PORT/"
taskset -c 0 "$RAW" --serve "127.0.0.1:$RAW_PORT" >/dev/null &
PIDS+=($!)
wait_for "http://127.0.0.1:$RAW_PORT/"
taskset -c 0 "$HYPER" "127.0.0.1:$SPIN_PORT" "$RAW_US" >/dev/null &
PIDS+=($!)
wait_for "http://127.0.0.1:$SPIN_PORT/"

HAVE_WASMTIME=no
if command -v wasmtime >/dev/null && wasmtime --version | grep -q "48.0.8"; then
  taskset -c 0 wasmtime serve -S cli=y --addr "127.0.0.1:$WASMTIME_PORT" "$HELLO" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_for "http://127.0.0.1:$WASMTIME_PORT/"
  HAVE_WASMTIME=yes
fi

echo "== throughput: wrk -t1 -c64 -d${SECONDS_PER_RUN}s, server on core 0, wrk on core 1"
HYPER_RPS=$(rps "http://127.0.0.1:$HYPER_PORT/")
FRESH_RPS=$(rps "http://127.0.0.1:$WOK_PORT/fn/hello")
REUSE_RPS=$(rps "http://127.0.0.1:$WOK_PORT/fn/hello-reuse")
printf '%-36s %10s req/s\n' "hyper-hello (ceiling)" "$HYPER_RPS"
printf '%-36s %10s req/s  (%.2f of hyper)\n' "wok /fn/hello, fresh instance" "$FRESH_RPS" "$(echo "$FRESH_RPS / $HYPER_RPS" | bc -l)"
printf '%-36s %10s req/s  (%.2f of hyper)\n' "wok /fn/hello-reuse, reuse" "$REUSE_RPS" "$(echo "$REUSE_RPS / $HYPER_RPS" | bc -l)"
RAW_RPS=$(rps "http://127.0.0.1:$RAW_PORT/")
SPIN_RPS=$(rps "http://127.0.0.1:$SPIN_PORT/")
printf '%-36s %10s req/s  (wok fresh is %.2f of it)\n' "hyper + raw wasmtime, nothing else" "$RAW_RPS" "$(echo "$FRESH_RPS / $RAW_RPS" | bc -l)"
printf '%-36s %10s req/s\n' "hyper-hello spinning ${RAW_US} us/request" "$SPIN_RPS"
if [ "$HAVE_WASMTIME" = yes ]; then
  WASMTIME_RPS=$(rps "http://127.0.0.1:$WASMTIME_PORT/")
  printf '%-36s %10s req/s\n' "wasmtime serve -S cli=y (fresh)" "$WASMTIME_RPS"
  printf '%-36s %10.2fx\n' "wok fresh / wasmtime serve" "$(echo "$FRESH_RPS / $WASMTIME_RPS" | bc -l)"
  printf '%-36s %10.2fx\n' "hyper + raw wasmtime / wasmtime serve" "$(echo "$RAW_RPS / $WASMTIME_RPS" | bc -l)"
  printf '%-36s %10.2fx\n' "spinning hyper / wasmtime serve" "$(echo "$SPIN_RPS / $WASMTIME_RPS" | bc -l)"
else
  echo "wasmtime 48.0.8 not on PATH: the wasmtime serve comparison was skipped"
fi

if [ -n "${BASELINE_WOK:-}" ]; then
  source bench/baseline.sh
  BASE_PORT=18186
  start_baseline "$BASE_PORT"
  WOK_DATA="$BASE_DATA" "$BASELINE_WOK" deploy hello "$HELLO" >/dev/null
  WOK_DATA="$BASE_DATA" "$BASELINE_WOK" deploy hello-reuse "$HELLO" --reuse >/dev/null
  echo "== this checkout against $BASELINE_WOK, ${ROUNDS:-3} alternating rounds"
  compare "wok /fn/hello, fresh instance" "rps http://127.0.0.1:$WOK_PORT/fn/hello" "rps http://127.0.0.1:$BASE_PORT/fn/hello"
  compare "wok /fn/hello-reuse, reuse" "rps http://127.0.0.1:$WOK_PORT/fn/hello-reuse" "rps http://127.0.0.1:$BASE_PORT/fn/hello-reuse"
  # Its functions for the restart comparison at the end.
  seq 1 "$FUNCTIONS" | xargs -P 2 -I{} curl -s -o /dev/null -f -H "authorization: Bearer $BASE_TOKEN" \
    --data-binary @"$HELLO" "http://127.0.0.1:$BASE_PORT/v1/functions/many-{}/versions"
  kill -TERM "$BASE_PID"; wait "$BASE_PID" 2>/dev/null || true
fi

echo "== latency with one connection: wrk -t1 -c1 --latency (seen by the client, loopback included)"
latency() { # LABEL URL
  taskset -c 1 wrk -t1 -c1 -d"${SECONDS_PER_RUN}s" --latency "$2" |
    awk -v label="$1" '$1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2} END {printf "%-36s p50 %8s  p99 %8s\n", label, p50, p99}'
}
latency "hyper-hello" "http://127.0.0.1:$HYPER_PORT/"
latency "wok /fn/hello, fresh instance" "http://127.0.0.1:$WOK_PORT/fn/hello"
latency "wok /fn/hello-reuse, reuse" "http://127.0.0.1:$WOK_PORT/fn/hello-reuse"
if [ "$HAVE_WASMTIME" = yes ]; then
  latency "wasmtime serve -S cli=y (fresh)" "http://127.0.0.1:$WASMTIME_PORT/"
fi

echo "== server side, request -> response head (wok_response_head_seconds over a -c1 run)"
head_quantiles() { # LABEL URL
  local before after
  before="$(curl -s -H "Authorization: Bearer $(cat "$WOK_DATA/metrics-token")" "http://127.0.0.1:$WOK_PORT/metrics")"
  taskset -c 1 wrk -t1 -c1 -d"${SECONDS_PER_RUN}s" "$2" >/dev/null
  after="$(curl -s -H "Authorization: Bearer $(cat "$WOK_DATA/metrics-token")" "http://127.0.0.1:$WOK_PORT/metrics")"
  python3 - "$1" <(echo "$before") <(echo "$after") <<'PY'
import re, sys
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'wok_response_head_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
before, after = buckets(sys.argv[2]), buckets(sys.argv[3])
counts = sorted(((float("inf") if le == "+Inf" else float(le)), after[le] - before.get(le, 0)) for le in after)
total = counts[-1][1]
def quantile(q):
    for le, count in counts:
        if count >= q * total:
            return "%.0f us" % (le * 1e6) if le != float("inf") else "inf"
print("%-36s p50 <= %-8s p99 <= %-8s (%d requests)" % (sys.argv[1], quantile(0.5), quantile(0.99), total))
PY
}
head_quantiles "wok /fn/hello, fresh instance" "http://127.0.0.1:$WOK_PORT/fn/hello"
head_quantiles "wok /fn/hello-reuse, reuse" "http://127.0.0.1:$WOK_PORT/fn/hello-reuse"

echo "== first request after deploy (deploy call returned -> response complete)"
for i in 1 2 3 4 5; do
  "$WOK" deploy "fresh-$i" "$HELLO" >/dev/null
  start=$(date +%s%N)
  curl -s -o /dev/null "http://127.0.0.1:$WOK_PORT/fn/fresh-$i"
  echo "  deploy $i: $(ms_since "$start") ms"
done

echo "== $FUNCTIONS deployed functions"
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
BEFORE=$(rss_kib "$WOK_PID")
TOKEN="$(cat "$DATA/admin-token")"
seq 1 "$FUNCTIONS" | xargs -P 2 -I{} curl -s -o /dev/null -f -H "authorization: Bearer $TOKEN" \
  --data-binary @"$HELLO" "http://127.0.0.1:$WOK_PORT/v1/functions/many-{}/versions"
sleep 1
AFTER=$(rss_kib "$WOK_PID")
printf 'resident memory: %s KiB before, %s KiB after -> %.1f KiB per idle deployed function\n' \
  "$BEFORE" "$AFTER" "$(echo "($AFTER - $BEFORE) / $FUNCTIONS" | bc -l)"
kill -TERM "$WOK_PID"; wait "$WOK_PID" || true
start=$(date +%s%N)
taskset -c 0 "$WOK" up --listen "127.0.0.1:$WOK_PORT" --data "$DATA" >"$DATA.out" 2>>"$DATA.log" &
PIDS+=($!)
WOK_PID=$!
until grep -q "listening" "$DATA.out" 2>/dev/null; do sleep 0.005; done
echo "restart to ready with $((FUNCTIONS + 7)) functions: $(ms_since "$start") ms"
curl -s "http://127.0.0.1:$WOK_PORT/fn/many-$FUNCTIONS"
printf 'resident memory after restart: %s KiB\n' "$(rss_kib "$WOK_PID")"

if [ -n "${BASELINE_WOK:-}" ]; then
  kill -TERM "$WOK_PID"; wait "$WOK_PID" 2>/dev/null || true
  echo "== restart to ready, this checkout against $BASELINE_WOK, ${ROUNDS:-3} alternating rounds"
  compare "restart to ready with about $FUNCTIONS functions" \
    "ready_ms $WOK $DATA $WOK_PORT" "ready_ms $BASELINE_WOK $BASE_DATA $BASE_PORT" ms
fi
