# The two commands of the README, and a few more for developers.
CARGO ?= cargo
DEMO_DIR ?= results/demo
MULTIAD = $(CARGO) run --locked --quiet -p multiad-cli --

.PHONY: demo test bench fmt clippy

## demo: synthetic category -> smoke-preset Multi-AD training -> test metrics -> heat maps
demo:
	rm -rf $(DEMO_DIR)
	$(MULTIAD) synth --out $(DEMO_DIR)/data --category demo --seed 0 --size 64 --train 48 --test-good 16 --test-per-defect 8
	$(MULTIAD) inspect --dir $(DEMO_DIR)/data/demo --check
	$(MULTIAD) train --config experiments/smoke.yaml --data $(DEMO_DIR)/data/demo --out $(DEMO_DIR)/run
	$(MULTIAD) test --run $(DEMO_DIR)/run --save-maps
	$(MULTIAD) predict --run $(DEMO_DIR)/run --out $(DEMO_DIR)/heatmaps $(DEMO_DIR)/data/demo/test/*/000.png

## test: the whole test suite (what CI runs)
test:
	$(CARGO) test --workspace --locked

bench:
	$(CARGO) xtask bench all

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets
