.PHONY: demo test bench lint-template package

# Replays real events against an emulated account and prints the alerts.
demo:
	bash scripts/demo.sh

# Everything CI runs.
test:
	bash scripts/test.sh

# The benchmark behind BENCHMARKS.md (release build; about 10 minutes).
bench:
	bash scripts/benchmark.sh

# cfn-lint, sam validate --lint and the template tests (needs no AWS account).
lint-template:
	bash scripts/lint-template.sh

# sam build: the arm64 bootstrap through cargo-lambda + zig, and its zip size.
package:
	bash scripts/package.sh
