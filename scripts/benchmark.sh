#!/usr/bin/env bash
# The benchmark behind BENCHMARKS.md: release binaries (the guard and the
# hello-world floor) against the local bench. Pass --smoke for the quick
# version CI runs on the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/connect-slr-guard/target}"
export VENV_DIR="${VENV_DIR:-$HOME/.cache/connect-slr-guard/venv}"
cargo build --release --locked --bins
venv=$(bash scripts/venv.sh | tail -n 1)
cd bench && exec "$venv/bin/python" benchmark.py "$@"
