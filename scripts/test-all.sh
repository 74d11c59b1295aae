#!/usr/bin/env bash
# Installs every test dependency on a fresh Debian machine and runs every test:
#   1. apt packages (kcat, the C/C++ toolchain RocksDB needs, python3-venv), only
#      when something is missing, so reruns stay fast;
#   2. a Python venv at .venv with the stock Python clients + pytest
#      (reinstalled only when compat-tests/requirements.txt changes);
#   3. kafkajs via `npm ci` in compat-tests/node (only when the lock changes);
#   4. `cargo build --release --all-targets`, `cargo test --release --no-fail-fast`;
#   5. `pytest compat-tests` against the freshly built broker binary.
# Exits non-zero when any step or any test fails. Idempotent; works from any cwd.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo builds (default: ~/.cache/kairos/target, outside the
#                     clone so CI runs reuse RocksDB's 15 CPU-minute C++ build)
#   PYTEST_ARGS       extra arguments for pytest (e.g. "-k kcat -x")
#   SKIP_CARGO_TEST=1 skip `cargo test` (still builds)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kairos/target}"
mkdir -p "$CARGO_TARGET_DIR"
export KAIROS_BIN="$CARGO_TARGET_DIR/release/kairos"

log() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }
START_TS=$(date +%s)

# ---------------------------------------------------------------- 1. apt packages
APT_PKGS=(kcat libclang-dev clang cmake build-essential python3-venv pkg-config ca-certificates chromium)
missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q || die "apt-get update failed"
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed"
else
    log "apt packages already installed"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"

# ---------------------------------------------------------------- 2. Python venv
REQ="compat-tests/requirements.txt"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
req_hash="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$PY" ] || ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    log "creating Python venv at .venv"
    rm -rf "$VENV"
    # prefer the python3 on PATH (pyenv where present); fall back to Debian's
    python3 -m venv "$VENV" 2>/dev/null || /usr/bin/python3 -m venv "$VENV" || die "python3 -m venv failed"
fi
if [ "$(cat "$VENV/.req-hash" 2>/dev/null)" != "$req_hash" ]; then
    log "pip install -r $REQ"
    "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$PY" -m pip install -q -r "$REQ" || die "pip install failed"
    echo "$req_hash" > "$VENV/.req-hash"
else
    log "Python venv up to date"
fi

# ---------------------------------------------------------------- 3. node modules
NODE_DIR="compat-tests/node"
lock_hash="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$NODE_DIR/node_modules/.lock-hash" 2>/dev/null)" != "$lock_hash" ]; then
    log "npm ci in $NODE_DIR"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
    echo "$lock_hash" > "$NODE_DIR/node_modules/.lock-hash"
else
    log "node modules up to date"
fi

# ---------------------------------------------------------------- 4. build + cargo test
log "cargo build --release --all-targets (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --all-targets || die "cargo build failed"
[ -x "$KAIROS_BIN" ] || die "broker binary not found at $KAIROS_BIN"

cargo_rc=0
if [ "${SKIP_CARGO_TEST:-0}" != 1 ]; then
    log "cargo test --release --no-fail-fast"
    cargo test --release --no-fail-fast
    cargo_rc=$?
fi

# ---------------------------------------------------------------- 5. compat tests
log "pytest compat-tests (KAIROS_BIN=$KAIROS_BIN)"
# shellcheck disable=SC2086
"$PY" -m pytest compat-tests -ra -q -p no:cacheprovider ${PYTEST_ARGS:-}
pytest_rc=$?

log "summary ($(($(date +%s) - START_TS)) s): cargo test exit $cargo_rc, pytest exit $pytest_rc"
if [ "$cargo_rc" != 0 ] || [ "$pytest_rc" != 0 ]; then
    exit 1
fi
exit 0
