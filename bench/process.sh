#!/usr/bin/env bash
# Native (process) functions, measured through wok and beside the same
# programs run directly, in one run.
#
#   bench/process.sh [SECONDS_PER_RUN] [COLD_STARTS]   (defaults: 10, 60)
#   WOK_BINARY=/path/to/wok bench/process.sh ...        (another build)
#
# wok is pinned to core 0, the load (wrk, the Python client) to core 1;
# the sandboxed programs run where the kernel puts them.
#   - cold start to the first response byte: a static C HTTP server
#     (bench/native/static-server.c) and a Python stdlib app
#     (bench/native/hello.py), each request to a function that has no
#     instance yet; the Python app's start run directly (no sandbox, no
#     wok) beside it;
#   - a warm request: wrk -c1 latency and wrk -c64 throughput through
#     /fn/NAME against the same static server run directly, and wok's own
#     CPU time per request;
#   - a warm Lambda invocation: awslambdaric's round trip through the
#     Runtime API wok serves inside the instance;
#   - a request to a frozen instance (idle 2.2 s), which thaws it;
#   - 0 -> 200 instances: 200 requests at once to a function with
#     concurrency 1 that hold each instance 300 ms; the time until all
#     answered, less those 300 ms; wok's resident memory per idle instance.
# Record the output in BENCHMARKS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_RUN="${1:-10}"
COLD="${2:-60}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# WOK_BINARY: another build to measure (say, a baseline), else this tree's.
if [ -n "${WOK_BINARY:-}" ]; then
  WOK="$WOK_BINARY"
else
  cargo build --release -p cli >/dev/null
  WOK="$ROOT/target/release/wok"
fi

PIDS=()
DATA="$(mktemp -d)"
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

mkdir -p "$DATA/static" "$DATA/python" "$DATA/lambda"
cc -static -O2 -o "$DATA/static/static-server" bench/native/static-server.c
cp bench/native/hello.py "$DATA/python/"
cp -r "$(scripts/install-awslambdaric.sh)/packages" "$DATA/lambda/packages"
cp bench/native/lambda_hello.py "$DATA/lambda/"

PORT=18191 DIRECT_PORT=18192
taskset -c 0 "$WOK" up --listen "127.0.0.1:$PORT" --data "$DATA/wok" --max-process-instances 600 >/dev/null 2>"$DATA/wok.log" &
PIDS+=($!)
WOK_PID=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.05; done
export WOK_DATA="$DATA/wok"
for i in $(seq 1 "$COLD"); do
  "$WOK" deploy "static-$i" "$DATA/static" --runtime process --command ./static-server --idle-timeout 2s >/dev/null
done
for i in $(seq 1 20); do
  "$WOK" deploy "python-$i" "$DATA/python" --runtime process --command "python3 hello.py" --idle-timeout 2s >/dev/null
done
"$WOK" deploy warm "$DATA/static" --runtime process --command ./static-server --concurrency 64 --cpu 2 >/dev/null
"$WOK" deploy lambda "$DATA/lambda" --runtime process --protocol lambda --cpu 2 \
  --command "python3 -m awslambdaric lambda_hello.handler" --env PYTHONPATH=/app/packages:/app >/dev/null
"$WOK" deploy thaw "$DATA/static" --runtime process --command ./static-server >/dev/null
"$WOK" deploy fan "$DATA/static" --runtime process --command ./static-server --max-instances 200 >/dev/null

echo "== cold start to the first response byte (each request to a function with no instance)"
taskset -c 1 python3 - "$PORT" "$COLD" "$DATA/python/hello.py" <<'PY'
import http.client, os, socket, statistics, subprocess, sys, time
port, cold, app = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def first_byte(path, to_port=port):
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", to_port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read(1)
    elapsed = time.perf_counter() - start
    assert response.status == 200, (path, response.status, response.read())
    connection.close()
    return elapsed * 1000

def summary(label, samples):
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print("%-44s p50 %7.2f ms  p99 %7.2f ms  min %6.2f ms  (n=%d)" % (label, statistics.median(samples), p99, samples[0], len(samples)))
    return statistics.median(samples)

static = [first_byte("/fn/static-%d/" % i) for i in range(1, cold + 1)]
summary("static C server through wok, cold", static)
warm = [first_byte("/fn/static-1/") for _ in range(cold)]
summary("static C server through wok, warm", warm)
python = [first_byte("/fn/python-%d/" % i) for i in range(1, 21)]
through = summary("python3 stdlib app through wok, cold", python)

def direct_start(n):
    port = 18300 + n
    start = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/python3", app], env={"PORT": str(port), "PATH": "/usr/bin:/bin"})
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.0005)
    connect = time.perf_counter() - start
    ms = connect * 1000 + first_byte("/", port)
    process.kill()
    process.wait()
    return ms
