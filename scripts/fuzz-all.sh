#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for MINUTES each (default 10, issue 12's bar), keeps
# the corpus it grows in fuzz/corpus/<target>/ (committed, minimized with `cargo fuzz cmin`
# after each run), and prints one line per target: minutes, executions, executions per second,
# coverage (libFuzzer's `cov`: edges reached, `ft`: features), corpus files, result. Fails if
# any target crashes, hangs (10 s per input) or runs out of memory (2 GB); the input is then in
# fuzz/artifacts/<target>/. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); works on a stable toolchain through RUSTC_BOOTSTRAP=1.
#
#   scripts/fuzz-all.sh                    # every target, 10 min each (about 3 hours)
#   scripts/fuzz-all.sh 3 wire_vxlan ec2_query   # only these, 3 min each
#   FUZZ_PARALLEL=2 scripts/fuzz-all.sh    # two targets at a time (one core each)
#   FUZZ_REPORT=runs.md scripts/fuzz-all.sh   # also append the summary lines to runs.md
#
# Each run reads the saved inputs of crates/*/tests/regressions/<target>/ and
# fuzz/seeds/<target>/ as well; new inputs go to fuzz/corpus/<target>/ only. A crash once
# fixed: copy its input to the crate's tests/regressions/<target>/ (replayed by the tests) and
# into fuzz/corpus/<target>/. scripts/fuzz-smoke.sh is the short version (seconds per target).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-10}"
shift || true
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -eq 0 ]; then
  echo "usage: $0 [MINUTES>0] [TARGET...]" >&2
  exit 2
fi
parallel="${FUZZ_PARALLEL:-1}"
if ! [[ "$parallel" =~ ^[1-9][0-9]*$ ]]; then
  echo "FUZZ_PARALLEL must be a positive whole number" >&2
  exit 2
fi
report="${FUZZ_REPORT:-}"
if [ -n "$report" ]; then
  report="$(realpath -m "$report")"
fi

# shellcheck source=scripts/fuzz-common.sh
. scripts/fuzz-common.sh
fuzz_prepare "$@"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# One target: fuzz, then minimize its corpus; writes its summary line to $logs/<t>.line.
run_one() {
  local t="$1" secs=$((minutes * 60)) corpus="corpus/$1" seeds=() d log rc
  mkdir -p "$corpus"
  for d in ../crates/*/tests/regressions/"$t" seeds/"$t"; do
    [ -d "$d" ] && seeds+=("$d")
  done
  log="$logs/$t.log"
  echo "==> $t for ${minutes} min (seeds: ${seeds[*]:-none})"
  rc=0
  # libFuzzer writes new inputs to the first corpus dir only; the seed dirs are read.
  cargo fuzz run "$t" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  local execs rate cov ft files result
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  # The last status line's coverage (libFuzzer prints "cov: N ft: M" as it finds more).
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
  if [ "$rc" -eq 0 ]; then
    # Keep the smallest set of inputs with the same coverage (what gets committed).
    if cargo fuzz cmin "$t" "$corpus" >"$logs/$t.cmin" 2>&1; then
      result=ok
    else
      result="ok (cmin failed: corpus not minimized)"
    fi
  else
    result="FAILED (exit $rc): see fuzz/artifacts/$t/"
    tail -40 "$log" >&2
  fi
  files="$(find "$corpus" -type f | wc -l)"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$minutes" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "${ft:-?}" "$files" "$result" >"$logs/$t.line"
  cat "$logs/$t.line"
}

running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
wait || true

echo
echo "| target | minutes | executions | exec/s | cov | ft | corpus files | result |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
failed=0
for t in "${targets[@]}"; do
  line="$(cat "$logs/$t.line" 2>/dev/null || echo "| $t | $minutes | ? | ? | ? | ? | ? | FAILED (no result) |")"
  echo "$line"
  [ -n "$report" ] && echo "$line" >>"$report"
  case "$line" in *FAILED*) failed=$((failed + 1)) ;; esac
done
if [ "$failed" -gt 0 ]; then
  echo "fuzz-all: $failed of ${#targets[@]} targets failed" >&2
  exit 1
fi
echo "fuzz-all: all ${#targets[@]} targets ran ${minutes} min without a crash"
