#!/usr/bin/env bash
# The differential test of Multi-AD against an independent PyTorch
# implementation (docs/multiad.md, "Differential test"), at any preset:
#
#   scripts/differential.sh smoke cpu paper   # make fixtures here, run the Rust side on each
#   scripts/differential.sh --update          # rewrite the committed smoke fixture
#
# Needs torch, numpy and PyYAML (torchvision for `paper`). Each preset's
# fixture is made from seeded random weights (WideResNet-50-2 and Lite0 at
# their real sizes) and one batch (4 images for smoke, 2 otherwise), under
# ${GOLDEN_DIR:-/tmp/multiad-golden}/<preset>/. For each preset it prints:
#
#   1. float32's own spread: PyTorch float32 on one thread against its
#      default thread count (another summation order, the same arithmetic);
#   2. multiad float32 against PyTorch float32 within 1e-4, required where
#      (1) is within 1e-4, otherwise printed only: float32 does not
#      determine those tensors to 1e-4, and PyTorch fails it against itself;
#   3. multiad float64 against PyTorch float64 within 1e-4, always required:
#      the same arithmetic with rounding out of the way;
#   4. beyond smoke, multiad float32 against PyTorch float64 within twice
#      PyTorch float32's own distance from it (printed only).
#
# Exits 1 if a required comparison failed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch, numpy, yaml" 2>/dev/null || { echo "SKIPPED: torch, numpy or PyYAML does not import" >&2; exit 0; }
update=0
presets=()
for a in "$@"; do
  case "$a" in
    --update) update=1 ;;
    *) presets+=("$a") ;;
  esac
done
[ $update = 1 ] && presets=(smoke)
[ ${#presets[@]} -gt 0 ] || presets=(smoke cpu paper)
root=${GOLDEN_DIR:-/tmp/multiad-golden}
status=0
for p in "${presets[@]}"; do
  dir="$root/$p"
  batch=4; [ "$p" = smoke ] || batch=2
  cargo run --quiet -p multiad --example golden_inputs -- "experiments/$p.yaml" "$dir" "$batch"
  # Beyond smoke, D's Adam step is not taken (disc_lr 0): Adam's first step
  # is lr·sign(g), so D's entries whose gradient is rounding noise flip
  # between any two float32 implementations, and L_adv and the student's
  # adversarial gradient downstream of them would differ by that alone.
  # D's step is compared in full at the smoke scale; its gradient here.
  frozen=(); [ "$p" = smoke ] || frozen=(--frozen-d)
  out="$dir/golden.safetensors"
  [ $update = 1 ] && out="$PWD/crates/multiad/tests/fixtures/smoke_golden.safetensors"
  python3 scripts/golden_fixture.py --config "$dir/config.yaml" --inputs "$dir/inputs.safetensors" --out "$out" "${frozen[@]}"
  # run_test FILTER [VAR=VALUE...]: the Rust side of the comparison, tests
  # named by FILTER (libtest's filter or `--skip NAME`).
  run_test() {
    local filter=("$1"); shift
    [ "${filter[0]}" = --skip ] && { filter+=("$1"); shift; }
    env MULTIAD_GOLDEN="$out" MULTIAD_GOLDEN_CONFIG="$dir/config.yaml" MULTIAD_GOLDEN_FROZEN_D=${#frozen[@]} "$@" \
      cargo test --quiet -p multiad --test golden -- "${filter[@]}" --nocapture 2>&1 \
      | grep -E "preset|worst|differ|relative error|test result|Adam step" | awk '/: relative error / && ++n > 10 { next } { print }'
    # (the first 10 tensors of a failure; MULTIAD_GOLDEN_VERBOSE=1 lists every comparison)
  }
  # (1) float32's own spread.
  python3 scripts/golden_fixture.py --config "$dir/config.yaml" --inputs "$dir/inputs.safetensors" --out "$dir/golden_t1.safetensors" "${frozen[@]}" --threads 1 > /dev/null
  echo "== $p: PyTorch float32 on one thread against PyTorch float32 on $(python3 -c 'import torch; print(torch.get_num_threads())') (float32's own spread)"
  f32_required=1
  python3 scripts/golden_spread.py "$dir/golden_t1.safetensors" "$out" --fail-beyond || f32_required=0
  # (2) multiad float32 against PyTorch float32.
  if [ $f32_required = 1 ]; then
    echo "== $p: multiad float32 against PyTorch float32, 1e-4 (required)"
    run_test --skip in_float64 || status=1
  else
    echo "== $p: multiad float32 against PyTorch float32, 1e-4 (printed only: float32 itself is beyond 1e-4 here)"
    run_test --skip in_float64 || true
  fi
  # (3) multiad float64 against PyTorch float64.
  python3 scripts/golden_fixture.py --config "$dir/config.yaml" --inputs "$dir/inputs.safetensors" --out "$dir/golden64.safetensors" "${frozen[@]}" --float64 > /dev/null
  echo "== $p: multiad float64 against PyTorch float64, 1e-4 (required)"
  run_test in_float64 MULTIAD_GOLDEN_F64="$dir/golden64.safetensors" || status=1
  # (4) multiad float32 against float64, within twice PyTorch float32's own
  # distance from it (or 1e-4).
  if [ "$p" != smoke ]; then
    echo "== $p: multiad float32 against PyTorch float64, within 2x PyTorch float32's error (printed only)"
    run_test --skip in_float64 MULTIAD_GOLDEN_F64="$dir/golden64.safetensors" || true
  fi
done
exit $status
