#!/usr/bin/env bash
# The demo (README's first command): builds the binaries, installs the bench's
# Python tools into a virtualenv, and replays real events against an
# emulated account. Needs no AWS account and no network beyond the registries.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/connect-slr-guard/target}"
export VENV_DIR="${VENV_DIR:-$HOME/.cache/connect-slr-guard/venv}"
cargo build --locked --bins
venv=$(bash scripts/venv.sh | tail -n 1)
cd bench && exec "$venv/bin/python" demo.py
