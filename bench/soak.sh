#!/usr/bin/env bash
# A soak of three nodes under mixed load (issue 14): no growth in
# connections, memory or PostgreSQL's notification queue.
#
#   bench/soak.sh [SECONDS]   (default 600)
#
# Starts a cluster with scripts/cluster.sh under target/soak (release
# binary, or $WOK_BINARY), deploys the hello guest (an HTTP route and a
# queue trigger) and loads haproxy for SECONDS with one wrk whose requests
# rotate through key-value PUT and GET, document writes and reads, a
# publish to the queue, an object PUT and a function call (16
# connections). Every 15 s it samples each node's resident memory and
# open files, its PostgreSQL connections (by application name, `wok PID`),
# the notification queue's usage and the queue's backlog; the samples go
# to target/soak/samples.tsv. At the end it compares the last third of
# the run with the middle third and fails (exit 1) if a node's memory grew
# by more than 15%, its open files or connections grew by more than 10
# and 20%, the notification queue holds anything, or any answer was a 5xx.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SOAK_SECONDS="${1:-600}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -z "${WOK_BINARY:-}" ]; then
  cargo build --release -p cli >/dev/null
fi
export WOK_BINARY="${WOK_BINARY:-$ROOT/target/release/wok}"
export WOK_CLUSTER_DIR="$ROOT/target/soak"
export WOK_PG_PORT=25462 WOK_S3_PORT=25463
CLUSTER="$ROOT/scripts/cluster.sh"
HELLO="$(ls -t target/guests/wasm32-wasip2/release/hello.wasm | head -1)"
rm -rf "$WOK_CLUSTER_DIR"
trap 'bash "$CLUSTER" down >/dev/null 2>&1 || true' EXIT
bash "$CLUSTER" up >/dev/null
URL="http://127.0.0.1:18080"
TOKEN="$(cat "$WOK_CLUSTER_DIR/node-1/admin-token")"
DATABASE="postgres://postgres@127.0.0.1:$WOK_PG_PORT/wok"
export WOK_SERVER="$URL" WOK_TOKEN="$TOKEN"
"$WOK_BINARY" deploy hello "$HELLO" --trigger "queue=soak;concurrency=16" >/dev/null
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" "$URL/v1/buckets/soak" >/dev/null

cat >"$WOK_CLUSTER_DIR/mixed.lua" <<LUA
local token = "Bearer $TOKEN"
local n = 0
-- Answers by class, summed over wrk's threads at the end (a GET of a
-- key not written yet is a 404: expected; a 5xx is not).
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function() server_errors = 0; not_found = 0 end
response = function(status)
  if status >= 500 then server_errors = server_errors + 1 end
  if status == 404 then not_found = not_found + 1 end
end
done = function()
  local errors, missing = 0, 0
  for _, thread in ipairs(threads) do
    errors = errors + thread:get("server_errors")
    missing = missing + thread:get("not_found")
  end
  io.write(string.format("5xx answers: %d; 404 (keys and documents not written yet): %d\n", errors, missing))
end
request = function()
  n = n + 1
  local key = math.random(0, 9999)
  local headers = { ["Authorization"] = token }
  local kind = n % 7
  if kind == 0 then
    return wrk.format("PUT", "/v1/kv/soak/key-" .. key, headers, string.rep("v", 64))
  elseif kind == 1 then
    return wrk.format("GET", "/v1/kv/soak/key-" .. key, headers)
  elseif kind == 2 then
    headers["Content-Type"] = "application/json"
    return wrk.format("PUT", "/v1/docs/orders/order-" .. key, headers,
      '{"status": "open", "n": ' .. key .. '}')
  elseif kind == 3 then
    return wrk.format("GET", "/v1/docs/orders/order-" .. key, headers)
  elseif kind == 4 then
    headers["Content-Type"] = "text/plain"
    return wrk.format("POST", "/v1/topics/soak", headers, "message " .. n)
  elseif kind == 5 then
    return wrk.format("PUT", "/v1/objects/soak/object-" .. (key % 100), headers, string.rep("o", 16384))
  else
    return wrk.format("GET", "/fn/hello")
  end
end
LUA

SAMPLES="$WOK_CLUSTER_DIR/samples.tsv"
printf 'second\tnode\trss_kib\topen_files\tpg_connections\tnotify_queue\tbacklog\n' >"$SAMPLES"
sample() { # SECOND
  local queue backlog
  queue="$(psql "$DATABASE" -qtAc 'SELECT pg_notification_queue_usage()')"
  backlog="$(curl -fsS -H "Authorization: Bearer $TOKEN" "$URL/metrics" |
    awk '/^wok_event_backlog/ {sum += $NF} END {print sum + 0}')"
  for n in 1 2 3; do
    local pid rss files connections
    pid="$(cat "$WOK_CLUSTER_DIR/node-$n/pid")"
    rss="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
    files="$(ls "/proc/$pid/fd" | wc -l)"
    connections="$(psql "$DATABASE" -qtAc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wok $pid'")"
    printf '%s\tnode-%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$n" "$rss" "$files" "$connections" "$queue" "$backlog" >>"$SAMPLES"
  done
}

echo "== soak: 3 nodes behind haproxy, mixed load (16 connections) for ${SOAK_SECONDS}s"
wrk -t2 -c16 -d"${SOAK_SECONDS}s" --timeout 10s -s "$WOK_CLUSTER_DIR/mixed.lua" "$URL" >"$WOK_CLUSTER_DIR/wrk.txt" &
WRK=$!
start=$SECONDS
while kill -0 "$WRK" 2>/dev/null; do
  sample $((SECONDS - start))
  sleep 15
done
wait "$WRK"
sample $((SECONDS - start))
grep -E "Requests/sec|Non-2xx|Socket errors|requests in|5xx answers" "$WOK_CLUSTER_DIR/wrk.txt"
server_errors="$(awk '/5xx answers:/ {print $3 + 0}' "$WOK_CLUSTER_DIR/wrk.txt")"

# The middle third against the last: the peak of each figure per node.
awk -F'\t' -v total="$SOAK_SECONDS" -v server_errors="${server_errors:-0}" '
  BEGIN { queue = 0 }
  NR == 1 { next }
  {
    third = ($1 < total / 3) ? 0 : ($1 < 2 * total / 3 ? 1 : 2)
    if (third == 0) next
    for (i = 3; i <= 5; i++) if ($i > peak[third, $2, i]) peak[third, $2, i] = $i
    nodes[$2] = 1
    if ($6 > queue) queue = $6
    last_backlog = $7
  }
  END {
    failed = 0
    split("rss_kib open_files pg_connections", names, " ")
    split("1.15 1.10 1.20", limits, " ")
    printf "%-8s %-15s %12s %12s %7s\n", "node", "figure", "middle third", "last third", "ratio"
    for (node in nodes) for (i = 3; i <= 5; i++) {
      middle = peak[1, node, i]; last = peak[2, node, i]
      ratio = middle > 0 ? last / middle : 1
      verdict = (ratio > limits[i - 2] && last - middle > 2) ? "  GREW" : ""
      if (verdict != "") failed = 1
      printf "%-8s %-15s %12d %12d %7.2f%s\n", node, names[i - 2], middle, last, ratio, verdict
    }
    printf "notification queue usage, peak: %s; queue backlog at the end: %s\n", queue, last_backlog
    if (queue > 0.001) failed = 1
    if (server_errors > 0) { print server_errors " answers were 5xx"; failed = 1 }
    exit failed
  }' "$SAMPLES"
