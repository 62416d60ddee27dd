#!/usr/bin/env bash
# Installs what the transcoding example (examples/transcode) needs, for its
# test: Debian's sox on the host (a native function sees the host's /usr
# read-only), and boto3, unmodified from PyPI, into a directory the test
# copies into the function's bundle (as a user would vendor it). Prints
# that directory. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$ROOT/target/toolchains/boto3"
VERSION="boto3==1.43.11"
mkdir -p "$(dirname "$TARGET")"
exec 9>"$TARGET.lock"
flock 9
if ! command -v sox >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "sox is missing: install it (apt-get install sox) or run this as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends sox >&2
fi
if [ -f "$TARGET/installed" ] && [ "$(cat "$TARGET/installed")" = "$VERSION" ]; then
  echo "$TARGET"
  exit 0
fi
rm -rf "$TARGET"
# pip compiles the modules for this python3, the one the sandbox runs.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$TARGET/packages" "$VERSION" >&2
echo "$VERSION" >"$TARGET/installed"
echo "$TARGET"
