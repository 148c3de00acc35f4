#!/usr/bin/env bash
# softvpc EC2 API benchmark (prints figures; not a test). No root needed: a real `softvpc server`
# on loopback and a temporary data directory.
#
# Builds the release binaries (softvpc, softvpc-bench-api), then runs softvpc-bench-api:
# 10,000 CreateNetworkInterface calls through the signed EC2 API (1 client, then 8), then
# DescribeNetworkInterfaces by id, by subnet-id filter in pages of 1000, and the full list;
# prints req/s and p50/p99/max latency per phase, the store size per ENI, the server's RSS and
# the fsync cost of the data directory's disk.
#
# usage: scripts/bench-api.sh [softvpc-bench-api options, e.g. --enis 2000 --clients 1,4]
#   (--help lists them; --time-limit bounds the run, default 900 s)
# env: SOFTVPC_BIN (default target/release/softvpc), SKIP_BUILD=1 to use the binaries as built
#
# The server and the temporary directory are removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p softvpc -p softvpc-bench
fi
export SOFTVPC_BIN=${SOFTVPC_BIN:-$PWD/target/release/softvpc}
WORK=$(mktemp -d /tmp/softvpc-bench-api.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "softvpc: release build of $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# The server dies with the benchmark (parent-death signal), so Ctrl-C leaves nothing running.
target/release/softvpc-bench-api --work-dir "$WORK/run" "$@"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
