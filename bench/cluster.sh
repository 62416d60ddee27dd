#!/usr/bin/env bash
# Several nodes (issue 14): scale-out, the cost of PostgreSQL and haproxy,
# and events across nodes, side by side in one run:
#
#   bench/cluster.sh [SECONDS_PER_RUN] [ROUNDS] [GRID_ROUNDS]   (defaults 10, 2, 2)
#
# Starts a cluster with scripts/cluster.sh (PostgreSQL, s3s-fs, three nodes,
# haproxy with deploy/haproxy.cfg) under target/bench-cluster, on ports
# apart from the tests' and from a default cluster's; a second haproxy with
# the same file whose three servers are all node 1 ("PG node, haproxy");
# both again with `option http-server-close`, a new connection to a node
# for every request ("closing"; the file keeps them open); and a plain
# SQLite node (`wok up --data DIR`).
# Nothing is pinned: nodes, PostgreSQL, haproxy and wrk share both cores.
# Every load is wrk -t1 -c64 for SECONDS_PER_RUN, the targets taken in an
# order rotated each round; ratios are of figures of the same round. The
# CPU of the nodes, haproxy, PostgreSQL and wrk, and the machine's, are
# measured around each run: a ratio means something only while the
# machine (2 cores) had CPU to spare. The machine's busy time none of them
# had is printed too (softirqs, and anything else running: a tenth of a
# core or more says the run was disturbed).
#
# 1. Scale-out: each node limited to a share of one core (each share of
#    NODE_CPU, default "0.25 0.4"; `scripts/cluster.sh cpu SHARE` restarts
#    the nodes in their cgroups, where each sizes its runtime to one
#    worker thread). GET /fn/hello with a fresh instance per request
#    (CPU-bound: wasmtime instantiation), one node against three through
#    haproxy, with kept and with closed connections; ROUNDS rounds.
# 2, 3. No quota (the nodes restarted outside the cgroups), GRID_ROUNDS
#    rounds: /fn/hello, key-value PUT and GET of random keys among 10,000
#    (64-byte values, the admin token; all loaded beforehand) and an
#    indexed query over DOCUMENTS (10,000) documents (bench/docs.sh's
#    query, limit 20), on the SQLite node, one PostgreSQL node direct, the
#    same node through haproxy and three nodes through haproxy.
# 4. A queue into hello (concurrency 64, fresh instances), published
#    through haproxy at EVENT_RATE (2,000) a second for SECONDS_PER_RUN,
#    then EVENT_BURST (20,000) messages at once, on the cluster and on the
#    SQLite node (as bench/events.sh); deliveries and publish-to-delivery
#    percentiles from `wok_event_delivery_latency_seconds`, summed over
#    the nodes.
#
# WOK_BINARY=/path/to/wok uses that binary and builds nothing (else
# `cargo build --release -p cli -p guests`); the guests are taken from
# target/guests/wasm32-wasip2/release ($WOK_GUESTS). The nodes' logs are
# scanned for warnings and errors at the end. The cluster's directory
# ($WOK_CLUSTER_DIR, default target/bench-cluster) is wiped at the start
# and removed at the end. About 9 minutes with the defaults.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-2}"
GRID_ROUNDS="${3:-2}"
NODE_CPU="${NODE_CPU:-0.25 0.4}"
DOCUMENTS="${DOCUMENTS:-10000}"
EVENT_RATE="${EVENT_RATE:-2000}"
EVENT_BURST="${EVENT_BURST:-20000}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for tool in wrk haproxy; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing $tool (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done
if [ -z "${WOK_BINARY:-}" ]; then
  cargo build --release -p cli -p guests >/dev/null
  export WOK_BINARY="$ROOT/target/release/wok"
