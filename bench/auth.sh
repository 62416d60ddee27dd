#!/usr/bin/env bash
# Accounts (issue 15), side by side in one run, server on core 0 and the
# load on core 1:
#
#   bench/auth.sh [DOCUMENTS] [SECONDS_PER_RUN]   (defaults 100000, 10)
#
# 1. A document query under a per-user list rule against the same query
#    without rules: collection `notes` of DOCUMENTS documents {owner (one
#    of 1,000 users, the bench user among them), visibility (1% public),
#    created}, indexes [owner, created] and [visibility, created], the rule
#    "public or mine". "ruled": the user's token, query {order_by created,
#    limit 20} (the rule adds its filter); "by hand": a service key, the
#    same query with the rule's filter written out. Target: ruled costs at
#    most 1.2x.
# 2. A request with a user's token against the same request with a
#    service key (and a public key): GET of one document of a
#    `public-read` collection, ROUNDS rounds (default 2), the order
#    alternating. Target: at most 1.1x.
# 3. Password sign-ins at full speed (the argon2 cap: one hash a core),
#    and /fn/hello's p99 alone and beside that login flood. Target: p99
#    beside the flood at most 2x alone.
# Token verification and rule evaluation in microseconds are
# `cargo bench -p auth --bench tokens`.
#
# Needs wrk (installed from Debian if missing) and a release build (made
# if missing: `cargo build --release -p cli -p guests`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DOCUMENTS="${1:-100000}"
SECONDS_PER_RUN="${2:-10}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if [ -z "${WOK_BINARY:-}" ]; then
  cargo build --release -p cli -p guests >/dev/null
fi
WOK="${WOK_BINARY:-$ROOT/target/release/wok}"
HELLO="${WOK_GUESTS:-$ROOT/target/guests/wasm32-wasip2/release}/hello.wasm"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=18391
URL="http://127.0.0.1:$PORT"
taskset -c 0 "$WOK" up --listen "127.0.0.1:$PORT" --data "$WORK/wok" >"$WORK/out.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
ADMIN="$(cat "$WORK/wok/admin-token")"
export WOK_DATA="$WORK/wok"
PUBLIC="$("$WOK" keys create --kind public 2>/dev/null)"
SERVICE="$("$WOK" keys create --kind service 2>/dev/null)"
"$WOK" deploy hello "$HELLO" >/dev/null

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
SESSION="$(curl -fsS "$URL/auth/v1/signup" -H "apikey: $PUBLIC" -H 'content-type: application/json' \
  -d '{"email": "bench@example.com", "password": "a long passphrase"}')"
TOKEN="$(echo "$SESSION" | json "['access_token']")"
UID_="$(echo "$SESSION" | json "['user']['id']")"
# Sign-ins at full speed: no per-address limit in the way.
curl -fsS -X PUT "$URL/auth/v1/admin/config" -H "apikey: $SERVICE" -H "authorization: Bearer $SERVICE" \
  -H 'content-type: application/json' \
  -d '{"sign_ins_per_address_per_minute": 100000, "sign_ins_per_account_per_hour": 100000}' >/dev/null

echo "loading $DOCUMENTS documents" >&2
python3 - "$URL" "$ADMIN" "$DOCUMENTS" "$UID_" <<'PY'
import json, sys, urllib.request
url, admin, total, me = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def post(path, body, method="POST"):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method=method,
        headers={"authorization": "Bearer " + admin, "content-type": "application/json"})
    urllib.request.urlopen(request).read()
for name, fields in [("by-owner", ["owner", "created"]), ("by-visibility", ["visibility", "created"])]:
    post("/v1/docs/notes/_indexes/" + name, {"fields": fields}, "PUT")
writes = []
for i in range(total):
    owner = me if i % 1000 == 0 else "user-%d" % (i % 1000)
    data = {"owner": owner, "visibility": "public" if i % 100 == 7 else "private", "created": i}
    writes.append({"op": "set", "collection": "notes", "id": "n%d" % i, "data": data})
    if len(writes) == 500:
        post("/v1/docs/_batch", {"writes": writes})
        writes = []
if writes:
    post("/v1/docs/_batch", {"writes": writes})
post("/v1/docs/pub/one", {"title": "hello"}, "PUT")
post("/v1/docs/pub/_access", {"access": "public-read"}, "PUT")
rule = "resource.data.visibility == 'public' || resource.data.owner == auth.uid"
post("/v1/docs/notes/_access", {"rules": {"read": rule, "list": rule}}, "PUT")
PY

query_lua() { # FILE BODY HEADERS...
  local file="$1" body="$2"
  shift 2
  {
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    for header in "$@"; do echo "wrk.headers[\"${header%%:*}\"] = \"${header#*: }\""; done
    echo "wrk.body = '$body'"
  } >"$file"
}
get_lua() { # FILE HEADERS...
  local file="$1"
  shift
  for header in "$@"; do echo "wrk.headers[\"${header%%:*}\"] = \"${header#*: }\""; done >"$file"
}
query_lua "$WORK/ruled.lua" '{"order_by": ["created"], "limit": 20}' \
  "apikey: $PUBLIC" "Authorization: Bearer $TOKEN"
