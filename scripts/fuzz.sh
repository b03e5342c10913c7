#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time, starting from
# the committed seeds (fuzz/seeds/<target>) plus whatever earlier runs found
# (fuzz/corpus/<target>, not committed). A crash, panic, failed invariant, hang or memory
# blow-up stops the script with a non-zero status and leaves the input under
# fuzz/artifacts/<target>/; reproduce it with the command printed at the end.
#
# Works on the stable toolchain: libFuzzer's instrumentation needs -Z flags, which stable
# rustc accepts with RUSTC_BOOTSTRAP=1.
#
# Environment:
#   FUZZ_SECONDS    total fuzzing time over all targets (default 60), split by weight
#   FUZZ_SANITIZER  address (default) or none
#   FUZZ_TARGETS    space-separated subset of targets (default: all)
#   FUZZ_CODEGEN_UNITS  codegen units of the fuzz build (default 16)
#   FUZZ_DEV        1: build without optimisation (`cargo fuzz --dev`), several times faster
#                   to build and slower to run — the right trade for CI's short runs
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TOTAL=${FUZZ_SECONDS:-60}
SANITIZER=${FUZZ_SANITIZER:-address}
CODEGEN_UNITS=${FUZZ_CODEGEN_UNITS:-16}
# target:weight — typed decoding has by far the most code behind it.
ALL_TARGETS="decode_entity:2 api_bodies:1 frame_lines:1 group_lines:1"
TARGETS=${FUZZ_TARGETS:-$(for t in $ALL_TARGETS; do printf '%s ' "${t%%:*}"; done)}

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

weight_of() {
  for t in $ALL_TARGETS; do
    if [ "${t%%:*}" = "$1" ]; then
      echo "${t##*:}"
      return
    fi
  done
  echo "unknown fuzz target: $1" >&2
  exit 2
}

total_weight=0
for t in $TARGETS; do
  total_weight=$((total_weight + $(weight_of "$t")))
done

# 16 codegen units (cargo-fuzz's default is 1): a much faster build of the whole crate
# graph for a slightly slower fuzzer, the right trade for short runs.
build_flags=(--sanitizer "$SANITIZER" --codegen-units "$CODEGEN_UNITS")
if [ "${FUZZ_DEV:-0}" = 1 ]; then
  build_flags+=(--dev)
fi

echo "building fuzz targets (sanitizer: $SANITIZER)"
start=$SECONDS
cargo fuzz build "${build_flags[@]}"
echo "built in $((SECONDS - start)) s"

for t in $TARGETS; do
  secs=$((TOTAL * $(weight_of "$t") / total_weight))
  [ "$secs" -ge 1 ] || secs=1
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzz $t for $secs s"
  # -timeout: one input taking this long is a hang; -rss_limit_mb: a memory blow-up.
  # The outer timeout only guards against libFuzzer itself not stopping.
  if ! timeout $((secs + 120)) cargo fuzz run "${build_flags[@]}" "$t" \
    "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1; then
    echo "fuzz target $t failed; the input is under fuzz/artifacts/$t/." >&2
    echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} $t fuzz/artifacts/$t/<file>" >&2
    exit 1
  fi
done
echo "fuzzing done: $TARGETS"
