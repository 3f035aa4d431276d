#!/usr/bin/env bash
# Build the deployable Lambda artifact the way operators do: `sam build`
# with BuildMethod rust-cargolambda, cross-compiling the `bootstrap` for
# arm64 (or ARCH=x86_64) with cargo-lambda and zig. No Docker.
#
#   bash scripts/package.sh            # or: make package
#   ARCH=x86_64 bash scripts/package.sh
#
# Installs the SAM CLI, cargo-lambda and ziglang from PyPI into the deploy
# virtualenv (default ~/.cache/connect-slr-guard/venv-deploy) and the Rust target through rustup.
# Prints the size of the bootstrap and of its zip (what `sam deploy` uploads).
# The first arm64 build compiles the AWS SDK from scratch (~15 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

ARCH="${ARCH:-arm64}"
case "$ARCH" in
    arm64) target=aarch64-unknown-linux-gnu; elf="ARM aarch64" ;;
    x86_64) target=x86_64-unknown-linux-gnu; elf="x86-64" ;;
    *) echo "package.sh: ARCH must be arm64 or x86_64, not $ARCH" >&2; exit 2 ;;
esac

venv="$(VENV_DIR="${DEPLOY_VENV_DIR:-$HOME/.cache/connect-slr-guard/venv-deploy}" bash scripts/venv.sh \
    deploy/requirements-lint.txt deploy/requirements-package.txt | tail -n1)"
# cargo-lambda is found as `cargo lambda`; it finds zig through `python3 -m
# ziglang`, so the venv's python must come first on PATH.
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
export AWS_EC2_METADATA_DISABLED=true
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/connect-slr-guard/target}"

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

echo "== $(sam --version); $(cargo lambda --version); zig $(python3 -m ziglang version)"
echo "== sam build (Architecture=$ARCH, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
start=$(date +%s)
sam build --template-file template.yaml --parameter-overrides "Architecture=$ARCH"
echo "built in $(($(date +%s) - start)) s"

bootstrap=.aws-sam/build/GuardFunction/bootstrap
[ -f "$bootstrap" ] || { echo "package.sh: $bootstrap was not produced" >&2; exit 1; }
if command -v file >/dev/null 2>&1; then
    file "$bootstrap"
    file "$bootstrap" | grep -q "$elf" || { echo "package.sh: $bootstrap is not $elf" >&2; exit 1; }
fi

# What `sam deploy` uploads is this one file, zipped (SAM zips it itself).
zip=".aws-sam/connect-slr-guard-$ARCH.zip"
python3 - "$bootstrap" "$zip" <<'EOF'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(src, "rb") as f:
        z.writestr(info, f.read())
print(f"bootstrap: {os.path.getsize(src)} bytes ({os.path.getsize(src) / 2**20:.2f} MiB)")
print(f"zip:       {os.path.getsize(dst)} bytes ({os.path.getsize(dst) / 2**20:.2f} MiB) -> {dst}")
EOF