query_lua "$WORK/by-hand.lua" \
  "{\"where\": {\"or\": [[\"visibility\", \"==\", \"public\"], [\"owner\", \"==\", \"$UID_\"]]}, \"order_by\": [\"created\"], \"limit\": 20}" \
  "Authorization: Bearer $SERVICE"
get_lua "$WORK/get-user.lua" "apikey: $PUBLIC" "Authorization: Bearer $TOKEN"
get_lua "$WORK/get-key.lua" "Authorization: Bearer $PUBLIC"
get_lua "$WORK/get-service.lua" "Authorization: Bearer $SERVICE"
cat >"$WORK/login.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/auth/v1/token?grant_type=password"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email": "bench@example.com", "password": "a long passphrase"}'
LUA
echo "wrk.headers[\"apikey\"] = \"$PUBLIC\"" >>"$WORK/login.lua"

# The two answers must be the same documents.
RULED="$(curl -fsS "$URL/v1/docs/notes/_query" -H "apikey: $PUBLIC" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"order_by": ["created"], "limit": 20}')"
BY_HAND="$(curl -fsS "$URL/v1/docs/notes/_query" -H "authorization: Bearer $SERVICE" -H 'content-type: application/json' \
  -d "{\"where\": {\"or\": [[\"visibility\", \"==\", \"public\"], [\"owner\", \"==\", \"$UID_\"]]}, \"order_by\": [\"created\"], \"limit\": 20}")"
[ "$RULED" = "$BY_HAND" ] || { echo "the ruled query and the query by hand differ" >&2; exit 1; }

rate() { # LABEL CONNECTIONS SCRIPT PATH
  taskset -c 1 wrk -t1 -c"$2" -d"${SECONDS_PER_RUN}s" --latency -s "$3" "$URL$4" >"$WORK/wrk.out"
  local rps p99 non2xx
  rps="$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")"
  p99="$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")"
  non2xx="$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.out")"
  printf '%-44s %10s req/s  p99 %8s  non-2xx %s\n' "$1" "$rps" "$p99" "${non2xx:-0}"
  echo "$rps"  >"$WORK/last.rps"
}
# A short unmeasured run of each script first: the first seconds of a
# route (caches, the allocator, the CPU's clock) favour none of the sides.
warm() { # SCRIPT PATH
  taskset -c 1 wrk -t1 -c16 -d3s -s "$1" "$URL$2" >/dev/null
}
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

echo "== 1. query under a per-user rule ($DOCUMENTS documents) =="
warm "$WORK/by-hand.lua" /v1/docs/notes/_query
warm "$WORK/ruled.lua" /v1/docs/notes/_query
for round in 1 2; do
  rate "by hand (service key), round $round" 16 "$WORK/by-hand.lua" /v1/docs/notes/_query
  A="$(cat "$WORK/last.rps")"
  rate "ruled (user token), round $round" 16 "$WORK/ruled.lua" /v1/docs/notes/_query
  B="$(cat "$WORK/last.rps")"
  echo "   by hand / ruled = $(ratio "$A" "$B") (target <= 1.2)"
done

echo "== 2. user token against a key, GET of a document =="
for script in get-user get-service get-key; do warm "$WORK/$script.lua" /v1/docs/pub/one; done
# The user's run goes first in odd rounds and last in even ones, so a
# machine that speeds up or slows down over the run favours neither.
for round in $(seq 1 "${ROUNDS:-2}"); do
  if [ $((round % 2)) -eq 1 ]; then
    rate "user token + apikey, round $round" 16 "$WORK/get-user.lua" /v1/docs/pub/one
    U="$(cat "$WORK/last.rps")"
  fi
  rate "service key, round $round" 16 "$WORK/get-service.lua" /v1/docs/pub/one
  S="$(cat "$WORK/last.rps")"
  rate "public key, round $round" 16 "$WORK/get-key.lua" /v1/docs/pub/one
  P="$(cat "$WORK/last.rps")"
  if [ $((round % 2)) -eq 0 ]; then
    rate "user token + apikey, round $round" 16 "$WORK/get-user.lua" /v1/docs/pub/one
    U="$(cat "$WORK/last.rps")"
  fi
  echo "   service key / user = $(ratio "$S" "$U"), public key / user = $(ratio "$P" "$U") (target <= 1.1)"
done

echo "== 3. hello beside a login flood =="
touch "$WORK/none.lua"
rate "hello alone" 8 "$WORK/none.lua" /fn/hello
taskset -c 1 wrk -t1 -c64 -d"$((SECONDS_PER_RUN + 4))s" -s "$WORK/login.lua" "$URL/auth/v1/token" >"$WORK/login.out" &
FLOOD=$!
sleep 2
rate "hello beside 64 connections signing in" 8 "$WORK/none.lua" /fn/hello
wait "$FLOOD"
echo "login flood: $(awk '/Requests\/sec/ {print $2}' "$WORK/login.out") req/s, $(awk '/Non-2xx/ {print $5}' "$WORK/login.out") of them 429 (the argon2 queue full); $(awk '/requests in/ {print $1}' "$WORK/login.out") in all"
taskset -c 1 wrk -t1 -c2 -d"${SECONDS_PER_RUN}s" -s "$WORK/login.lua" "$URL/auth/v1/token" >"$WORK/login2.out"
echo "sign-ins, 2 connections (no queue): $(awk '/Requests\/sec/ {print $2}' "$WORK/login2.out") req/s"