direct = summary("python3 stdlib app run directly (no sandbox)", [direct_start(n) for n in range(20)])
print("%-44s %+7.2f ms" % ("python3 app: wok cold minus direct start", through - direct))

# An instance idle a second is frozen at the next upkeep tick (every
# second): 2.2 s apart, every request finds it frozen.
first_byte("/fn/thaw/")
thawed = []
for _ in range(10):
    time.sleep(2.2)
    thawed.append(first_byte("/fn/thaw/"))
summary("static C server through wok, frozen (thawed)", thawed)
PY

taskset -c 1 env PORT="$DIRECT_PORT" "$DATA/static/static-server" &
PIDS+=($!)
sleep 0.2
echo "== a warm request: the static server through wok against the same server run directly"
latency() { # URL -> p50 in us
  taskset -c 1 wrk -t1 -c1 -d"${SECONDS_PER_RUN}s" --latency "$1" | awk '/^ +50%/ {v=$2; if (v ~ /ms$/) {sub("ms","",v); v=v*1000} else if (v ~ /us$/) {sub("us","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000000}; print v}'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$WOK_PID/stat"; }
DIRECT_P50=$(latency "http://127.0.0.1:$DIRECT_PORT/")
WOK_P50=$(latency "http://127.0.0.1:$PORT/fn/warm/")
printf '%-44s %8s us\n' "p50, wrk -c1, direct" "$DIRECT_P50" "p50, wrk -c1, through wok" "$WOK_P50"
printf '%-44s %8.1f us\n' "added by wok (p50)" "$(echo "$WOK_P50 - $DIRECT_P50" | bc -l)"
DIRECT_RPS=$(taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$DIRECT_PORT/" | awk '/Requests\/sec/ {print $2}')
BEFORE=$(cpu_ticks)
OUT=$(taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$PORT/fn/warm/")
AFTER=$(cpu_ticks)
WOK_RPS=$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')
REQUESTS=$(echo "$OUT" | awk '/requests in/ {print $1}')
TICK=$(getconf CLK_TCK)
printf '%-44s %10s req/s\n' "wrk -c64, direct" "$DIRECT_RPS" "wrk -c64, through wok" "$WOK_RPS"
printf '%-44s %10.3f\n' "through wok / direct" "$(echo "$WOK_RPS / $DIRECT_RPS" | bc -l)"
printf '%-44s %10.1f us\n' "wok CPU per request (whole server)" "$(echo "($AFTER - $BEFORE) * 1000000 / $TICK / $REQUESTS" | bc -l)"

echo "== a warm lambda invocation (awslambdaric, the Runtime API inside the instance)"
curl -s -o /dev/null "http://127.0.0.1:$PORT/fn/lambda/"
LAMBDA_P50=$(latency "http://127.0.0.1:$PORT/fn/lambda/")
BEFORE=$(cpu_ticks)
OUT=$(taskset -c 1 wrk -t1 -c1 -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$PORT/fn/lambda/")
AFTER=$(cpu_ticks)
REQUESTS=$(echo "$OUT" | awk '/requests in/ {print $1}')
printf '%-44s %8s us\n' "p50, wrk -c1, through wok" "$LAMBDA_P50"
printf '%-44s %10s req/s\n' "wrk -c1" "$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')"
printf '%-44s %10.1f us\n' "wok CPU per invocation (whole server)" "$(echo "($AFTER - $BEFORE) * 1000000 / $TICK / $REQUESTS" | bc -l)"

echo "== 0 -> 200 instances: 200 requests at once, each holding an instance 300 ms"
RSS_BEFORE=$(awk '/VmRSS/ {print $2}' "/proc/$WOK_PID/status")
taskset -c 1 python3 - "$PORT" <<'PY'
import concurrent.futures, http.client, sys, time
port = int(sys.argv[1])
def call(_):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/fn/fan/hold?ms=300")
    response = connection.getresponse()
    response.read()
    return response.status
start = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(200) as pool:
    statuses = list(pool.map(call, range(200)))
elapsed = time.perf_counter() - start
print("%-44s %s" % ("answers", {s: statuses.count(s) for s in set(statuses)}))
print("%-44s %7.3f s (less the 300 ms each held)" % ("all 200 answered in", elapsed - 0.3))
PY
sleep 1
RSS_AFTER=$(awk '/VmRSS/ {print $2}' "/proc/$WOK_PID/status")
INSTANCES=$(curl -s "http://127.0.0.1:$PORT/metrics" -H "authorization: Bearer $(cat "$DATA/wok/metrics-token")" | awk '/^wok_process_instances\{state="idle"\}/ {print $2}')
printf '%-44s %s\n' "idle instances (metrics)" "${INSTANCES:-?}"
printf '%-44s %8.1f KiB\n' "wok resident memory per idle instance" "$(echo "($RSS_AFTER - $RSS_BEFORE) / 200" | bc -l)"
