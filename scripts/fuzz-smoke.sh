#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each (default 30) and fails if any of them
# finds a crash. Not part of scripts/test.sh: it needs cargo-fuzz (`cargo install cargo-fuzz`)
# and takes minutes. Works on a stable toolchain through RUSTC_BOOTSTRAP=1.
#
#   scripts/fuzz-smoke.sh            # 30 s per target
#   scripts/fuzz-smoke.sh 300        # 5 min per target
#   scripts/fuzz-smoke.sh 10 wire_frame engine_underlay   # only these targets
#
# Each target's corpus (fuzz/corpus/<target>, committed) is seeded from the saved inputs in
# crates/*/tests/regressions/<target>/ and fuzz/seeds/<target>/ when such directories exist.
# A crash leaves its input in fuzz/artifacts/<target>/; for a wire target, copy it to
# crates/softvpc-wire/tests/regressions/<target>/ once fixed so the test suite replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-30}"
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
  echo "usage: $0 [SECONDS>0] [TARGET...]" >&2
  exit 2
fi

# shellcheck source=scripts/fuzz-common.sh
. scripts/fuzz-common.sh
fuzz_prepare "$@"

failed=()
for t in "${targets[@]}"; do
  corpus="corpus/$t"
  mkdir -p "$corpus"
  seeds=()
  for d in ../crates/*/tests/regressions/"$t" seeds/"$t"; do
    [ -d "$d" ] && seeds+=("$d")
  done
  echo "==> $t for ${secs}s (seeds: ${seeds[*]:-none})"
  # libFuzzer writes new inputs to the first corpus dir only; the seed dirs are read.
  # -timeout: one input taking over 10 s is a hang, reported like a crash.
  if ! cargo fuzz run "$t" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    echo "!! $t FAILED: see fuzz/artifacts/$t/" >&2
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} targets ran ${secs}s without a crash"
