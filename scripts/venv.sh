#!/usr/bin/env bash
# Create or update the Python virtualenv used by the end-to-end bench
# (moto server, the Connect/Customer Profiles test double, pytest).
#
#   scripts/venv.sh            -> venv at $REPO/.venv
#   VENV_DIR=/x scripts/venv.sh -> venv at /x
#   PYTHON=python3.12 ...      -> another interpreter (default python3.11)
#
# Idempotent: a stamp file inside the venv holds the sha256 of
# bench/requirements.txt plus the interpreter version; when it matches,
# pip is not run at all. Prints the venv path as the last line.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO/.venv}"
PYTHON="${PYTHON:-python3.11}"
REQS="$REPO/bench/requirements.txt"
STAMP="$VENV_DIR/.requirements.sha256"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "venv.sh: $PYTHON not found on PATH" >&2
    exit 1
fi
[ -f "$REQS" ] || { echo "venv.sh: missing $REQS" >&2; exit 1; }

py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
want="$( { cat "$REQS"; echo "python=$py_version"; } | sha256sum | cut -d' ' -f1)"

# A venv whose interpreter no longer runs (e.g. python moved) is rebuilt.
if [ -e "$VENV_DIR" ] && ! "$VENV_DIR/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "venv.sh: $VENV_DIR is broken, recreating" >&2
    rm -rf "$VENV_DIR"
fi

if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PYTHON" -m venv "$VENV_DIR"
fi

have=""
[ -f "$STAMP" ] && have="$(cat "$STAMP")"

if [ "$have" != "$want" ]; then
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    "$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip
    "$VENV_DIR/bin/python" -m pip install --quiet -r "$REQS"
    # Fail now, not in the middle of a test run, if the install is unusable.
    "$VENV_DIR/bin/python" -c 'import boto3, moto.server, pytest' >/dev/null
    echo "$want" > "$STAMP"
fi

echo "$VENV_DIR"
