#!/usr/bin/env bash
# Starts the S3 server the tests (crates/blob-s3) use: `s3s-fs` 0.14.1, a
# real SigV4 S3 server from the s3s project that keeps each bucket as a
# directory of files. Installed once with cargo into target/s3s-fs-bin,
# serving target/s3s-fs-data on 127.0.0.1:$WOK_S3_PORT (25433) with the
# fixed test credentials below (data, pid and log under $WOK_S3_DIR if
# set). Prints the endpoint URL. Idempotent: a
# running server is left as it is. `stop` as the first argument stops it.
#
# Test credentials (nothing secret: the server holds test data only):
#   AWS_ACCESS_KEY_ID=wok-test-access  AWS_SECRET_ACCESS_KEY=wok-test-secret
# and the buckets in $WOK_S3_BUCKETS (default `wok-test`) exist.
#
# s3s-fs does not fsync: these are tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${WOK_S3_PORT:-25433}"
BIN_ROOT="$ROOT/target/s3s-fs-bin"
BIN="$BIN_ROOT/bin/s3s-fs"
# Where this server's data, pid, log and lock live ($WOK_S3_DIR; the
# cluster script keeps a server of its own apart from the tests').
STATE="${WOK_S3_DIR:-$ROOT/target}"
DATA="$STATE/s3s-fs-data"
PID_FILE="$STATE/s3s-fs.pid"
LOG="$STATE/s3s-fs.log"
ACCESS_KEY=wok-test-access
SECRET_KEY=wok-test-secret
mkdir -p "$ROOT/target" "$STATE"
# Parallel test binaries wait here for one install and one start.
exec 9>"$STATE/s3s-fs.lock"
flock 9

running() {
  [ -f "$PID_FILE" ] && grep -qs s3s-fs "/proc/$(cat "$PID_FILE")/cmdline"
}

# Runs the server in place of this (sub)shell, holding none of the files
# it inherited but stdin, stdout and stderr: not our lock (fd 9), nor one
# a caller took around `cargo test` (`flock LOCK cargo test` hands its fd
# down to cargo, the test binary and this script), which it would hold
# for as long as it runs. In a session of its own: a ^C of the test run
# leaves it be.
serve() {
  local fd
  for fd in /proc/self/fd/*; do
    fd="${fd##*/}"
    if [ "$fd" -gt 2 ]; then
      eval "exec $fd>&-"
    fi
  done
  exec setsid "$BIN" --host 127.0.0.1 --port "$PORT" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$DATA"
}

if [ "${1:-}" = stop ]; then
  if running; then
    kill "$(cat "$PID_FILE")"
  fi
  rm -f "$PID_FILE"
  exit 0
fi

if [ ! -x "$BIN" ]; then
  # ~3.5 CPU-minutes, once per machine. No lock on cargo's side here: a
  # caller may be a test run by a cargo that holds a lock of its own.
  cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$BIN_ROOT" >&2 9>&-
fi

for bucket in ${WOK_S3_BUCKETS:-wok-test}; do
  # A bucket of s3s-fs is a directory under its root.
  mkdir -p "$DATA/$bucket"
done

if ! running; then
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    # Another checkout's server, say: its data directory is not ours.
    echo "127.0.0.1:$PORT is taken by a server this script did not start here; set WOK_S3_PORT" >&2
    exit 1
  fi
  (serve) >"$LOG" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  # Ready in tens of milliseconds; give it 10 s.
  ready=no
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      ready=yes
      break
    fi
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  if [ "$ready" = no ]; then
    echo "s3s-fs did not start listening on 127.0.0.1:$PORT; its log ($LOG):" >&2
    cat "$LOG" >&2
    exit 1
  fi
fi
echo "http://127.0.0.1:$PORT"
