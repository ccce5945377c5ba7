# The two commands of the README, and a few more for developers.
CARGO ?= cargo
DEMO_DIR ?= results/demo
MULTIAD = $(CARGO) run --locked --quiet -p multiad-cli --

.PHONY: demo test bench fmt clippy

## demo: synthetic category -> data set summary (the main job on an embedded default)
demo:
	rm -rf $(DEMO_DIR)/data
	$(MULTIAD) synth --out $(DEMO_DIR)/data --category demo --seed 0
	$(MULTIAD) inspect --mvtec $(DEMO_DIR)/data/demo --check

## test: the whole test suite (what CI runs)
test:
	$(CARGO) test --workspace --locked

bench:
	$(CARGO) xtask bench all

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets
