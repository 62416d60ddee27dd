#!/usr/bin/env bash
# Builds the Rust Lambda test function (crates/cli/tests/native/rust-lambda,
# AWS's lambda_runtime from crates.io, unmodified) into its own target
# directory, and prints the path of its `bootstrap`. Idempotent: cargo
# rebuilds only what changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$ROOT/target/toolchains/rust-lambda"
mkdir -p "$TARGET"
exec 9>"$TARGET.lock"
flock 9
cargo build --quiet --release \
  --manifest-path "$ROOT/crates/cli/tests/native/rust-lambda/Cargo.toml" \
  --target-dir "$TARGET" >&2
echo "$TARGET/release/bootstrap"
