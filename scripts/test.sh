#!/usr/bin/env bash
# Runs the whole softvpc test suite: unit and property tests (cargo), then the end-to-end tests
# (network namespaces, real ping/tcpdump/aws/boto3), which need root. Without root the end-to-end
# part is skipped, and this script says so loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo build (release binary used by the end-to-end tests)"
cargo build --release --locked -p softvpc
echo "==> cargo test --workspace"
cargo test --workspace --locked

echo "==> API tests (pytest tests/api: boto3 and the AWS CLI against a real server on loopback)"
SOFTVPC_BIN="$PWD/target/release/softvpc" python3 -m pytest -v tests/api

if [ "$(id -u)" -ne 0 ]; then
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!! SKIPPED: end-to-end tests (tests/e2e) need root for network namespaces.  !!"
  echo "!! Run this script as root to run them.                                     !!"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  exit 0
fi
echo "==> end-to-end tests (pytest tests/e2e)"
SOFTVPC_BIN="$PWD/target/release/softvpc" python3 -m pytest -v tests/e2e
