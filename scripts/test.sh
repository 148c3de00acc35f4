#!/usr/bin/env bash
# Runs the whole softvpc test suite on a fresh machine (Rust and Python present):
#   1. the dependency step (scripts/test-deps.sh): installs the Debian packages (as root) and the
#      Python packages the tests need, saying what it installs;
#   2. unit and property tests (cargo test --workspace);
#   3. API tests (pytest tests/api: boto3 and the AWS CLI against a real server on loopback),
#      on the redb store, then again on the etcd store (SOFTVPC_TEST_STORE=etcd);
#   4. end-to-end tests (pytest tests/e2e: network namespaces, real ping/tcpdump/aws/boto3), which
#      need root: all with the agents' kernel fast path off, then the files that forward
#      across hosts again with it on (SOFTVPC_FAST_PATH=on; the whole suite passed that way on
#      2026-12-06, README "Tests", but twice the e2e time does not fit CI's budget on a loaded
#      machine; docs/issue-14-audit.md lists the files run with it off only).
# Without root, it runs what it can and ends by naming exactly what it could not run and why.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHON
# The release binary the Python tests run, wherever cargo puts it.
SOFTVPC_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/softvpc"
export SOFTVPC_BIN

skipped=()
echo "==> dependencies (scripts/test-deps.sh)"
deps_ok=1
bash scripts/test-deps.sh || deps_ok=0
if [ $deps_ok -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
  echo "!! the dependency step failed as root (see above); nothing else runs" >&2
  exit 1
fi

echo "==> cargo build (release binary used by the Python tests)"
cargo build --release --locked -p softvpc
echo "==> cargo test --workspace"
cargo test --workspace --locked

have_py() { "$PYTHON" -c "import pytest, boto3" >/dev/null 2>&1; }
if have_py; then
  echo "==> API tests (pytest tests/api)"
  "$PYTHON" -m pytest -v tests/api
  echo "==> API tests on the etcd store (SOFTVPC_TEST_STORE=etcd: a local etcd, started and removed by the tests)"
  SOFTVPC_TEST_STORE=etcd "$PYTHON" -m pytest -q tests/api
else
  skipped+=("tests/api (API tests): the Python packages pytest and boto3 are missing and could not be installed (see the dependency step)")
fi

if [ "$(id -u)" -ne 0 ]; then
  skipped+=("tests/e2e (end-to-end tests): they need root for network namespaces, TAP devices and raw sockets")
  skipped+=("the root-only cargo tests (softvpc-agent tests/root.rs, the lab's probe test) printed SKIPPED above: they need root")
elif [ $deps_ok -eq 1 ]; then
  echo "==> end-to-end tests (pytest tests/e2e), agents with --fast-path off"
  SOFTVPC_FAST_PATH=off "$PYTHON" -m pytest -v tests/e2e
  # The kernel fast path on (issue 14): every file whose traffic crosses hosts (first packets,
  # installs, policy changes under installed flows, ENI moves, interop with a kernel VTEP).
  echo "==> end-to-end tests that forward, with the kernel fast path on (SOFTVPC_FAST_PATH=on)"
  SOFTVPC_FAST_PATH=on "$PYTHON" -m pytest -v -rs \
    tests/e2e/test_fast_path.py tests/e2e/test_seed_experiment.py \
    tests/e2e/test_connectivity.py tests/e2e/test_underlay.py tests/e2e/test_isolation.py \
    tests/e2e/test_security_groups.py tests/e2e/test_nacl.py tests/e2e/test_routes.py \
    tests/e2e/test_peering.py tests/e2e/test_eni_move.py tests/e2e/test_interop.py \
    tests/e2e/test_agent_restart.py
fi

if [ ${#skipped[@]} -gt 0 ]; then
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!! NOT RUN:"
  for s in "${skipped[@]}"; do echo "!!   - $s"; done
  echo "!! Run this script as root to run everything."
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
fi
