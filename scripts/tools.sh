#!/usr/bin/env bash
# Installs the project's Rust tools (pinned) into a cache outside the clone
# and prints the bin directory. Idempotent: nothing happens when present.
set -euo pipefail
TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/connect-slr-guard/tools}"
CARGO_DENY_VERSION=0.18.9
if ! "$TOOLS_DIR/bin/cargo-deny" --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
    # Its own target directory: the project's build is not rebuilt or locked.
    CARGO_TARGET_DIR="$TOOLS_DIR/target" cargo install --locked --quiet --root "$TOOLS_DIR" \
        cargo-deny --version "$CARGO_DENY_VERSION" >&2
fi
echo "$TOOLS_DIR/bin"
