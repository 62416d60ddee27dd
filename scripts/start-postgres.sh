#!/usr/bin/env bash
# Starts the PostgreSQL cluster the tests (and bench/cluster.sh) use, from
# the PostgreSQL 15 of the machine image (Debian's `postgresql-15`,
# installed with apt if missing): initialised once under
# target/postgres, listening on 127.0.0.1:$WOK_PG_PORT (25432) and its own
# socket directory, with trust authentication for loopback only. Prints
# the admin connection URL. Idempotent: a running cluster is left as it
# is. `stop` as the first argument stops it. The server also speaks TLS,
# with a certificate its own CA (tls/ca.pem) signed.
#
# fsync is off: these are tests, whose machine does not lose power under
# them; `pg_ctl restart -m immediate` (a crash of the server, not of the
# OS) still keeps every committed transaction, since the WAL reaches the
# OS before a commit is answered.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${WOK_PG_DIR:-$ROOT/target/postgres}"
PORT="${WOK_PG_PORT:-25432}"
mkdir -p "$DIR"
exec 9>"$DIR.lock"
flock 9

BIN=/usr/lib/postgresql/15/bin
if [ ! -x "$BIN/initdb" ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >&2
fi
# initdb and the server refuse to run as root: the postgres user owns the
# cluster.
as_postgres() { runuser -u postgres -- "$@"; }
chown postgres "$DIR"
DATA="$DIR/data"

if [ "${1:-}" = stop ]; then
  if [ -f "$DATA/postmaster.pid" ]; then
    as_postgres "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
  fi
  exit 0
fi

# A server on the port already (another checkout's, say) is used as it is,
# and its CA with it (tls/ca.pem here is what the TLS test trusts).
if [ ! -f "$DATA/postmaster.pid" ] && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  CERT="$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Atc "SHOW ssl_cert_file" 2>/dev/null || true)"
  if [ -n "$CERT" ] && [ -f "$(dirname "$CERT")/ca.pem" ] && [ "$(dirname "$CERT")" != "$DIR/tls" ]; then
    mkdir -p "$DIR/tls"
    cp "$(dirname "$CERT")/ca.pem" "$DIR/tls/ca.pem"
  fi
  echo "postgres://postgres@127.0.0.1:$PORT/postgres"
  exit 0
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"
  as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2
  cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 400
shared_buffers = 256MB
fsync = off
full_page_writes = off
log_min_messages = warning
CONF
fi
# TLS for clients that ask (sslmode=require): a CA of the test cluster's
# own (tls/ca.pem, for PGSSLROOTCERT) and a server certificate for
# 127.0.0.1 and localhost.
if ! grep -q "^ssl = on" "$DATA/postgresql.conf"; then
  mkdir -p "$DIR/tls"
  (
    cd "$DIR/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=wok test CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out server.crt 2>/dev/null
    chown postgres server.key server.crt
    chmod 600 server.key
  )
  cat >>"$DATA/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = '$DIR/tls/server.crt'
ssl_key_file = '$DIR/tls/server.key'
CONF
  # A server already running takes it on a reload.
  as_postgres "$BIN/pg_ctl" -D "$DATA" reload >/dev/null 2>&1 || true
fi
if ! as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  # The server must hold none of the files this script inherited but
  # stdin, stdout and stderr: not our lock (fd 9), nor one a caller took
  # around `cargo test` (`flock LOCK cargo test` hands its fd down to
  # cargo, the test binary and this script), which it would hold for as
  # long as it runs.
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 30 start
  ) >&2
fi
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
