#!/usr/bin/env bash
# Create or update a Python virtualenv for the project's Python tooling.
#
#   scripts/venv.sh                      -> venv at $REPO/.venv with bench/requirements.txt
#                                           (moto server, the Connect/Customer Profiles
#                                           test double, pytest)
#   scripts/venv.sh FILE...              -> the same venv with those requirement files,
#                                           installed together in one pip run, e.g.
#                                           scripts/venv.sh bench/requirements.txt deploy/requirements-lint.txt
#   VENV_DIR=/x scripts/venv.sh ...      -> venv at /x
#   PYTHON=python3.12 ...                -> another interpreter (default python3.11)
#
# FILE paths are taken relative to the current directory, or else to the
# repository root.
#
# Idempotent: a stamp file inside the venv lists the sha256 of every
# requirement file installed into it, plus the interpreter version. When every
# FILE asked for is already listed with its current hash, pip is not run at
# all (so a venv that has the lint and package tools is not reinstalled when
# only the lint tools are asked for). Prints the venv path as the last line.
#
# Note: the deploy tools (deploy/requirements-*.txt) pin boto3 through
# aws-sam-cli, which conflicts with the bench's boto3 pin: install them into
# their own venv (scripts/lint-template.sh and scripts/package.sh use
# VENV_DIR=~/.cache/connect-slr-guard/venv-deploy).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO/.venv}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV_DIR/.requirements.sha256"

if [ "$#" -eq 0 ]; then
    set -- "$REPO/bench/requirements.txt"
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "venv.sh: $PYTHON not found on PATH" >&2
    exit 1
fi

# Resolve each FILE to an absolute path and a stamp key (repo-relative when
# inside the repository).
files=()
keys=()
for arg in "$@"; do
    if [ -f "$arg" ]; then
        path="$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")"
    elif [ -f "$REPO/$arg" ]; then
        path="$REPO/$arg"
    else
        echo "venv.sh: missing requirements file $arg" >&2
        exit 1
    fi
    files+=("$path")
    case "$path" in
        "$REPO"/*) keys+=("${path#"$REPO"/}") ;;
        *) keys+=("$path") ;;
    esac
done

py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

# A venv whose interpreter no longer runs (e.g. python moved) is rebuilt.
if [ -e "$VENV_DIR" ] && ! "$VENV_DIR/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "venv.sh: $VENV_DIR is broken, recreating" >&2
    rm -rf "$VENV_DIR"
fi

if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PYTHON" -m venv "$VENV_DIR"
fi

# Stamp format: "python=X.Y.Z" on the first line, then "<sha256>  <key>" per
# installed requirements file. Any other content (e.g. an older stamp) counts
# as nothing installed.
stamp_lines=""
if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "python=$py_version" ]; then
    stamp_lines="$(tail -n +2 "$STAMP")"
fi

wanted=()
missing=0
for i in "${!files[@]}"; do
    line="$(sha256sum "${files[$i]}" | cut -d' ' -f1)  ${keys[$i]}"
    wanted+=("$line")
    if ! grep -qxF -- "$line" <<<"$stamp_lines"; then
        missing=1
    fi
done

if [ "$missing" -eq 1 ]; then
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    "$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip
    pip_args=()
    for f in "${files[@]}"; do pip_args+=(-r "$f"); done
    "$VENV_DIR/bin/python" -m pip install --quiet "${pip_args[@]}"
    # Fail now, not in the middle of a run, if the install is unusable.
    for key in "${keys[@]}"; do
        case "$key" in
            bench/requirements.txt)
                "$VENV_DIR/bin/python" -c 'import boto3, moto.server, pytest' >/dev/null ;;
            deploy/requirements-lint.txt)
                "$VENV_DIR/bin/python" -c 'import cfnlint.decode, samcli, pytest' >/dev/null
                "$VENV_DIR/bin/sam" --version >/dev/null ;;
            deploy/requirements-package.txt)
                "$VENV_DIR/bin/cargo-lambda" lambda --version >/dev/null
                "$VENV_DIR/bin/python" -m ziglang version >/dev/null ;;
        esac
    done
    # Keep the entries of other files whose content is unchanged; replace
    # the entries for the files just installed.
    {
        echo "python=$py_version"
        for key in "${keys[@]}"; do printf '%s\n' "$key"; done >"$STAMP.keys.tmp"
        if [ -n "$stamp_lines" ]; then
            while IFS= read -r old; do
                old_key="${old#*  }"
                grep -qxF -- "$old_key" "$STAMP.keys.tmp" || printf '%s\n' "$old"
            done <<<"$stamp_lines"
        fi
        printf '%s\n' "${wanted[@]}"
    } >"$STAMP.tmp"
    rm -f "$STAMP.keys.tmp"
    mv "$STAMP.tmp" "$STAMP"
fi

echo "$VENV_DIR"
