#!/usr/bin/env bash
# The project's test command (README, .ci/run): build, unit and integration
# tests, formatting and lints. Installs what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/connect-slr-guard/target}"

echo "== build"
cargo build --all-targets --locked
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
echo "== end to end: the real binaries against the local AWS bench"
export VENV_DIR="${VENV_DIR:-$HOME/.cache/connect-slr-guard/venv}"
venv=$(bash scripts/venv.sh | tail -n 1)
(cd bench && "$venv/bin/python" -m pytest -p no:cacheprovider -q test_emulator_facts.py test_double.py test_e2e.py test_faults.py test_ledger.py test_work_queue.py test_tls.py test_outputs.py test_remediation.py test_central.py) 2>&1 | tee -a "$log"

echo "== benchmark smoke (bench/benchmark.py --smoke: debug binaries, so it cannot rot)"
mkdir -p bench/out
(cd bench && "$venv/bin/python" benchmark.py --smoke > out/benchmark-smoke.json)
echo "benchmark smoke: ok (bench/out/benchmark-smoke.json)"

echo "== SAM templates: cfn-lint, sam validate --lint, least-privilege tests"
bash scripts/lint-template.sh 2>&1 | tee -a "$log"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo deny (licenses, bans, sources; advisories need network: see README)"
tools=$(bash scripts/tools.sh | tail -n 1)
"$tools/cargo-deny" check licenses bans sources

# One closing line over both runners (cargo's "test result" lines, pytest's summary).
passed=$(grep -Eo '(^test result: ok\. |^)[0-9]+ passed' "$log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
