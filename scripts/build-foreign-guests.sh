#!/usr/bin/env bash
# Build the foreign-language test guests (Python via componentize-py,
# JavaScript via componentize-js) into target/foreign-guests/.
#
#   scripts/build-foreign-guests.sh          # install toolchains if needed, build what changed
#   FORCE=1 scripts/build-foreign-guests.sh  # rebuild every component
#
# Toolchains (pinned, installed from PyPI and npm only, nothing else is downloaded):
#   target/toolchains/py  venv with componentize-py==0.25.1
#   target/toolchains/js  npm packages of guests-foreign/js/package-lock.json
#                         (componentize-js 0.23.0, jco 1.35.0)
# The WASI 0.2.12 WIT comes from the installed jco package and is copied to
# guests-foreign/wit/deps/ (git-ignored).
#
# A component is rebuilt only when the sha256 of its inputs (source file,
# WIT, toolchain version, build flags) differs from the stamp stored next to
# it (target/foreign-guests/<name>.wasm.sha256). Prints one line per component.
# See guests-foreign/README.md for the behaviour the guests implement.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/guests-foreign"
TOOLS="$ROOT/target/toolchains"
OUT="$ROOT/target/foreign-guests"
PYTHON="${PYTHON:-python3}"

COMPONENTIZE_PY_VERSION="0.25.1"
WASI_VERSION="0.2.12"
WORLD="wok:foreign-guests/http-proxy"

log() { printf '%s\n' "$*"; }
die() { printf 'build-foreign-guests: %s\n' "$*" >&2; exit 1; }

sha256_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

command -v node >/dev/null || die "node is required (Node 20+)"
command -v npm >/dev/null || die "npm is required"
command -v "$PYTHON" >/dev/null || die "$PYTHON is required (Python 3.10+ with venv)"

mkdir -p "$TOOLS" "$OUT"

# --- Python toolchain ------------------------------------------------------
PY_VENV="$TOOLS/py"
COMPONENTIZE_PY="$PY_VENV/bin/componentize-py"
if [[ "$("$COMPONENTIZE_PY" --version 2>/dev/null || true)" != "componentize-py $COMPONENTIZE_PY_VERSION" ]]; then
  log "toolchain: installing componentize-py==$COMPONENTIZE_PY_VERSION into target/toolchains/py"
  rm -rf "$PY_VENV"
  "$PYTHON" -m venv "$PY_VENV"
  "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
  [[ "$("$COMPONENTIZE_PY" --version)" == "componentize-py $COMPONENTIZE_PY_VERSION" ]] \
    || die "componentize-py install did not produce version $COMPONENTIZE_PY_VERSION"
fi

# --- JavaScript toolchain --------------------------------------------------
# `npm ci` cannot be used: some optional per-platform packages that jco's
# dependencies list (e.g. @bytecodealliance/jco-node-fs-win32-x64-msvc@0.3.2)
# were never published, so npm leaves them out of the lock file and `npm ci`
# then refuses the lock as "out of sync". `npm install` against the committed
# lock installs exactly the locked versions and skips those.
JS_DIR="$TOOLS/js"
JS_STAMP="$JS_DIR/.wok-lock.sha256"
js_lock_hash="$(sha256_of "$SRC/js/package.json" "$SRC/js/package-lock.json")"
if [[ ! -f "$JS_DIR/node_modules/@bytecodealliance/componentize-js/package.json" \
      || "$(cat "$JS_STAMP" 2>/dev/null || true)" != "$js_lock_hash" ]]; then
  log "toolchain: installing componentize-js/jco from guests-foreign/js/package-lock.json into target/toolchains/js"
  rm -rf "$JS_DIR"
  mkdir -p "$JS_DIR"
  cp "$SRC/js/package.json" "$SRC/js/package-lock.json" "$JS_DIR/"
  (cd "$JS_DIR" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error)
  printf '%s\n' "$js_lock_hash" >"$JS_STAMP"
fi
cp "$SRC/js/build.mjs" "$JS_DIR/build.mjs"

# --- WIT -------------------------------------------------------------------
JCO_WIT="$JS_DIR/node_modules/@bytecodealliance/jco/lib/wit/builtin/$WASI_VERSION"
[[ -f "$JCO_WIT/wasi-http/package.wit" ]] || die "no WASI $WASI_VERSION WIT in $JCO_WIT"
WIT_DEPS="$SRC/wit/deps"
if ! diff -r -q "$JCO_WIT" "$WIT_DEPS" >/dev/null 2>&1; then
  rm -rf "$WIT_DEPS"
  mkdir -p "$WIT_DEPS"
  cp -R "$JCO_WIT"/. "$WIT_DEPS"/
fi
wit_hash="$(cd "$SRC/wit" && find . -name '*.wit' -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"

# --- components ------------------------------------------------------------
human_size() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }

# build_if_changed NAME INPUT_HASH BUILD_FUNCTION ARGS...
build_if_changed() {
  local name="$1" hash="$2"
  shift 2
  local wasm="$OUT/$name.wasm" stamp="$OUT/$name.wasm.sha256"
  if [[ -z "${FORCE:-}" && -f "$wasm" && "$(cat "$stamp" 2>/dev/null || true)" == "$hash" ]]; then
    log "up-to-date $name.wasm ($(human_size "$(stat -c %s "$wasm")"))"
    return
  fi
  rm -f "$stamp"
  local start end
  start=$(date +%s.%N)
  "$@" "$wasm.tmp"
  mv -f "$wasm.tmp" "$wasm"
  printf '%s\n' "$hash" >"$stamp"
  end=$(date +%s.%N)
  log "built $name.wasm ($(human_size "$(stat -c %s "$wasm")"), $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s)"
}

# componentize-py reads the app from a python path and, running CPython
# inside, writes __pycache__ next to it; build from a private copy so the
# source tree stays clean and no other file leaks into the component.
build_py() {
  local app="$1" out="$2" work
  work="$(mktemp -d "$OUT/.py-$app.XXXXXX")"
  cp "$SRC/py/$app.py" "$work/"
  if ! (cd "$work" && env -u VIRTUAL_ENV "$COMPONENTIZE_PY" --quiet \
          -d "$SRC/wit" -w "$WORLD" componentize -p "$work" "$app" -o "$out"); then
    rm -rf "$work"
    die "componentize-py failed for $app"
  fi
  rm -rf "$work"
}

build_js() {
  local app="$1" out="$2"
  node "$JS_DIR/build.mjs" "$SRC/js/$app.js" "$SRC/wit" "$WORLD" "$out" \
    || die "componentize-js failed for $app"
}

for app in hello echo; do
  hash="$(printf 'py|%s|%s|%s|%s\n' "$COMPONENTIZE_PY_VERSION" "$WORLD" "$wit_hash" "$(sha256_of "$SRC/py/$app.py")" | sha256sum | cut -d' ' -f1)"
  build_if_changed "$app-py" "$hash" build_py "$app"
done

for app in hello echo; do
  hash="$(printf 'js|%s|%s|%s|%s|%s\n' "$js_lock_hash" "$WORLD" "$wit_hash" "$(sha256_of "$SRC/js/build.mjs")" "$(sha256_of "$SRC/js/$app.js")" | sha256sum | cut -d' ' -f1)"
  build_if_changed "$app-js" "$hash" build_js "$app"
done
