#!/usr/bin/env bash
# Documents (issue 3): an equality + range query served by an index over
# 1,000,000 documents; target p99 <= 5 ms.
#
#   bench/docs.sh [DOCUMENTS] [SECONDS_PER_RUN]   (defaults 1000000, 10)
#
# Loads DOCUMENTS documents {city (100 values), age (0-99), name, score}
# through POST /v1/docs/_batch (500 a batch), declares the index
# [city, age] (timed: it fills from the documents already there), then runs
# wrk on POST /v1/docs/people/_query with a random
# `city == C and age >= A and age < A+3`, limit 20 (about 300 matches of
# which the first 20 are returned), at 1 and at 16 connections. Server on
# core 0, load on core 1. Prints wrk's latency distribution.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DOCUMENTS="${1:-1000000}"
SECONDS_PER_RUN="${2:-10}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -p cli >/dev/null
WOK="$ROOT/target/release/wok"

DATA="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

PORT=18291
taskset -c 0 "$WOK" up --listen "127.0.0.1:$PORT" --data "$DATA/wok" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  sleep 0.05
done
TOKEN="$(cat "$DATA/wok/admin-token")"

echo "loading $DOCUMENTS documents"
start=$(date +%s.%N)
taskset -c 1 python3 - "$PORT" "$TOKEN" "$DOCUMENTS" <<'PY'
import json, random, sys, urllib.request
port, token, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(7)
url = f"http://127.0.0.1:{port}/v1/docs/_batch"
for start in range(0, total, 500):
    writes = [{"op": "set", "collection": "people", "id": f"u{n:07d}",
               "data": {"city": f"city-{random.randrange(100)}", "age": random.randrange(100),
                        "name": f"user {n}", "score": random.random()}}
              for n in range(start, min(start + 500, total))]
    request = urllib.request.Request(url, data=json.dumps({"writes": writes}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
PY
end=$(date +%s.%N)
echo "loaded in $(echo "$end - $start" | bc) s"

start=$(date +%s.%N)
curl -sf -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"fields": ["city", "age"]}' "http://127.0.0.1:$PORT/v1/docs/people/_indexes/city-age" >/dev/null
end=$(date +%s.%N)
echo "index [city, age] filled in $(echo "$end - $start" | bc) s"
curl -sf -X POST -H "Authorization: Bearer $TOKEN" \
  -d '{"where": {"and": [["city", "==", "city-7"], ["age", ">=", 30], ["age", "<", 33]]}, "limit": 20}' \
  "http://127.0.0.1:$PORT/v1/docs/people/_explain"
echo

source bench/wrk-scripts.sh
query_script "$DATA/query.lua" "$TOKEN"
for connections in 1 16; do
  echo "== query, $connections connection(s), ${SECONDS_PER_RUN}s"
  taskset -c 1 wrk -t1 -c"$connections" -d"${SECONDS_PER_RUN}s" --latency \
    -s "$DATA/query.lua" "http://127.0.0.1:$PORT" | sed -n '/Latency Distribution/,/Requests\/sec/p'
done
