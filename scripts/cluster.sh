#!/usr/bin/env bash
# Starts a whole wok cluster on this machine, or stops it:
#   scripts/cluster.sh up     PostgreSQL, an S3 server (s3s-fs), three wok
#                             nodes and haproxy in front of them
#   scripts/cluster.sh down   stops them all
#   scripts/cluster.sh status what runs
#   scripts/cluster.sh cpu SHARE|max
#                             restarts the nodes, each with SHARE of one
#                             core (0.4, say) or with no limit
# Everything lives under target/cluster (or $WOK_CLUSTER_DIR). The nodes
# listen on 127.0.0.1:18081-18083 (from $WOK_NODE_PORT on) and haproxy on
# 127.0.0.1:18080 ($WOK_LB_LISTEN); the admin token is in
# target/cluster/node-1/admin-token (every node has the same). The wok
# binary is target/release/wok (build it first: cargo build --release), or
# $WOK_BINARY.
#
# Optional: WOK_NODE_CPU=0.4 gives each node that share of one core, for
# measuring scale-out on a small machine: a cgroup of its own under
# wok-cluster ($WOK_CLUSTER_CGROUP) with cgroup v2's cpu.max, or cgroup
# v1's cpu.cfs_quota_us where the cpu controller is mounted as v1 (a
# hybrid host). A node is in its cgroup before it starts, because it
# sizes its runtime from its share then (one worker thread for a share
# up to one core), and keeps that size: hence `cpu` restarts the nodes.
# Extra `wok up` flags for every node in $WOK_NODE_FLAGS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${WOK_CLUSTER_DIR:-$ROOT/target/cluster}"
WOK="${WOK_BINARY:-$ROOT/target/release/wok}"
LB="${WOK_LB_LISTEN:-127.0.0.1:18080}"
NODE_PORT="${WOK_NODE_PORT:-18081}"
NODES=("127.0.0.1:$NODE_PORT" "127.0.0.1:$((NODE_PORT + 1))" "127.0.0.1:$((NODE_PORT + 2))")
export WOK_PG_DIR="$DIR/postgres" WOK_PG_PORT="${WOK_PG_PORT:-25442}"
export WOK_S3_DIR="$DIR/s3" WOK_S3_PORT="${WOK_S3_PORT:-25443}" WOK_S3_BUCKETS=wok
CGROUP_NAME="${WOK_CLUSTER_CGROUP:-wok-cluster}"
# Where the cpu controller is: the unified hierarchy (v2), else a v1 cpu
# mount; nothing if neither (asking for a share then fails).
if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  CGROUP_V=2 CGROUP="/sys/fs/cgroup/$CGROUP_NAME"
elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
  CGROUP_V=1 CGROUP="/sys/fs/cgroup/cpu/$CGROUP_NAME"
else
  CGROUP_V="" CGROUP=""
fi

# The nodes' parent cgroup, handing the cpu controller down.
prepare_cgroup() {
  [ -n "$CGROUP_V" ] || { echo "no cgroup cpu controller on this host" >&2; exit 1; }
  mkdir -p "$CGROUP"
  if [ "$CGROUP_V" = 2 ]; then
    # The nodes' cpu.max exists only if their parent hands cpu down too.
    echo "+cpu" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    echo "+cpu" >"$CGROUP/cgroup.subtree_control"
  fi
}

# set_cpu N SHARE: node N's cgroup gets SHARE of one core.
set_cpu() {
  local group="$CGROUP/node-$1" period=100000 quota
  quota="$(awk -v share="$2" -v p=$period 'BEGIN { printf "%d", share * p }')"
  if [ "$CGROUP_V" = 2 ]; then
    echo "$quota $period" >"$group/cpu.max"
  else
    echo "$period" >"$group/cpu.cfs_period_us"
    echo "$quota" >"$group/cpu.cfs_quota_us"
  fi
}

stop_pid() {
  local file="$1"
  if [ -f "$file" ]; then
    local pid
    pid="$(cat "$file")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
  fi
}

