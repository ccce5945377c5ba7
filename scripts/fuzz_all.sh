#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS seconds each (default 60) from
# its committed corpus; fails on the first crash, leak of a panic, or
# allocation above the cap (docs/reliability.md). New inputs go to a scratch
# directory, not into the committed corpus.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked --quiet cargo-fuzz
fi
# cargo fuzz passes unstable flags: a nightly toolchain if there is one,
# else the stable one with its unstable features unlocked.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
target_dir="${FUZZ_TARGET_DIR:-$PWD/target}"
unset CARGO_TARGET_DIR
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"${fuzz[@]}" build -s none -O --target-dir "$target_dir"
for t in $("${fuzz[@]}" list); do
  mkdir -p "$scratch/$t"
  echo "fuzz: $t for ${seconds}s"
  if ! "${fuzz[@]}" run -s none -O --target-dir "$target_dir" "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=3072 -timeout=30 -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    tail -n 40 "$scratch/$t.log"
    echo "fuzz: $t FAILED (the input is saved under fuzz/artifacts/$t/)"
    exit 1
  fi
  grep -E "stat::(number_of_executed_units|peak_rss_mb)" "$scratch/$t.log" | sed "s/^/  /"
done
echo "fuzz: every target ran ${seconds}s without a crash"
