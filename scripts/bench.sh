#!/usr/bin/env bash
# softvpc benchmark (prints figures; not a test). Needs root, iproute2, iperf3, ping, python3
# with boto3, and a release build (cargo build --release -p softvpc).
#
# In one run it builds the same two-host topology twice and measures both:
#   (a) kernel VXLAN, flannel-style: a fabric bridge netns (198.18.0.1/16), two host netns with
#       `u0` on it (198.18.0.11, .12), in each a kernel VXLAN device (nolearning proxy) + bridge +
#       static FDB/neighbour entries, and one VM netns per host (10.0.0.148 and 10.0.0.20 in
#       10.0.0.0/24, MTU 1450);
#   (b) a softvpc lab: the same fabric and hosts, a softvpc agent per host, one VPC with those
#       two instances, measured twice: agents with --fast-path off, then --fast-path on (the
#       kernel topology stays up meanwhile: the fast path's rows and the kernel's are measured
#       in rounds, taking turns, -N);
# and prints iperf3 TCP throughput (one stream and 8), the 64-byte UDP packet rate, ping RTT
# p50/p99 and the TCP retransmits for both and as
# ratios softvpc/kernel, the drops outside the engine during softvpc's measurements (TAP queues,
# VXLAN socket buffer, from the agents' metrics), CPU seconds per GB moved (the agents'; the whole
# machine's for each half), plus the mapping propagation time (API change -> every agent) p50/p99.
# Then, softvpc only, security-group rules on the receiving ENI (issue 10): with the default
# group, 100 rules and 1,000 (the lab's server runs with --sg-rules-per-group 200, which AWS's
# quotas allow with 5 groups per ENI: 500 inbound and 500 outbound rules in 3 groups), one
# iperf3 stream, ping p50/p99, the TCP connect time (a new flow's
# first packets, which walk the layers) p50/p99 and new connections per second; and the memory
# per tracked flow (the agents' resident memory before and after N new UDP flows); and the time
# from an AuthorizeSecurityGroupIngress call until the rule holds on both agents p50/p99 (a new
# UDP flow each way between bench-a and bench-b gets through).
# With -S (issue 14, the fast path's cost with many flows), the --fast-path on half then puts
# RULES security-group rules on bench-b's ENI and holds FLOWS UDP flows bench-a -> bench-b
# tracked (one datagram each every 10 s, spread evenly after the first round, so they stay in the engine's conntrack and in the
# kernel), waits until the kernel holds them, measures the same rows again and prints them next
# to that half's base rows as ratios, with the load average, what the kernel held (tc
# filters, installed flows), the drops outside the engine during those rows, and the agents'
# CPU time and data-path syncs meanwhile.
#
# usage: sudo scripts/bench.sh [-t SECONDS] [-n PINGS] [-c CHANGES] [-f FLOWS] [-k CONNECTS]
#                              [-m MTU] [-g ROUNDS] [-F] [-S FLOWS] [-R RULES] [-r] [-N ROUNDS]
#   -t  iperf3 duration per run (default 5)      -n  pings at 5 ms intervals (default 200)
#   -c  mapping changes to time (default 100: RunInstances and TerminateInstances in turn)
#   -f  UDP flows for the memory measure (default 20000)
#   -k  TCP connections per rule count (default 3000, 16 at a time)
#   -g  AuthorizeSecurityGroupIngress rounds for the rule propagation time (default 40)
#   -m  the VMs' MTU in both halves (default 1450; 9001 is AWS's in a VPC: the kernel half's
#       underlay then takes 9100, as the lab's)
#   -F  the fast path only: skip the --fast-path off half (its rules phase and both
#       propagation measures), for a quicker run of the kernel-path figures
#   -S  with the fast path on, also measure with FLOWS held flows (e.g. 10000) and RULES rules
#   -R  security-group rules on bench-b's ENI for -S (default 1000)
#   -r  RPS on each host's underlay device in both halves (every CPU): what a multi-queue NIC's
#       RSS does on a real host, spreading flows' receive processing over the CPUs (a veth has
#       one queue, so without it a host's receive runs on the sending CPU)
#   -N  rounds (default 3): the kernel VXLAN's rows and the fast path's take turns, ROUNDS
#       times (the kernel first in odd rounds), and each figure is the median over the rounds
#       (the pings' percentiles over every round's replies), printed with each round's ratios;
#       -S's rows are measured ROUNDS times too. Two runs of one build differ by about 15% on
#       this kind of machine (a VM's neighbours, where the scheduler puts iperf3); rounds taken
#       side by side cancel what drifts between minutes, and a median drops one bad round
# env: SOFTVPC_BIN (default target/release/softvpc), BENCH_API_PORT (default: a free port)
#
# Everything it creates (namespaces svbk<pid>-* and the lab svb<pid>-*, processes, /tmp files) is
# removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

