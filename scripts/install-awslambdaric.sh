#!/usr/bin/env bash
# Installs AWS's Lambda runtime interface client for Python (awslambdaric,
# unmodified, from PyPI) into a directory a test copies into a native
# function's bundle. It is built for the sandbox's python3 (Debian's, 3.11):
# pip is told that Python version and platform, whatever runs this script.
# Prints the directory. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$ROOT/target/toolchains/awslambdaric"
VERSION="awslambdaric==4.2.2"
mkdir -p "$(dirname "$TARGET")"
exec 9>"$TARGET.lock"
flock 9
if [ -f "$TARGET/installed" ] && [ "$(cat "$TARGET/installed")" = "$VERSION" ]; then
  echo "$TARGET"
  exit 0
fi
rm -rf "$TARGET"
python3 -m pip install --quiet --disable-pip-version-check --target "$TARGET/packages" \
  --python-version 3.11 --only-binary=:all: --platform manylinux2014_x86_64 \
  --implementation cp "$VERSION" >&2
echo "$VERSION" >"$TARGET/installed"
echo "$TARGET"
