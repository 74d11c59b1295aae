#!/usr/bin/env bash
# Builds (if needed) and runs the broker: `scripts/serve.sh [kairos serve flags]`.
# On a fresh Debian machine it first installs what RocksDB's build needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kairos/target}"
need=()
for p in libclang-dev clang build-essential; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
exec cargo run --release --bin kairos -- serve "$@"