T=5 PINGS=200 CHANGES=100 FLOWS=20000 CONNECTS=3000 MTU=1450 FAST_ONLY=0 SG_ROUNDS=40
SCALE_FLOWS=0 SCALE_RULES=1000 RPS=0 ROUNDS=3
RULE_COUNTS="0 100 1000"
# The account quota the rule counts need (lab up passes it to its server; bench.py reads it).
export SOFTVPC_SG_RULES_PER_GROUP=200
while getopts "t:n:c:f:k:m:g:FS:R:rN:h" opt; do
  case $opt in
    t) T=$OPTARG ;; n) PINGS=$OPTARG ;; c) CHANGES=$OPTARG ;; g) SG_ROUNDS=$OPTARG ;;
    f) FLOWS=$OPTARG ;; k) CONNECTS=$OPTARG ;; m) MTU=$OPTARG ;; F) FAST_ONLY=1 ;;
    S) SCALE_FLOWS=$OPTARG ;; R) SCALE_RULES=$OPTARG ;; r) RPS=1 ;; N) ROUNDS=$OPTARG ;;
    *) sed -n '2,54p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench.sh needs root (network namespaces)" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "-N wants a number of rounds, 1 or more" >&2; exit 2; }
BIN=${SOFTVPC_BIN:-$REPO/target/release/softvpc}
BENCH_PY="$REPO/scripts/bench.py"

# Names of this run only (several runs, or a test suite, may share the machine).
K=svbk$$-                         # kernel-VXLAN topology namespaces
export SOFTVPC_LAB_PREFIX=svb$$-  # the softvpc lab
export SOFTVPC_LAB_DIR=/tmp/svb$$-bench-lab
export SOFTVPC_LAB_API_PORT=${BENCH_API_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
VNI=257                       # 0x000101, the first VNI softvpc's server hands out
WORK=$(mktemp -d /tmp/svb-bench.XXXXXX)
MAC_A=02:00:00:00:01:48 MAC_B=02:00:00:00:00:20

cleanup() {
  set +e
  # Processes this script started (iperf3 servers, the connect server), by pid, if they are
  # still what we started.
  if [ -f "$WORK/pids" ]; then
    while read -r pid; do
      case "$(cat /proc/"$pid"/comm 2>/dev/null)" in
        iperf3|python3|timeout) kill "$pid" 2>/dev/null ;;
      esac
    done <"$WORK/pids"
  fi
  [ -x "$BIN" ] && timeout 120 "$BIN" lab down >/dev/null 2>&1
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^(${K}|${SOFTVPC_LAB_PREFIX})"); do
    ip netns del "$ns"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# HALF_PID, kill_tree, on_signal (INT/TERM), log and run_half.
source scripts/bench-lib.sh  # the cwd is the repository (cd above)

# cpu_snapshot FILE: /proc/stat's per-CPU lines as they are now (read in the shell: no process
# of its own to count), for the machine's busy time during a run and each CPU's busy and softirq
# share ("the data path uses every core").
cpu_snapshot() {
  local line
  while read -r line; do
    case $line in cpu[0-9]*) echo "$line" ;; esac
  done </proc/stat >"$1"
}

# rps NETNS: with -r, RPS over every CPU on the namespace's underlay device u0 (sysfs is the
# namespace's own under `ip netns exec`).
rps() {
  [ "$RPS" -eq 1 ] || return 0
  local mask
  mask=$(printf '%x' $(((1 << $(nproc)) - 1)))
  ip netns exec "$1" sh -c "echo $mask > /sys/class/net/u0/queues/rx-0/rps_cpus"
}