fi
WOK="$WOK_BINARY"
GUESTS="${WOK_GUESTS:-$ROOT/target/guests/wasm32-wasip2/release}"
HELLO="$GUESTS/hello.wasm"
[ -f "$HELLO" ] || { echo "no $HELLO: cargo build --release -p guests, or set WOK_GUESTS" >&2; exit 1; }
"$WOK" up --help | grep -q -- --database || { echo "$WOK has no --database: an older build?" >&2; exit 1; }
free_kib="$(df -k --output=avail "$ROOT" | tail -1)"
[ "$free_kib" -gt $((2 * 1024 * 1024)) ] || { echo "less than 2 GiB free on $ROOT" >&2; exit 1; }

export WOK_CLUSTER_DIR="${WOK_CLUSTER_DIR:-$ROOT/target/bench-cluster}"
export WOK_PG_PORT="${WOK_PG_PORT:-25452}" WOK_S3_PORT="${WOK_S3_PORT:-25453}"
export WOK_NODE_PORT="${WOK_NODE_PORT:-18381}" WOK_LB_LISTEN="${WOK_LB_LISTEN:-127.0.0.1:18380}"
export WOK_CLUSTER_CGROUP="${WOK_CLUSTER_CGROUP:-wok-bench-cluster}"
LB1_LISTEN="127.0.0.1:$((WOK_NODE_PORT + 3))"
SQLITE_LISTEN="127.0.0.1:$((WOK_NODE_PORT + 4))"
LB1CL_LISTEN="127.0.0.1:$((WOK_NODE_PORT + 5))" LB3CL_LISTEN="127.0.0.1:$((WOK_NODE_PORT + 6))"
DIR="$WOK_CLUSTER_DIR"
N1="127.0.0.1:$WOK_NODE_PORT" N2="127.0.0.1:$((WOK_NODE_PORT + 1))" N3="127.0.0.1:$((WOK_NODE_PORT + 2))"

WORK="$(mktemp -d)"
SQLITE_PID=""
cleanup() {
  set +e
  [ -n "$SQLITE_PID" ] && kill "$SQLITE_PID" 2>/dev/null && wait "$SQLITE_PID" 2>/dev/null
  for lb in lb1 lb1cl lb3cl; do
    [ -f "$WORK/$lb.pid" ] && kill "$(cat "$WORK/$lb.pid")" 2>/dev/null
  done
  if [ -d "$DIR" ]; then
    echo "== warnings and errors in the nodes' logs"
    for log in "$DIR"/node-*/err.log "$DIR"/node-*/out.log "$WORK/sqlite.log"; do
      [ -f "$log" ] || continue
      count="$(grep -cE 'WARN|ERROR' "$log")"
      echo "$log: $count lines"
      grep -E 'WARN|ERROR' "$log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -5
    done
  fi
  bash scripts/cluster.sh down >/dev/null 2>&1
  rm -rf "$WORK" "$DIR"
}
trap cleanup EXIT

if [ -d "$DIR" ]; then bash scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$DIR"; fi
bash scripts/cluster.sh up >"$WORK/cluster-up.log" 2>&1 || {
  cat "$WORK/cluster-up.log" >&2
  exit 1
}
TOKEN="$(cat "$DIR/node-1/admin-token")"
# One node behind haproxy: the same file, its three servers all node 1;
# and both again closing their connections to the nodes after each request.
WOK_NODE_1="$N1" WOK_NODE_2="$N1" WOK_NODE_3="$N1" WOK_LB_LISTEN="$LB1_LISTEN" \
  haproxy -D -p "$WORK/lb1.pid" -f deploy/haproxy.cfg
sed 's/^    http-reuse safe$/    option http-server-close/' deploy/haproxy.cfg >"$WORK/haproxy-close.cfg"
WOK_NODE_1="$N1" WOK_NODE_2="$N1" WOK_NODE_3="$N1" WOK_LB_LISTEN="$LB1CL_LISTEN" \
  haproxy -D -p "$WORK/lb1cl.pid" -f "$WORK/haproxy-close.cfg"