case "${1:-}" in
up)
  [ -x "$WOK" ] || { echo "no wok binary at $WOK: run cargo build --release, or set WOK_BINARY" >&2; exit 1; }
  mkdir -p "$DIR"
  admin_url="$(bash "$ROOT/scripts/start-postgres.sh")"
  psql "$admin_url" -qtc "SELECT 1 FROM pg_database WHERE datname = 'wok'" | grep -q 1 \
    || psql "$admin_url" -qc "CREATE DATABASE wok"
  database="${admin_url%/*}/wok"
  endpoint="$(bash "$ROOT/scripts/start-s3.sh")"
  # The test server's fixed key pair (scripts/start-s3.sh).
  export AWS_ACCESS_KEY_ID=wok-test-access AWS_SECRET_ACCESS_KEY=wok-test-secret
  blobs="s3://wok/cluster?endpoint=$endpoint&region=us-east-1"
  if [ -n "${WOK_NODE_CPU:-}" ]; then prepare_cgroup; fi
  for n in 1 2 3; do
    node="$DIR/node-$n"
    mkdir -p "$node"
    if [ -f "$node/pid" ] && kill -0 "$(cat "$node/pid")" 2>/dev/null; then continue; fi
    if [ -n "${WOK_NODE_CPU:-}" ]; then
      mkdir -p "$CGROUP/node-$n"
      set_cpu "$n" "$WOK_NODE_CPU"
    fi
    (
      if [ -n "${WOK_NODE_CPU:-}" ]; then echo "$BASHPID" >"$CGROUP/node-$n/cgroup.procs"; fi
      # shellcheck disable=SC2086
      exec setsid "$WOK" up --data "$node" --listen "${NODES[$((n - 1))]}" \
        --database "$database" --blobs "$blobs" --trust-forwarded-for ${WOK_NODE_FLAGS:-} \
        >"$node/out.log" 2>"$node/err.log" </dev/null
    ) &
    echo $! >"$node/pid"
  done
  for n in 1 2 3; do
    for _ in $(seq 1 300); do
      grep -q "wok listening" "$DIR/node-$n/out.log" 2>/dev/null && break
      kill -0 "$(cat "$DIR/node-$n/pid")" 2>/dev/null || { cat "$DIR/node-$n/err.log" >&2; exit 1; }
      sleep 0.1
    done
  done
  if ! { [ -f "$DIR/haproxy.pid" ] && kill -0 "$(cat "$DIR/haproxy.pid")" 2>/dev/null; }; then
    command -v haproxy >/dev/null || {
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >&2
    }
    WOK_LB_LISTEN="$LB" WOK_NODE_1="${NODES[0]}" WOK_NODE_2="${NODES[1]}" WOK_NODE_3="${NODES[2]}" \
      haproxy -D -p "$DIR/haproxy.pid" -f "$ROOT/deploy/haproxy.cfg"
  fi
  echo "wok cluster on http://$LB (nodes ${NODES[*]})"
  echo "admin token: $DIR/node-1/admin-token"
  ;;
down)
  stop_pid "$DIR/haproxy.pid"
  for n in 1 2 3; do stop_pid "$DIR/node-$n/pid"; done
  bash "$ROOT/scripts/start-s3.sh" stop
  bash "$ROOT/scripts/start-postgres.sh" stop
  if [ -n "$CGROUP" ]; then
    for n in 1 2 3; do rmdir "$CGROUP/node-$n" 2>/dev/null || true; done
    rmdir "$CGROUP" 2>/dev/null || true
  fi
  ;;
cpu)
  share="${2:?usage: scripts/cluster.sh cpu SHARE|max}"
  for n in 1 2 3; do stop_pid "$DIR/node-$n/pid"; done
  if [ "$share" = max ]; then unset WOK_NODE_CPU; else export WOK_NODE_CPU="$share"; fi
  exec bash "${BASH_SOURCE[0]}" up
  ;;
status)
  for n in 1 2 3; do
    pid="$(cat "$DIR/node-$n/pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "node-$n: running ($pid)"; else echo "node-$n: stopped"; fi
  done
  pid="$(cat "$DIR/haproxy.pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "haproxy: running on $LB"; else echo "haproxy: stopped"; fi
  ;;
*)
  echo "usage: scripts/cluster.sh up|down|status|cpu SHARE" >&2
  exit 2
  ;;
esac