# iperf LABEL CLIENT_NS SERVER_NS SERVER_IP KIND IPERF_ARGS...: one iperf3 run (its own one-shot
# server), figures to $WORK/LABEL-KIND.json.
iperf() {
  local label=$1 cli=$2 srv=$3 ip=$4 kind=$5
  shift 5
  ip netns exec "$srv" iperf3 -s -1 -B "$ip" >/dev/null 2>&1 &
  echo $! >>"$WORK/pids"
  for _ in $(seq 50); do
    ip netns exec "$srv" ss -ltn | grep -q ":5201 " && break
    sleep 0.1
  done
  log "$label: iperf3 $kind for ${T}s ($*)"
  cpu_snapshot "$WORK/$label-$kind.stat0"
  timeout $((T + 30)) ip netns exec "$cli" iperf3 -c "$ip" -t "$T" -J "$@" >"$WORK/$label-$kind.raw"
  cpu_snapshot "$WORK/$label-$kind.stat1"
  python3 "$BENCH_PY" iperf "$WORK/$label-$kind.raw" \
    "$WORK/$label-$kind.stat0" "$WORK/$label-$kind.stat1" >"$WORK/$label-$kind.json"
  sleep 0.5  # the one-shot server exits after its test
}

# measure LABEL CLIENT_NS SERVER_NS SERVER_IP [all]: iperf3 and ping, figures to $WORK/LABEL-*.json
# (one TCP stream; with `all` also 8 TCP streams and 64-byte UDP at full rate)
measure() {
  local label=$1 cli=$2 srv=$3 ip=$4 what=${5:-}
  timeout 30 ip netns exec "$cli" ping -n -c 3 -i 0.2 -W 2 "$ip" >/dev/null  # warm ARP, check
  iperf "$label" "$cli" "$srv" "$ip" iperf
  if [ "$what" = all ]; then
    iperf "$label" "$cli" "$srv" "$ip" iperf8 -P 8
    iperf "$label" "$cli" "$srv" "$ip" udp64 -u -l 64 -b 0
  fi
  log "$label: $PINGS pings at 5 ms"
  timeout $((PINGS / 50 + 30)) ip netns exec "$cli" ping -n -c "$PINGS" -i 0.005 -W 2 "$ip" \
    >"$WORK/$label-ping.raw"
  python3 "$BENCH_PY" ping "$WORK/$label-ping.raw" >"$WORK/$label-ping.json"
}

# measure_rows LABEL CLIENT_NS SERVER_NS: every row (measure ... all), as one JSON object in
# $WORK/LABEL.json.
measure_rows() {
  measure "$1" "$2" "$3" 10.0.0.20 all
  printf '{%s}\n' "$(figures "$1")" >"$WORK/$1.json"
}

# The JSON of LABEL's measurements, as one object's members.
figures() {
  local label=$1
  printf '"iperf": %s, "iperf8": %s, "udp64": %s, "ping": %s' "$(cat "$WORK/$label-iperf.json")" \
    "$(cat "$WORK/$label-iperf8.json")" "$(cat "$WORK/$label-udp64.json")" \
    "$(cat "$WORK/$label-ping.json")"
}