WOK_NODE_1="$N1" WOK_NODE_2="$N2" WOK_NODE_3="$N3" WOK_LB_LISTEN="$LB3CL_LISTEN" \
  haproxy -D -p "$WORK/lb3cl.pid" -f "$WORK/haproxy-close.cfg"
"$WOK" up --listen "$SQLITE_LISTEN" --data "$WORK/sqlite" >"$WORK/sqlite.log" 2>&1 &
SQLITE_PID=$!
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://$SQLITE_LISTEN/healthz" && break
  sleep 0.05
done
SQLITE_TOKEN="$(cat "$WORK/sqlite/admin-token")"

WOK_DATA="$DIR/node-1" "$WOK" deploy hello "$HELLO" >/dev/null
WOK_DATA="$WORK/sqlite" "$WOK" deploy hello "$HELLO" >/dev/null

# Every node serves hello (each fetches and compiles it on its own), and
# the file of whose CPU is measured around each load: name, then pids
# (with their descendants).
nodes_ready() {
  local address
  for address in "$N1" "$N2" "$N3" "$SQLITE_LISTEN"; do
    for _ in $(seq 1 200); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$address/fn/hello")" = 200 ] && break
      sleep 0.05
    done
  done
  cat >"$WORK/groups" <<GROUPS
node1 $(cat "$DIR/node-1/pid")
node2 $(cat "$DIR/node-2/pid")
node3 $(cat "$DIR/node-3/pid")
sqlite $SQLITE_PID
haproxy $(cat "$DIR/haproxy.pid" "$WORK/lb1.pid" "$WORK/lb1cl.pid" "$WORK/lb3cl.pid" | tr "\n" " ")
postgres $(head -1 "$DIR/postgres/data/postmaster.pid")
GROUPS
}
nodes_ready
# cluster.sh cpu SHARE|max: the nodes again, with that share; haproxy
# checks each node every second and takes it back after one good check.
restart_nodes() {
  bash scripts/cluster.sh cpu "$1" >/dev/null
  nodes_ready
  sleep 2
}

cat >"$WORK/bench.py" <<'PY'
import json, os, re, statistics, subprocess, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

CLK = os.sysconf("SC_CLK_TCK")

def proc_ticks(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return 0

def descendants(pids):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, []))
    return out

def snapshot(groups):
    cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    busy = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
    ticks = {name: sum(proc_ticks(p) for p in descendants(pids)) for name, pids in groups.items()}
    return time.monotonic(), busy, ticks

def load_groups(path):
    groups = {}
    for line in open(path):
        name, *pids = line.split()
        groups[name] = [int(p) for p in pids]
    return groups

def wrk(workload, target, round_, url, script):
    """Runs wrk, appends one JSON line to $RESULTS and prints it short."""
    groups = load_groups(os.environ["CPU_GROUPS"])
    command = ["wrk", "-t1", "-c64", f"-d{os.environ['SECONDS_PER_RUN']}s"]
    if script != "-":
        command += ["-s", script]
    before = snapshot(groups)
    child = subprocess.Popen(command + [url], stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, _, usage = os.wait4(child.pid, 0)
    after = snapshot(groups)
    elapsed = after[0] - before[0]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    row = {
        "workload": workload, "target": target, "round": int(round_), "rps": rps,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "cores": {name: (after[2][name] - before[2][name]) / CLK / elapsed for name in groups},
        "machine": (after[1] - before[1]) / CLK / elapsed,
    }
    row["cores"]["wrk"] = (usage.ru_utime + usage.ru_stime) / elapsed
    with open(os.environ["RESULTS"], "a") as out:
        out.write(json.dumps(row) + "\n")
    bad = f" ({row['non2xx']} non-2xx, {row['errors']} socket errors)" if row["non2xx"] or row["errors"] else ""
    print(f"  {workload:<14} {target:<22} round {round_}: {rps:9.0f} req/s{bad}", file=sys.stderr)

def request(method, url, token, body=None, content_type="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=60) as answer:
        return answer.status, answer.read()

def load(url, token, documents, keys):
    """DOCUMENTS people documents as bench/docs.sh, index [city, age], and KEYS key-value entries."""
    import random
    random.seed(7)
    documents, keys = int(documents), int(keys)
    started = time.monotonic()
    for start in range(0, documents, 500):
        writes = [{"op": "set", "collection": "people", "id": f"u{n:07d}",
                   "data": {"city": f"city-{random.randrange(100)}", "age": random.randrange(100),
                            "name": f"user {n}", "score": random.random()}}
                  for n in range(start, min(start + 500, documents))]
        request("POST", f"{url}/v1/docs/_batch", token, {"writes": writes})
    request("PUT", f"{url}/v1/docs/people/_indexes/city-age", token, {"fields": ["city", "age"]})
    loaded = time.monotonic()
    value = b"x" * 64
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: request("PUT", f"{url}/v1/kv/bench/key:{n}", token, value,
                                        "application/octet-stream"), range(keys)))
    print(f"  {url}: {documents} documents and the index in {loaded - started:.1f} s, "
          f"{keys} keys in {time.monotonic() - loaded:.1f} s", file=sys.stderr)

