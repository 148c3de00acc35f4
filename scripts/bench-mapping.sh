#!/usr/bin/env bash
# softvpc mapping propagation benchmark (prints figures; not a test). No root needed: a real
# `softvpc server` on loopback and, in one process, N simulated agents, each a host with its own
# join token, certificate and mutual-TLS Watch stream, applying every message to the agent's
# applier (softvpc_mapping::Replica).
#
# Builds the release binaries (softvpc, softvpc-bench-mapping), then runs softvpc-bench-mapping:
# per agent count, one VPC with an instance on every host, then 100 changes through the signed EC2
# API (CreateNetworkInterface, DeleteNetworkInterface, ...), each timed until every agent applied
# it; prints p50/p99/max, the server's share (commit -> the socket write of the change's last
# watch message, p50/p99/max), each agent's delay, the API latency, the server's CPU per change
# and memory, the watch bytes per change and the load average; beside the server's CPU, the
# simulated agents' own CPU per change over the same window (the benchmark process less its main
# thread, which is printed in brackets), each side's CPU per message, and the floor: (server +
# agents' CPU per change) / CPUs, the least time a change can take to reach every agent here.
# --no-apply: the agents read and decode each measured message without applying it.
#
# usage: scripts/bench-mapping.sh [softvpc-bench-mapping options, e.g. --agents 10,100,1000]
#   (--help lists them; default --agents 10,100; 1,000 agents need `ulimit -n` >= 2256)
# env: SOFTVPC_BIN (default target/release/softvpc), SKIP_BUILD=1 to use the binaries as built
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p softvpc -p softvpc-bench
fi
T=${CARGO_TARGET_DIR:-target}
export SOFTVPC_BIN=${SOFTVPC_BIN:-$T/release/softvpc}
echo "machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
echo "softvpc: release build of $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# The server dies with the benchmark (parent-death signal), so Ctrl-C leaves nothing running.
"$T/release/softvpc-bench-mapping" "$@"