# ---- (a) kernel VXLAN
kernel_half() {
  log "kernel VXLAN topology"
  for n in fabric host-1 host-2 vm-a vm-b; do
    ip netns add "$K$n"
    ip -n "$K$n" link set lo up
  done
  ip -n "${K}fabric" link add br0 type bridge
  ip -n "${K}fabric" addr add 198.18.0.1/16 dev br0
  ip -n "${K}fabric" link set br0 up
  for i in 1 2; do
    ip -n "${K}fabric" link add "p$i" type veth peer name u0 netns "${K}host-$i"
    if [ "$MTU" -gt 1450 ]; then
      ip -n "${K}fabric" link set "p$i" mtu 9100
      ip -n "${K}host-$i" link set u0 mtu 9100
    fi
    ip -n "${K}fabric" link set "p$i" master br0 up
    ip -n "${K}host-$i" addr add "198.18.0.1$i/16" dev u0
    ip -n "${K}host-$i" link set u0 up
    rps "${K}host-$i"
  done
  # host VM LOCAL REMOTE VMIP VMMAC REMOTEVMIP REMOTEVMMAC (as in the kernel-VXLAN baseline)
  setup_host() {
    local h=$K$1 v=$K$2 loc=$3 rem=$4 ip=$5 mac=$6 rip=$7 rmac=$8
    ip -n "$h" link add vx0 type vxlan id $VNI dstport 4789 local "$loc" dev u0 nolearning proxy
    ip -n "$h" link set vx0 mtu "$MTU"
    ip -n "$h" link add br0 type bridge
    ip -n "$h" link set vx0 master br0
    ip -n "$h" link add tap0 type veth peer name eth0 netns "$v"
    ip -n "$h" link set tap0 master br0 mtu "$MTU"
    for d in vx0 br0 tap0; do ip -n "$h" link set "$d" up; done
    ip -n "$v" link set eth0 address "$mac" mtu "$MTU" up
    ip -n "$v" addr add "$ip/24" dev eth0
    bridge -n "$h" fdb append "$rmac" dev vx0 dst "$rem" self permanent
    ip -n "$h" neigh add "$rip" lladdr "$rmac" dev vx0 nud permanent
  }
  setup_host host-1 vm-a 198.18.0.11 198.18.0.12 10.0.0.148 $MAC_A 10.0.0.20 $MAC_B
  setup_host host-2 vm-b 198.18.0.12 198.18.0.11 10.0.0.20 $MAC_B 10.0.0.148 $MAC_A

  measure underlay "${K}host-1" "${K}host-2" 198.18.0.12
  printf '{"underlay_iperf": %s}\n' "$(cat "$WORK/underlay-iperf.json")" >"$WORK/underlay.json"
  # The topology stays (removed by cleanup): its rows are measured in rounds beside the fast
  # path's (rounds below).
}

# kernel_round LABEL I: the kernel VXLAN's rows, round I; figures to $WORK/LABEL-rI.json.
kernel_round() {
  measure_rows "$1-r$2" "${K}vm-a" "${K}vm-b"
}

# rounds KLABEL LABEL [NSA NSB]: ROUNDS rounds, in each the kernel's rows and LABEL's (the
# softvpc lab up, instances in NSA and NSB) in turn, the kernel first in odd rounds; the
# medians to $WORK/KLABEL.json and $WORK/LABEL-rows.json. Without NSA the kernel's alone.
rounds() {
  local klabel=$1 label=$2 nsa=${3:-} nsb=${4:-} i kfiles=() sfiles=()
  for i in $(seq "$ROUNDS"); do
    log "$label: round $i of $ROUNDS (load $(cut -d' ' -f1 /proc/loadavg))"
    if [ $((i % 2)) -eq 1 ]; then kernel_round "$klabel" "$i"; fi
    if [ -n "$nsa" ]; then
      measure_rows "$label-r$i" "$nsa" "$nsb"
      sfiles+=("$WORK/$label-r$i.json")
    fi
    if [ $((i % 2)) -eq 0 ]; then kernel_round "$klabel" "$i"; fi
    kfiles+=("$WORK/$klabel-r$i.json")
  done
  python3 "$BENCH_PY" merge-rounds "+$WORK/underlay.json" "${kfiles[@]}" >"$WORK/$klabel.json"
  if [ -n "$nsa" ]; then
    python3 "$BENCH_PY" merge-rounds "${sfiles[@]}" >"$WORK/$label-rows.json"
  fi
}