def metrics(urls, token):
    """The delivery histogram of trigger queue-bench summed over the nodes, and each node's deliveries."""
    buckets, delivered = {}, []
    for url in urls:
        _, text = request("GET", f"{url}/metrics", token)
        mine = 0
        for line in text.decode().splitlines():
            if 'trigger="queue-bench"' not in line:
                continue
            value = float(line.rsplit(" ", 1)[1])
            if line.startswith("wok_event_delivery_latency_seconds_bucket"):
                le = line.split('le="')[1].split('"')[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0) + value
            elif line.startswith("wok_event_deliveries_total"):
                mine += value
        delivered.append(mine)
    return buckets, delivered

def percentile(before, after, p):
    counts = sorted((bound, after[bound] - before.get(bound, 0)) for bound in after)
    total = counts[-1][1] if counts else 0
    for bound, count in counts:
        if count >= p / 100 * total:
            return bound
    return float("nan")

def publish(url, token, batch, share, until, interval):
    body = json.dumps({"messages": [{"data": {"n": n}} for n in range(batch)]}).encode()
    counts = [0] * 4
    def publisher(i):
        next_at = time.monotonic()
        while counts[i] < share and time.monotonic() < until:
            status, _ = request("POST", f"{url}/v1/topics/bench/_batch", token, body)
            assert status == 201, status
            counts[i] += batch
            if interval:
                next_at += interval
                wait = next_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    return sum(counts)

def drain(urls, token, before, published, deadline):
    while True:
        _, delivered = metrics(urls, token)
        done = sum(delivered) - sum(before)
        if done >= published or time.monotonic() > deadline:
            return done, [a - b for a, b in zip(delivered, before)]
        time.sleep(0.02)

def events(label, url, metric_urls, token, rate, seconds):
    """As events-bench queue and burst: four publishers, batches of 250 at RATE, then COUNT at once."""
    urls = metric_urls.split(",")
    rate, seconds = int(rate), float(seconds)
    hist_before, delivered_before = metrics(urls, token)
    started = time.monotonic()
    published = publish(url, token, 250, 10**12, started + seconds, 1000 / rate)
    publishing = time.monotonic() - started
    delivered, per_node = drain(urls, token, delivered_before, published, started + 4 * publishing)
    total = time.monotonic() - started
    hist_after, _ = metrics(urls, token)
    quantiles = " ".join(f"p{p:g} <= {percentile(hist_before, hist_after, p) * 1e3:.0f} ms" for p in (50, 90, 99, 99.9))
    print(f"{label:<24} {rate}/s for {seconds:g} s: published {published} ({published / publishing:.0f}/s), "
          f"delivered {delivered:.0f} in {total:.1f} s ({delivered / total:.0f}/s; per node "
          f"{' '.join('%.0f' % d for d in per_node)}); publish-to-delivery {quantiles}")

