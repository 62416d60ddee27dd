#!/usr/bin/env bash
# Installs the clients and peers the auth tests drive, unmodified:
# supabase-js and the OpenID Connect provider oauth2-mock-server from npm
# (pinned by crates/cli/tests/auth/package-lock.json),
# and in a Python virtualenv under it (venv/) the SMTP sink's aiosmtpd and
# the TOTP peer pyotp (an authenticator's codes) from PyPI. Prints the directory whose node_modules holds supabase-js.
# Idempotent: a second run with the same lock file and versions does
# nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOURCE="$ROOT/crates/cli/tests/auth"
DIR="${WOK_AUTH_TOOLS:-$ROOT/target/auth-tools}"
PYTHON_VERSIONS="aiosmtpd==1.4.6 pyotp==2.12.1"
command -v npm >/dev/null || { echo "npm is required (Node 20 or later)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required (with venv)" >&2; exit 1; }
# Tests may run this from several processes at once: one installs, the
# others wait for it.
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
STAMP="$(sha256sum "$SOURCE/package-lock.json" | cut -d' ' -f1) $PYTHON_VERSIONS"
if [ -f "$DIR/installed" ] && [ "$(cat "$DIR/installed")" = "$STAMP" ]; then
  echo "$DIR"
  exit 0
fi
rm -rf "$DIR"
mkdir -p "$DIR"
cp "$SOURCE/package.json" "$SOURCE/package-lock.json" "$DIR/"
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
python3 -m venv "$DIR/venv" >&2
# shellcheck disable=SC2086
"$DIR/venv/bin/pip" install --quiet --disable-pip-version-check $PYTHON_VERSIONS >&2
echo "$STAMP" >"$DIR/installed"
echo "$DIR"