# rules_phase NSA NSB: memory per tracked flow first (the agents' tables never shrink, so before
# other flows fill them), then per rule count on bench-b's ENI: iperf3, ping and new TCP
# connections. Figures to $WORK/rules.json.
rules_phase() {
  local nsa=$1 nsb=$2 runs="" n
  ip netns exec "$nsb" python3 "$BENCH_PY" serve 5301 >"$WORK/serve.out" 2>&1 &
  echo $! >>"$WORK/pids"
  for _ in $(seq 50); do
    grep -q ready "$WORK/serve.out" && break
    sleep 0.1
  done
  log "memory per tracked flow: $FLOWS new UDP flows"
  python3 "$BENCH_PY" flowmem "$WORK/status.json" >"$WORK/flowmem-before.json"
  timeout 300 ip netns exec "$nsa" python3 "$BENCH_PY" udp-flows 10.0.0.20 5301 "$FLOWS" \
    >"$WORK/udp-flows.json"
  sleep 1  # the last datagrams reach bench-b's host
  python3 "$BENCH_PY" flowmem "$WORK/status.json" >"$WORK/flowmem-after.json"
  for n in $RULE_COUNTS; do
    log "$n security-group rules on bench-b's ENI"
    python3 "$BENCH_PY" rules "$WORK/status.json" "$n" >"$WORK/rules-$n.json"
    measure "rules$n" "$nsa" "$nsb" 10.0.0.20
    log "rules$n: $CONNECTS new TCP connections"
    timeout 120 ip netns exec "$nsa" python3 "$BENCH_PY" connect 10.0.0.20 5301 "$CONNECTS" 16 \
      >"$WORK/rules$n-connect.json"
    runs+="${runs:+, }{\"rules\": $(cat "$WORK/rules-$n.json"), \"iperf\": $(cat "$WORK/rules$n-iperf.json"), \"ping\": $(cat "$WORK/rules$n-ping.json"), \"connect\": $(cat "$WORK/rules$n-connect.json")}"
  done
  python3 "$BENCH_PY" rules "$WORK/status.json" 0 >/dev/null
  printf '{"runs": [%s], "flowmem": {"before": %s, "after": %s, "flows": %s}}\n' "$runs" \
    "$(cat "$WORK/flowmem-before.json")" "$(cat "$WORK/flowmem-after.json")" \
    "$(cat "$WORK/udp-flows.json")" >"$WORK/rules.json"
}

# ---- (b) softvpc, LABEL MODE: the agents' --fast-path MODE; figures to $WORK/LABEL.json
softvpc_run() {
  local label=$1 mode=$2
  [ -x "$BIN" ] || { echo "no softvpc binary at $BIN (cargo build --release -p softvpc)" >&2; return 1; }
  cat >"$WORK/bench-lab.toml" <<'EOF'
[[host]]
name = "host-1"

[[host]]
name = "host-2"

[[vpc]]
name = "bench-vpc"
cidr = "10.0.0.0/16"

[[vpc.subnet]]
cidr = "10.0.0.0/24"

[[instance]]
name = "bench-a"
vpc = "bench-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.148"
host = "host-1"

[[instance]]
name = "bench-b"
vpc = "bench-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.20"
host = "host-2"
EOF
  log "softvpc lab, --fast-path $mode (prefix $SOFTVPC_LAB_PREFIX, API port $SOFTVPC_LAB_API_PORT)"
  timeout 120 "$BIN" lab down >/dev/null 2>&1 || true
  timeout 300 "$BIN" lab up --fast-path "$mode" "$WORK/bench-lab.toml" >"$WORK/lab-up.log" 2>&1 ||
    { cat "$WORK/lab-up.log" >&2; return 1; }
  timeout 30 "$BIN" lab status --json >"$WORK/status.json"
  local nsa nsb
  nsa=$(python3 -c 'import json,sys; print(next(i["netns"] for i in json.load(open(sys.argv[1]))["instances"] if i["name"]=="bench-a"))' "$WORK/status.json")
  nsb=$(python3 -c 'import json,sys; print(next(i["netns"] for i in json.load(open(sys.argv[1]))["instances"] if i["name"]=="bench-b"))' "$WORK/status.json")
  # The instances' MTU as the kernel half's (softvpc gives them AWS's 9001).
  for ns in "$nsa" "$nsb"; do ip -n "$ns" link set eth0 mtu "$MTU"; done
  local h
  for h in 1 2; do rps "${SOFTVPC_LAB_PREFIX}host-$h"; done
  python3 "$BENCH_PY" drops "$WORK/status.json" >"$WORK/drops-before.json"
  if [ "$mode" = on ]; then
    # The figures the targets are about: in rounds beside the kernel's.
    rounds kernel "$label" "$nsa" "$nsb"
  else
    measure_rows "$label-rows" "$nsa" "$nsb"
  fi
  python3 "$BENCH_PY" drops "$WORK/status.json" >"$WORK/drops-after.json"
  local rows
  rows=$(cat "$WORK/$label-rows.json")
  printf '%s, "drops_before": %s, "drops_after": %s}\n' "${rows%\}}" \
    "$(cat "$WORK/drops-before.json")" "$(cat "$WORK/drops-after.json")" >"$WORK/$label.json"
  NSA=$nsa NSB=$nsb
}