def burst(label, url, metric_urls, token, count):
    urls = metric_urls.split(",")
    count = int(count)
    _, delivered_before = metrics(urls, token)
    started = time.monotonic()
    published = publish(url, token, 500, -(-count // 4), started + 300, None)
    publishing = time.monotonic() - started
    delivered, per_node = drain(urls, token, delivered_before, published, started + 120)
    total = time.monotonic() - started
    print(f"{label:<24} {published} at once: published in {publishing:.2f} s, delivered {delivered:.0f} in "
          f"{total:.2f} s: {delivered / total:.0f} deliveries/s (per node {' '.join('%.0f' % d for d in per_node)})")

TARGETS = {
    "sqlite": "SQLite node",
    "pg1": "PG node, direct",
    "lb1": "PG node, haproxy",
    "lb3": "3 PG nodes, haproxy",
    "lb1cl": "PG node, haproxy closing",
    "lb3cl": "3 PG nodes, haproxy closing",
}

def report(path, node_cpu):
    rows = [json.loads(line) for line in open(path)]
    by = {}
    for row in rows:
        by.setdefault(row["workload"], {}).setdefault(row["target"], {})[row["round"]] = row
    def ratio(workload, a, b):
        data = by[workload]
        rs = [data[a][r]["rps"] / data[b][r]["rps"] for r in sorted(data[a]) if r in data[b]]
        return f"median {statistics.median(rs):.2f} (rounds {' '.join('%.2f' % x for x in rs)})"
    for workload, targets in by.items():
        print(f"== {workload}")
        for target, runs in targets.items():
            rounds = [runs[r] for r in sorted(runs)]
            figures = " ".join("%7.0f" % r["rps"] for r in rounds)
            cores = {}
            for r in rounds:
                for name, value in r["cores"].items():
                    cores[name] = cores.get(name, 0) + value / len(rounds)
            used = " ".join(f"{name} {value:.2f}" for name, value in cores.items() if value >= 0.02)
            machine = statistics.mean(r["machine"] for r in rounds)
            rest = machine - sum(cores.values())
            bad = sum(r["non2xx"] + r["errors"] for r in rounds)
            print(f"  {TARGETS[target]:<20} {figures}  median {statistics.median(r['rps'] for r in rounds):7.0f} req/s"
                  + (f"  ({bad} non-2xx or socket errors)" if bad else ""))
            print(f"  {'':<20} cores used: {used}; machine {machine:.2f} of 2, {rest:.2f} by none of these")
        if "lb3" in targets and "lb1" in targets:
            print(f"  3 nodes / 1 node, both through haproxy: {ratio(workload, 'lb3', 'lb1')}")
        if "lb3cl" in targets and "lb1cl" in targets:
            print(f"  3 nodes / 1 node, both through haproxy closing connections: {ratio(workload, 'lb3cl', 'lb1cl')}")
        if "lb3" in targets and "pg1" in targets:
            print(f"  3 nodes through haproxy / 1 PG node direct: {ratio(workload, 'lb3', 'pg1')}")
        if "pg1" in targets and "sqlite" in targets:
            print(f"  PG node / SQLite node, both direct: {ratio(workload, 'pg1', 'sqlite')}")
        if "lb3" in targets and "sqlite" in targets:
            print(f"  3 PG nodes through haproxy / SQLite node direct: {ratio(workload, 'lb3', 'sqlite')}")

if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
PY
export RESULTS="$WORK/results.jsonl" CPU_GROUPS="$WORK/groups" SECONDS_PER_RUN
bench() { python3 "$WORK/bench.py" "$@"; }

url_of() { # TARGET
  case "$1" in
  sqlite) echo "http://$SQLITE_LISTEN" ;;
  pg1) echo "http://$N1" ;;
  lb1) echo "http://$LB1_LISTEN" ;;
  lb3) echo "http://$WOK_LB_LISTEN" ;;
  lb1cl) echo "http://$LB1CL_LISTEN" ;;
  lb3cl) echo "http://$LB3CL_LISTEN" ;;
  esac
}
script_of() { # TARGET WORKLOAD-SCRIPT-NAME
  if [ "$1" = sqlite ]; then echo "$WORK/sqlite-$2.lua"; else echo "$WORK/cluster-$2.lua"; fi
}
# rounds WORKLOAD PATH SCRIPT-NAME|- COUNT TARGET...: COUNT rounds, each
# taking the targets in an order rotated by one from the last.
rounds() {
  local workload="$1" path="$2" script="$3" count="$4" round i
  shift 4
  local targets=("$@")
  for round in $(seq 1 "$count"); do
    for i in $(seq 0 $((${#targets[@]} - 1))); do
      local target="${targets[$(((i + round - 1) % ${#targets[@]}))]}"
      local lua=-
      [ "$script" = - ] || lua="$(script_of "$target" "$script")"
      bench wrk "$workload" "$target" "$round" "$(url_of "$target")$path" "$lua"
    done
  done
}

source bench/wrk-scripts.sh
lua_scripts() { # PREFIX TOKEN
  kv_scripts "$1" "$2"
  query_script "$1-query.lua" "$2"
}
lua_scripts "$WORK/sqlite" "$SQLITE_TOKEN"
lua_scripts "$WORK/cluster" "$TOKEN"

echo "== loading the data"
bench load "http://$SQLITE_LISTEN" "$SQLITE_TOKEN" "$DOCUMENTS" 10000
bench load "http://$N1" "$TOKEN" "$DOCUMENTS" 10000

for share in $NODE_CPU; do
  restart_nodes "$share"
  echo "== 1. scale-out: each node $share of a core, /fn/hello (fresh instance), ${SECONDS_PER_RUN}s runs"
  rounds "hello, $share core" /fn/hello - "$ROUNDS" lb1 lb3 lb1cl lb3cl
done

restart_nodes max
echo "== 2, 3. no quota, ${SECONDS_PER_RUN}s runs"
rounds "hello" /fn/hello - "$GRID_ROUNDS" sqlite pg1 lb1 lb3
rounds "kv PUT" / put "$GRID_ROUNDS" sqlite pg1 lb1 lb3
rounds "kv GET" / get "$GRID_ROUNDS" sqlite pg1 lb1 lb3
rounds "docs query" / query "$GRID_ROUNDS" sqlite pg1 lb1 lb3

echo
echo "== results (wrk -t1 -c64, ${SECONDS_PER_RUN}s a run, nothing pinned; per-run figures, then the median)"
bench report "$RESULTS" "$NODE_CPU"

echo
echo "== 4. queue -> hello (fresh instances, concurrency 64), published through haproxy"
TRIGGER="queue=bench;concurrency=64"
WOK_DATA="$DIR/node-1" "$WOK" deploy sink "$HELLO" --trigger "$TRIGGER" --max-concurrency 64 >/dev/null
WOK_DATA="$WORK/sqlite" "$WOK" deploy sink "$HELLO" --trigger "$TRIGGER" --max-concurrency 64 >/dev/null
sleep 1 # every node has the trigger (a poll is 250 ms)
CLUSTER_METRICS="http://$N1,http://$N2,http://$N3"
bench events "3 PG nodes, haproxy" "http://$WOK_LB_LISTEN" "$CLUSTER_METRICS" "$TOKEN" "$EVENT_RATE" "$SECONDS_PER_RUN"
bench events "SQLite node" "http://$SQLITE_LISTEN" "http://$SQLITE_LISTEN" "$SQLITE_TOKEN" "$EVENT_RATE" "$SECONDS_PER_RUN"
bench burst "3 PG nodes, haproxy" "http://$WOK_LB_LISTEN" "$CLUSTER_METRICS" "$TOKEN" "$EVENT_BURST"
bench burst "SQLite node" "http://$SQLITE_LISTEN" "http://$SQLITE_LISTEN" "$SQLITE_TOKEN" "$EVENT_BURST"
