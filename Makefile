# The two commands of the README, and a few more for developers.
CARGO ?= cargo
DEMO_DIR ?= results/demo
MULTIAD = $(CARGO) run --locked --quiet -p multiad-cli --

.PHONY: demo test bench fmt clippy ablation-smoke

SWEEP_DATA ?= results/synthetic-data

## demo: synthetic category -> smoke-preset Multi-AD training -> test metrics -> heat maps
demo:
	rm -rf $(DEMO_DIR)
	$(MULTIAD) synth --out $(DEMO_DIR)/data --category demo --seed 0 --size 64 --train 48 --test-good 16 --test-per-defect 8
	$(MULTIAD) inspect --dir $(DEMO_DIR)/data/demo --check
	$(MULTIAD) train --config experiments/smoke.yaml --data $(DEMO_DIR)/data/demo --out $(DEMO_DIR)/run
	$(MULTIAD) test --run $(DEMO_DIR)/run --save-maps
	$(MULTIAD) predict --run $(DEMO_DIR)/run --out $(DEMO_DIR)/heatmaps $(DEMO_DIR)/data/demo/test/*/000.png

## ablation-smoke: Table 4's eight studies on the two synthetic categories at smoke scale
ablation-smoke:
	test -d $(SWEEP_DATA)/synthetic/tiles || $(MULTIAD) synth --out $(SWEEP_DATA)/synthetic --category tiles --seed 1 --size 64
	test -d $(SWEEP_DATA)/synthetic/plates || $(MULTIAD) synth --out $(SWEEP_DATA)/synthetic --category plates --seed 2 --size 64
	$(CARGO) xtask ablation --suite synthetic --preset smoke --data-root $(SWEEP_DATA) --jobs 2

## test: the whole test suite (what CI runs)
test:
	$(CARGO) test --workspace --locked

bench:
	$(CARGO) xtask bench all

fmt:
	$(CARGO) fmt --all

## clippy: lints as CI checks them (warnings are errors). Allowed on purpose:
## manual_is_multiple_of (u.is_multiple_of needs Rust 1.87; rust-version is 1.85),
## neg_cmp_op_on_partial_ord (`!(a < b)` is how a NaN is refused along with the bad value).
clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings \
	    -A clippy::manual_is_multiple_of -A clippy::neg_cmp_op_on_partial_ord
