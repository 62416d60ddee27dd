#!/usr/bin/env bash
# Object storage (issue 3): 1 GiB PUT and GET through the S3 endpoint with
# aws-cli, against raw sequential file write and read measured in the same
# run; target: each >= 70% of raw.
#
#   bench/objects.sh [MIB]   (default 1024)
#
# Raw write: dd of a MIB file (random bytes, already in the page cache)
# to a new file with fsync. Raw read: dd of that file to /dev/null, warm
# (page cache) and cold (O_DIRECT). wok: `aws s3 cp` up (multipart, aws-cli
# defaults: 8 MiB parts, 10 threads) and down, server pinned to core 0,
# aws-cli to core 1. aws-cli comes from scripts/install-s3-tools.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MIB="${1:-1024}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
VENV="$(scripts/install-s3-tools.sh)"
cargo build --release -p cli >/dev/null
WOK="$ROOT/target/release/wok"

DATA="$(mktemp -d -p "$ROOT/target")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

seconds() { python3 -c 'import time; print(time.monotonic())'; }
rate() { python3 -c "print(f'{$MIB / ($2 - $1):8.1f} MiB/s')"; }

head -c "$((MIB << 20))" /dev/urandom >"$DATA/source.bin"

start=$(seconds); dd if="$DATA/source.bin" of="$DATA/raw.bin" bs=8M conv=fsync status=none; end=$(seconds)
RAW_WRITE="$(rate "$start" "$end")"
start=$(seconds); dd if="$DATA/raw.bin" of=/dev/null bs=8M status=none; end=$(seconds)
RAW_READ_WARM="$(rate "$start" "$end")"
start=$(seconds); dd if="$DATA/raw.bin" of=/dev/null bs=8M iflag=direct status=none; end=$(seconds)
RAW_READ_COLD="$(rate "$start" "$end")"
rm "$DATA/raw.bin"

PORT=18295
taskset -c 0 "$WOK" up --listen "127.0.0.1:$PORT" --data "$DATA/wok" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  sleep 0.05
done
TOKEN="$(cat "$DATA/wok/admin-token")"
CREDENTIALS="$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/s3/credentials")"
export AWS_ACCESS_KEY_ID="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_key_id"])' "$CREDENTIALS")"
export AWS_SECRET_ACCESS_KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret_access_key"])' "$CREDENTIALS")"
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE="$DATA/aws-config"
printf '[default]\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
aws() { taskset -c 1 "$VENV/bin/aws" --endpoint-url "http://127.0.0.1:$PORT" "$@"; }

aws s3 mb s3://bench >/dev/null
start=$(seconds); aws s3 cp --quiet "$DATA/source.bin" s3://bench/big.bin; end=$(seconds)
WOK_PUT="$(rate "$start" "$end")"
start=$(seconds); aws s3 cp --quiet s3://bench/big.bin "$DATA/back.bin"; end=$(seconds)
WOK_GET="$(rate "$start" "$end")"
cmp "$DATA/source.bin" "$DATA/back.bin"
rm "$DATA/back.bin"
start=$(seconds); aws s3 cp --quiet s3://bench/big.bin - >/dev/null; end=$(seconds)
WOK_GET_STDOUT="$(rate "$start" "$end")"
# The server alone: the same object through a presigned URL, with curl.
URL="$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/objects/bench/big.bin" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')"
start=$(seconds); taskset -c 1 curl -sf -o /dev/null "$URL"; end=$(seconds)
CURL_GET="$(rate "$start" "$end")"

echo "object of $MIB MiB"
echo "raw write (dd, fsync)             $RAW_WRITE"
echo "wok PUT (aws s3 cp, multipart)    $WOK_PUT"
echo "raw read, page cache (dd)         $RAW_READ_WARM"
echo "raw read, O_DIRECT (dd)           $RAW_READ_COLD"
echo "wok GET (aws s3 cp to a file)     $WOK_GET"
echo "wok GET (aws s3 cp to stdout)     $WOK_GET_STDOUT"
echo "wok GET (curl, presigned URL)     $CURL_GET"
