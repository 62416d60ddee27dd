#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets) for SECONDS (default 60) with
# cargo-fuzz on the nightly toolchain (installing cargo-fuzz if needed).
# A crash stops the run with libFuzzer's report; its input is in
# fuzz/artifacts/TARGET/. What a target finds becomes a regression test.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
SECONDS_EACH="${1:-60}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi
for target in "${TARGETS[@]}"; do
  echo "== fuzzing $target for ${SECONDS_EACH}s"
  mkdir -p "corpus/$target"
  cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E "^(==|#[0-9]+.*(DONE|NEW)|stat::number_of_executed_units|SUMMARY|panicked|Failing input|artifact)" | tail -5
done
