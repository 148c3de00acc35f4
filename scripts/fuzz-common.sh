# Sourced by scripts/fuzz-all.sh and scripts/fuzz-smoke.sh: what both do before fuzzing.

# fuzz_prepare [TARGET...]: checks for cargo-fuzz, allows its -Z flags (sanitizers) on a stable
# compiler, enters fuzz/, sets `targets` (the ones named, or every target) and builds them all
# first, so a compile error is reported as such and not as a crash.
fuzz_prepare() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
  fi
  if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
  fi
  cd fuzz
  if [ "$#" -gt 0 ]; then
    targets=("$@")
  else
    mapfile -t targets < <(cargo fuzz list)
  fi
  if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found" >&2
    exit 2
  fi
  echo "==> building ${#targets[@]} fuzz targets"
  cargo fuzz build
}
