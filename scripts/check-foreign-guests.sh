#!/usr/bin/env bash
# Smoke-test the foreign-language guests outside wok: build them if needed
# (scripts/build-foreign-guests.sh), then serve each one with `jco serve`
# (jco's wasi:http host for Node) on 127.0.0.1, send requests with curl and
# check the contract in guests-foreign/README.md.
#
#   scripts/check-foreign-guests.sh [hello-py echo-py hello-js echo-js]
#
# Every server is bounded by `timeout` and killed (whole process group) after
# its checks. Ends with a "N passed, N failed" line; exits 1 on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/foreign-guests"
JCO="$ROOT/target/toolchains/js/node_modules/@bytecodealliance/jco/dist/jco.js"
SERVER_TIMEOUT="${SERVER_TIMEOUT:-120}"

"$ROOT/scripts/build-foreign-guests.sh"

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(hello-py echo-py hello-js echo-js)

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
check() { # check DESCRIPTION EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then ok "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

WORK="$(mktemp -d "$OUT/.check.XXXXXX")"
server_pgid=""
stop_server() {
  if [[ -n "$server_pgid" ]]; then
    kill -TERM -- "-$server_pgid" 2>/dev/null || true
    wait "$server_pgid" 2>/dev/null || true
    server_pgid=""
  fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME -> sets $port and $server_pgid
start_server() {
  local name="$1"
  port="$(free_port)"
  # Python guests (CPython built by wasi-sdk) use extended-const, which Node 20's
  # V8 only accepts behind a flag; jco serve passes JCO_RUN_ARGS to the node
  # process it spawns.
  set -m
  JCO_RUN_ARGS="--experimental-wasm-extended-const" \
    timeout "$SERVER_TIMEOUT" node "$JCO" serve --host 127.0.0.1 --port "$port" \
      --isolate-requests instance --isolate-worker-pool-size 1 \
      --jco-dir "$WORK/serve-$name" "$OUT/$name.wasm" >"$WORK/$name.log" 2>&1 &
  server_pgid=$!
  set +m
  local i
  for i in $(seq 1 240); do
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then return 0; fi
    if ! kill -0 "$server_pgid" 2>/dev/null; then break; fi
    sleep 0.25
  done
  fail "$name: jco serve did not come up; log:"
  sed 's/^/    /' "$WORK/$name.log"
  stop_server
  return 1
}

# request PATH CURL_ARGS... -> $WORK/resp.headers, $WORK/resp.body
request() {
  local path="$1"
  shift
  curl -sS --max-time 20 -D "$WORK/resp.headers" -o "$WORK/resp.body" "$@" "http://127.0.0.1:$port$path"
}
status() { head -n1 "$WORK/resp.headers" | cut -d' ' -f2; }
header() { # last value of a response header, CR stripped
  grep -i "^$1:" "$WORK/resp.headers" | tail -n1 | cut -d: -f2- | sed 's/^ //' | tr -d '\r'
}

check_hello() {
  local name="$1" expected_body="$2"
  printf '%s' "$expected_body" >"$WORK/expected.body"
  local method
  for method in GET POST; do
    if [[ "$method" == POST ]]; then
      request /some/path?q=1 -X POST --data-binary 'ignored'
    else
      request /
    fi
    check "$name $method status" 200 "$(status)"
    check "$name $method content-type" "text/plain" "$(header content-type)"
    if cmp -s "$WORK/expected.body" "$WORK/resp.body"; then
      ok "$name $method body"
    else
      fail "$name $method body: got [$(cat -v "$WORK/resp.body")]"
    fi
  done
}

# Compares x-echo-headers with the request headers that curl sent. The host
# (here jco's Node shim; wasmtime in wok) decides which headers reach the
# guest and in which order: jco drops `host`, and both jco and hyper's
# HeaderMap group repeated names at their first occurrence, so the request
# sends its duplicate header adjacently and only the listed names are compared
# (in order), after checking the value is compact, ASCII-only JSON of
# [name, value] pairs with lowercase names.
check_echo_headers() {
  local name="$1" expected="$2" value
  value="$(header x-echo-headers)"
  if python3 - "$value" "$expected" <<'EOF'; then ok "$name x-echo-headers"; else fail "$name x-echo-headers: got [$value]"; fi
import json, sys
raw, expected = sys.argv[1], json.loads(sys.argv[2])
pairs = json.loads(raw)
assert raw == json.dumps(pairs, separators=(",", ":")), "not compact/ascii json"
assert all(isinstance(p, list) and len(p) == 2 for p in pairs), "not [name, value] pairs"
assert all(n == n.lower() for n, _ in pairs), "names not lowercase"
wanted = {n for n, _ in expected}
got = [p for p in pairs if p[0] in wanted]
assert got == expected, f"{got} != {expected}"
EOF
}

check_echo() {
  local name="$1"
  head -c 100000 /dev/urandom >"$WORK/big.body"
  request '/a/b?x=1&y=2' -X POST \
    -H 'User-Agent: wok-check' -H 'Accept: */*' \
    -H 'X-Dup: one' -H 'X-Dup: two' -H 'X-Other: three words' -H 'X-Json: "quoted" \back' \
    -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/big.body"
  check "$name POST status" 200 "$(status)"
  check "$name POST x-echo-method" POST "$(header x-echo-method)"
  check "$name POST x-echo-path-with-query" '/a/b?x=1&y=2' "$(header x-echo-path-with-query)"
  check_echo_headers "$name POST" '[["user-agent","wok-check"],["accept","*/*"],["x-dup","one"],["x-dup","two"],["x-other","three words"],["x-json","\"quoted\" \\back"],["content-type","application/octet-stream"],["content-length","100000"]]'
  if cmp -s "$WORK/big.body" "$WORK/resp.body"; then
    ok "$name POST body (100000 random bytes) echoed"
  else
    fail "$name POST body differs ($(stat -c %s "$WORK/resp.body") bytes back)"
  fi

  request '/plain' -H 'User-Agent: wok-check'
  check "$name GET status" 200 "$(status)"
  check "$name GET x-echo-method" GET "$(header x-echo-method)"
  check "$name GET x-echo-path-with-query" /plain "$(header x-echo-path-with-query)"
  check "$name GET empty body" 0 "$(stat -c %s "$WORK/resp.body")"

  request '/p%20q/r?a=%2F&b=c%3Dd&&e' -X PUT --data-binary 'put body'
  check "$name PUT x-echo-method" PUT "$(header x-echo-method)"
  check "$name PUT x-echo-path-with-query" '/p%20q/r?a=%2F&b=c%3Dd&&e' "$(header x-echo-path-with-query)"
  check "$name PUT body" 'put body' "$(cat "$WORK/resp.body")"

  request '/x' -X DELETE
  check "$name DELETE x-echo-method" DELETE "$(header x-echo-method)"
}

for name in "${components[@]}"; do
  [[ -f "$OUT/$name.wasm" ]] || { fail "$name: $OUT/$name.wasm missing"; continue; }
  start_server "$name" || continue
  case "$name" in
    hello-py) check_hello "$name" $'hello from python\n' ;;
    hello-js) check_hello "$name" $'hello from javascript\n' ;;
    echo-py | echo-js) check_echo "$name" ;;
    *) fail "$name: no checks defined" ;;
  esac
  stop_server
done

printf '%d passed, %d failed\n' "$passed" "$failed"
[[ "$failed" -eq 0 ]]
