#!/usr/bin/env bash
# Template checks (CI): cfn-lint, `sam validate` and `sam validate --lint` on
# template.yaml and deploy/*.yaml, then the template tests
# (deploy/test_template.py: least privilege, the optional outputs' grants
# per parameter, event patterns, completeness, the dashboard) and the
# emulator deployment (deploy/test_emulator_deploy.py: every template
# created in moto's CloudFormation, the guard also with AlertEmail and with
# SecurityHub=on, ChatTopic=create and Metrics=on (and Remediation=apply),
# and in central mode with member stacks in two other accounts, every
# reference resolved, every sample event routed through the deployed
# rules, members' events through the organisation bus).
# Needs no AWS account and no credentials: the Region is a placeholder.
#
# Installs its tools itself into a virtualenv of their own (default
# ~/.cache/connect-slr-guard/venv-deploy; DEPLOY_VENV_DIR=... to move it): the SAM CLI pins a
# boto3 that conflicts with the bench's pin in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

venv="$(VENV_DIR="${DEPLOY_VENV_DIR:-$HOME/.cache/connect-slr-guard/venv-deploy}" bash scripts/venv.sh deploy/requirements-lint.txt | tail -n1)"
bin="$venv/bin"

# SAM CLI: no telemetry, no credential or IMDS lookups, a placeholder Region.
export SAM_CLI_TELEMETRY=0
export AWS_EC2_METADATA_DISABLED=true
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

templates=(template.yaml deploy/*.yaml)

echo "== cfn-lint $("$bin/cfn-lint" --version | awk '{print $2}')"
# The guard and the member stack (deploy/member.yaml, a StackSet's) may run
# in any Region; the forwarder only in us-east-1.
"$bin/cfn-lint" --regions us-east-1 eu-west-2 ap-southeast-2 -- template.yaml deploy/member.yaml
"$bin/cfn-lint" --regions us-east-1 -- deploy/iam-forwarder.yaml

echo "== sam validate ($("$bin/sam" --version))"
for t in "${templates[@]}"; do
    "$bin/sam" validate --template-file "$t"
    "$bin/sam" validate --lint --template-file "$t"
done

echo "== pytest deploy/test_template.py deploy/test_emulator_deploy.py"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$bin/python" -m pytest -q -p no:cacheprovider deploy/test_template.py deploy/test_emulator_deploy.py 2>&1 | tee "$log"
echo "templates: ${#templates[@]} linted and validated; tests: $(grep -Eo '[0-9]+ passed' "$log" | tail -n1)"