# (b1) the engine forwards every packet; then the mapping propagation on that lab.
softvpc_half() {
  softvpc_run softvpc off
  rules_phase "$NSA" "$NSB"
  log "mapping propagation: $CHANGES changes"
  timeout 900 python3 "$BENCH_PY" propagation "$WORK/status.json" "$CHANGES" >"$WORK/prop.json"
  log "security-group rule propagation: $SG_ROUNDS rounds"
  timeout 900 python3 "$BENCH_PY" sg-propagation "$WORK/status.json" "$SG_ROUNDS" \
    >"$WORK/sgprop.json"
}

# scale_phase NSA NSB (-S): SCALE_RULES rules on bench-b's ENI and SCALE_FLOWS held UDP flows
# bench-a -> bench-b, then the same rows as the fast half's base ones; figures to
# $WORK/scale.json. The holder is bounded in time (and killed after the measurement).
scale_phase() {
  local nsa=$1 nsb=$2 period=10 base_load holder t0 want n=0 count
  base_load=$(cut -d' ' -f1-3 /proc/loadavg)
  ip netns exec "$nsb" python3 "$BENCH_PY" serve 5301 >"$WORK/scale-serve.out" 2>&1 &
  echo $! >>"$WORK/pids"
  for _ in $(seq 50); do
    grep -q ready "$WORK/scale-serve.out" && break
    sleep 0.1
  done
  log "scale: $SCALE_RULES security-group rules on bench-b's ENI"
  python3 "$BENCH_PY" rules "$WORK/status.json" "$SCALE_RULES" >"$WORK/scale-rules.json"
  log "scale: holding $SCALE_FLOWS UDP flows bench-a -> bench-b (a datagram each every ${period} s)"
  t0=$(date +%s.%N)
  timeout 1200 ip netns exec "$nsa" python3 "$BENCH_PY" hold-flows 10.0.0.20 5301 \
    "$SCALE_FLOWS" 1100 "$period" >"$WORK/scale-hold.out" 2>&1 &
  holder=$!
  echo $holder >>"$WORK/pids"
  for _ in $(seq 600); do
    grep -q ready "$WORK/scale-hold.out" && break
    sleep 0.2
  done
  grep -q ready "$WORK/scale-hold.out" || { cat "$WORK/scale-hold.out" >&2; return 1; }
  # Until both agents hold (nearly) every flow in the kernel (bench-a's egress and bench-b's
  # ingress, a flow each per held flow), or their count stops growing for 30 s, or 300 s.
  want=$((SCALE_FLOWS * 2 * 95 / 100))
  local last=-1 still=0 until=$((SECONDS + 300))
  while [ $SECONDS -lt $until ]; do
    python3 "$BENCH_PY" kernel-count "$WORK/status.json" >"$WORK/scale-count-before.json"
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["installed_flows"])' \
      "$WORK/scale-count-before.json")
    [ "$n" -ge "$want" ] && break
    if [ "$n" -gt "$last" ]; then last=$n still=$SECONDS; fi
    [ $((SECONDS - still)) -ge 30 ] && break
    sleep 2
  done
  local install_s
  install_s=$(python3 -c "import time; print(time.time() - $t0)")
  log "scale: $n flows in the kernel after ${install_s%.*} s (wanted $want)"
  # The drops outside the engine during these rows, as for every other half (issue 14).
  python3 "$BENCH_PY" drops "$WORK/status.json" >"$WORK/scale-drops-before.json"
  # In rounds beside the kernel's again: the scale rows come minutes after the base rows, and
  # what the machine does meanwhile moves both halves (scale-report compares the two ratios).
  rounds kernel-scale scale "$nsa" "$nsb"
  local rows
  rows=$(cat "$WORK/scale-rows.json")
  python3 "$BENCH_PY" drops "$WORK/status.json" >"$WORK/scale-drops-after.json"
  python3 "$BENCH_PY" kernel-count "$WORK/status.json" >"$WORK/scale-count-after.json"
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  printf '%s, "rules": %s, "flows": %s, "period": %s, "install_s": %s, "base_load": "%s", "count_before": %s, "count_after": %s, "drops_before": %s, "drops_after": %s}\n' \
    "${rows%\}}" "$(cat "$WORK/scale-rules.json")" \
    "$(grep ready "$WORK/scale-hold.out")" "$period" "$install_s" "$base_load" \
    "$(cat "$WORK/scale-count-before.json")" "$(cat "$WORK/scale-count-after.json")" \
    "$(cat "$WORK/scale-drops-before.json")" "$(cat "$WORK/scale-drops-after.json")" \
    >"$WORK/scale.json"
}

