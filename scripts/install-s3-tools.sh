#!/usr/bin/env bash
# Installs the S3 clients the S3 endpoint's tests drive, unmodified, from
# PyPI into a virtualenv of the project's own: boto3 and aws-cli (v1; v2 is
# not on PyPI). Prints the virtualenv's directory. Idempotent: a second run
# with the same versions does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WOK_S3_TOOLS:-$ROOT/target/s3-tools}"
VERSIONS="boto3==1.43.11 awscli==1.45.11"
# Tests may run this from several processes at once: one installs, the
# others wait for it.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ -f "$VENV/installed" ] && [ "$(cat "$VENV/installed")" = "$VERSIONS" ]; then
  echo "$VENV"
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV" >&2
# shellcheck disable=SC2086
"$VENV/bin/pip" install --quiet --disable-pip-version-check $VERSIONS >&2
echo "$VERSIONS" >"$VENV/installed"
echo "$VENV"
