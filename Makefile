.PHONY: demo test

# Replays real events against an emulated account and prints the alerts.
demo:
	bash scripts/demo.sh

# Everything CI runs.
test:
	bash scripts/test.sh