# (b2) the kernel fast path on (docs/fast-path.md); with -S, then many flows and rules.
softvpc_fast_half() {
  softvpc_run softvpc-fast on
  if [ "$SCALE_FLOWS" -gt 0 ]; then
    scale_phase "$NSA" "$NSB"
  fi
}


LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
kernel_rc=0 softvpc_rc=0
run_half kernel_half; kernel_rc=$HALF_RC
[ $kernel_rc -eq 0 ] || { echo "kernel half failed (exit $kernel_rc)" >&2; exit 1; }
if [ "$FAST_ONLY" -eq 0 ]; then
  run_half softvpc_half; softvpc_rc=$HALF_RC
  [ $softvpc_rc -eq 0 ] || echo "!! softvpc half failed (exit $softvpc_rc): its figures are missing" >&2
fi
fast_rc=0
run_half softvpc_fast_half; fast_rc=$HALF_RC
[ $fast_rc -eq 0 ] || echo "!! softvpc --fast-path on failed (exit $fast_rc): its figures are missing" >&2
if [ ! -f "$WORK/kernel.json" ]; then
  # The fast half failed before its rounds: the kernel's rows alone, for the other half's table.
  rm -f "$WORK"/kernel-r*.json
  run_half rounds kernel kernel
  [ $HALF_RC -eq 0 ] || { echo "the kernel's rows failed (exit $HALF_RC)" >&2; exit 1; }
fi

echo
echo "softvpc benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), kernel $(uname -r)"
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine skews both halves)"
echo "command: scripts/bench.sh -t $T -n $PINGS -c $CHANGES -f $FLOWS -k $CONNECTS -m $MTU -g $SG_ROUNDS -N $ROUNDS$([ "$FAST_ONLY" -eq 1 ] && echo ' -F')$([ "$SCALE_FLOWS" -gt 0 ] && echo " -S $SCALE_FLOWS -R $SCALE_RULES")$([ "$RPS" -eq 1 ] && echo ' -r')"
echo "softvpc: $BIN built $(date -u -r "$BIN" +%Y-%m-%dT%H:%MZ 2>/dev/null || echo '?'), checkout at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
if [ "$FAST_ONLY" -eq 0 ]; then
  echo "softvpc with --fast-path off (every packet through the engine):"
  python3 "$BENCH_PY" report "$WORK/kernel.json" "$WORK/softvpc.json" "$WORK/prop.json" \
    "$WORK/rules.json" "$WORK/sgprop.json"
  echo
fi
echo "softvpc with --fast-path on (established flows in the kernel: a BPF map, one cls_bpf program per hook):"
python3 "$BENCH_PY" report "$WORK/kernel.json" "$WORK/softvpc-fast.json" -
if [ "$SCALE_FLOWS" -gt 0 ]; then
  echo
  echo "softvpc with --fast-path on, with many flows and rules (issue 14: within 10% of the base rows):"
  if [ -f "$WORK/scale.json" ]; then
    python3 "$BENCH_PY" scale-report "$WORK/softvpc-fast.json" "$WORK/scale.json" \
      "$WORK/kernel.json" "$WORK/kernel-scale.json"
  else
    echo "(not measured: the fast half failed before or during it)"
  fi
fi
[ $softvpc_rc -eq 0 ] || exit $softvpc_rc
exit $fast_rc
