# Sourced by bench/kv.sh and bench/run.sh. With BASELINE_WOK=/path/to/wok
# (an older build, say of the commit before a change), they also start that
# binary beside this checkout's, on the same core, and put the same load on
# both in alternating rounds (ROUNDS, default 3; odd rounds this checkout
# first, even rounds the baseline first), printing every figure and the
# ratio this/baseline: median, and the lowest and highest of the rounds.
# Only one of the two servers is under load at a time.

# Starts the baseline on core 0 with a data directory of its own:
# start_baseline PORT; sets BASE_DATA, BASE_PID and BASE_TOKEN.
start_baseline() {
  BASE_DATA="$(mktemp -d)"
  taskset -c 0 "$BASELINE_WOK" up --listen "127.0.0.1:$1" --data "$BASE_DATA" >/dev/null 2>"$BASE_DATA.log" &
  BASE_PID=$!
  PIDS+=("$BASE_PID")
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && break
    sleep 0.05
  done
  BASE_TOKEN="$(cat "$BASE_DATA/admin-token")"
}

# compare LABEL THIS_COMMAND BASELINE_COMMAND [UNIT]: each command prints
# one figure in UNIT (default req/s).
compare() {
  local this=() base=() round
  for round in $(seq 1 "${ROUNDS:-3}"); do
    if [ $((round % 2)) -eq 1 ]; then
      this+=("$(eval "$2")"); base+=("$(eval "$3")")
    else
      base+=("$(eval "$3")"); this+=("$(eval "$2")")
    fi
  done
  python3 - "$1" "${this[*]}" "${base[*]}" "${4:-req/s}" <<'PY'
import statistics, sys
label, this, base, unit = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()], sys.argv[4]
ratios = [a / b for a, b in zip(this, base)]
spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs) * 100
print("%s\n  this     %s %s (spread %.1f%%)\n  baseline %s %s (spread %.1f%%)\n  this/baseline: median %.3f, rounds %.3f..%.3f"
      % (label, " ".join("%.0f" % x for x in this), unit, spread(this), " ".join("%.0f" % x for x in base), unit, spread(base),
         statistics.median(ratios), min(ratios), max(ratios)))
PY
}

# ready_ms BINARY DATA PORT: starts a stopped server on DATA, prints the
# milliseconds until it says it is listening, and stops it again.
ready_ms() {
  local out start pid
  out="$(mktemp)"
  start=$(date +%s%N)
  taskset -c 0 "$1" up --listen "127.0.0.1:$3" --data "$2" >"$out" 2>/dev/null &
  pid=$!
  until grep -q listening "$out" 2>/dev/null; do sleep 0.002; done
  echo $((($(date +%s%N) - start) / 1000000))
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$out"
}
