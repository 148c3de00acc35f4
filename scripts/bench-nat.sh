#!/usr/bin/env bash
# softvpc NAT benchmark (prints figures; not a test): the internet gateway with an Elastic IP and
# the NAT gateway against the kernel's nftables 1:1 NAT and masquerade, in one run. Needs root,
# iproute2, iperf3, curl, python3 and a release build (cargo build --release -p softvpc); installs
# Debian's nftables if `nft` is missing.
#
# The same topology twice (AWS's public and private subnets, as examples/public-private.toml):
#   (a) kernel: a fabric bridge netns (198.18.0.1/16, MTU 9100 as the lab's underlay), two host
#       netns on it (198.18.0.11, .12) joined by a kernel VXLAN device (VNI 257, port 4789,
#       10.255.255.0/30 inside), "web" (10.0.0.10/24, MTU 1500) behind host-1 and "app"
#       (10.0.1.10/24) behind host-2, each on a veth to its host, which routes (ip_forward);
#       host-1 holds the edge: a veth into the internet netns (bridge inet0, 203.0.113.1 and
#       .10) with the NAT gateway's public address as primary and web's Elastic IP as secondary,
#       and nftables rules: `dnat to 10.0.0.10` / `snat to EIP` for web (1:1 NAT) and
#       `masquerade` for 10.0.1.0/24 (the NAT gateway); app's traffic crosses the VXLAN to host-1
#       as it crosses the underlay to the NAT gateway's host in softvpc;
#   (b) softvpc: `softvpc lab up` of the same topology (an internet gateway, a public subnet
#       routed to it with web and its Elastic IP on host-1, a NAT gateway in it (placed on
#       host-1), a private subnet routed to the NAT gateway with app on host-2), once per
#       fast-path mode (-m; both by default).
# Each half first checks the translation with curl to 203.0.113.10 (web must be seen as its
# Elastic IP, app as the NAT gateway's), then measures from the instances to 203.0.113.10:
# iperf3 TCP for T seconds each way (upload: the instance sends; download: -R), and N new TCP
# connections, C at a time, each closed by RST once made (connect time p50/p99 and connections
# per second; scripts/bench.py connect), through the internet gateway (web) and through the NAT
# gateway (app), plus N new connections from the internet to web's Elastic IP. It prints a table
# with both halves and the softvpc/kernel ratios, the load average at the start and at the end,
# and softvpc's drops and agents' CPU time during its measurements. In softvpc's halves it also
# measures the instance services in app (issue 11's "in one run"): busybox udhcpc's lease time
# (20 runs) and the DNS queries per second the router answers at the VPC's +2 (20,000 queries).
#
# usage: sudo scripts/bench-nat.sh [-t SECONDS] [-k CONNECTS] [-c CONCURRENCY] [-m "off on"]
#                                  [-N SUSTAINED]
#   -t  iperf3 duration per run (default 5)        -k  new TCP connections per path (default 2000)
#   -c  connections in flight (default 16)         -m  softvpc fast-path modes (default "off on")
#   -N  then SUSTAINED more connections from app through the NAT gateway to 203.0.113.10:5301
#       (default 0: none; at most 64,000), 120 s at most, from source ports 1024, 1025, ...
#       (as several instances would: Linux gives one client's connect() only even ports): past
#       the gateway's 55,000 per destination, each closed at once (a closed connection must give
#       its port back: AWS counts simultaneous connections)
# env: SOFTVPC_BIN (default target/release/softvpc), BENCH_API_PORT (default: a free port)
#
# Everything it creates (namespaces nbk<pid>-* and the lab nbs<pid>-*, processes by pid, /tmp
# files) is removed on exit, also on failure or Ctrl-C. Traffic stays inside these namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

T=5 CONNECTS=2000 CONC=16 MODES="off on" SUSTAINED=0 SERVICE_RUNS=20 DNS_QUERIES=20000
while getopts "t:k:c:m:N:h" opt; do
  case $opt in
    t) T=$OPTARG ;; k) CONNECTS=$OPTARG ;; c) CONC=$OPTARG ;; m) MODES=$OPTARG ;;
    N) SUSTAINED=$OPTARG ;;
    *) sed -n '2,44p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench-nat.sh needs root (network namespaces)" >&2; exit 1; }
for m in $MODES; do
  case $m in on | off) ;; *) echo "-m: modes are on and off" >&2; exit 2 ;; esac
done
if ! command -v nft >/dev/null; then
  echo "==> installing nftables (Debian)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
fi
BIN=${SOFTVPC_BIN:-$REPO/target/release/softvpc}
[ -x "$BIN" ] || { echo "no softvpc binary at $BIN (cargo build --release -p softvpc)" >&2; exit 1; }
BENCH_PY="$REPO/scripts/bench.py"

# Names of this run only (other runs, labs or test suites may share the machine).
K=nbk$$-                          # the kernel topology's namespaces
export SOFTVPC_LAB_PREFIX=nbs$$-  # the softvpc lab
export SOFTVPC_LAB_DIR=/tmp/nbs$$-lab
export SOFTVPC_LAB_API_PORT=${BENCH_API_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
WORK=$(mktemp -d /tmp/svb-natbench.XXXXXX)
SERVER=203.0.113.10               # the internet host both halves measure against
K_WEB_EIP=203.0.113.16 K_NAT_EIP=203.0.113.17

cleanup() {
  set +e
  stop_started
  timeout 120 "$BIN" lab down >/dev/null 2>&1
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^(${K}|${SOFTVPC_LAB_PREFIX})"); do
    ip netns del "$ns"
  done
  rm -rf "$WORK" "$SOFTVPC_LAB_DIR"
}
trap cleanup EXIT

# HALF_PID, kill_tree, on_signal (INT/TERM), log and run_half.
source scripts/bench-lib.sh  # the cwd is the repository (cd above)

# stop_started: stops the processes this script started so far (by pid, if they are still what
# it started: iperf3 and connect servers, the kernel half's HTTP server).
stop_started() {
  [ -f "$WORK/pids" ] || return 0
  local pid
  while read -r pid; do
    case "$(cat /proc/"$pid"/comm 2>/dev/null)" in
      iperf3 | python3 | softvpc) kill "$pid" 2>/dev/null || true ;;
    esac
  done <"$WORK/pids"
  : >"$WORK/pids"
}

# wait_listen NS PORT: until something listens on TCP PORT in NS (5 s at most).
wait_listen() {
  for _ in $(seq 50); do
    ip netns exec "$1" ss -ltn | grep -q ":$2 " && return 0
    sleep 0.1
  done
  echo "nothing listens on port $2 in $1" >&2
  return 1
}

# iperf LABEL CLIENT_NS SERVER_NS IPERF_ARGS...: one iperf3 run to $SERVER (its own one-shot
# server), figures to $WORK/LABEL.json.
iperf() {
  local label=$1 cli=$2 srv=$3
  shift 3
  ip netns exec "$srv" iperf3 -s -1 -B "$SERVER" >/dev/null 2>&1 &
  echo $! >>"$WORK/pids"
  wait_listen "$srv" 5201
  log "$label: iperf3 for ${T}s $*"
  timeout $((T + 30)) ip netns exec "$cli" iperf3 -c "$SERVER" -t "$T" -J "$@" >"$WORK/$label.raw"
  python3 "$BENCH_PY" iperf "$WORK/$label.raw" >"$WORK/$label.json"
  sleep 0.5  # the one-shot server exits after its test
}

# connects LABEL CLIENT_NS IP: $CONNECTS new TCP connections to IP:5301, figures to
# $WORK/LABEL.json.
connects() {
  log "$1: $CONNECTS new TCP connections to $3, $CONC at a time"
  timeout 120 ip netns exec "$2" python3 "$BENCH_PY" connect "$3" 5301 "$CONNECTS" "$CONC" \
    >"$WORK/$1.json"
}

# seen_as NS: the address 203.0.113.10's HTTP server saw NS's request come from ('' if none).
seen_as() {
  timeout 10 ip netns exec "$1" curl -sS --max-time 3 "http://$SERVER/" 2>/dev/null | tr -d '\n' || true
}

# expect_seen NS ADDRESS: until NS's requests arrive as ADDRESS (30 s at most).
expect_seen() {
  local got=
  for _ in $(seq 60); do
    got=$(seen_as "$1")
    [ "$got" = "$2" ] && return 0
    sleep 0.5
  done
  echo "$1 is seen as '$got' on the internet, not as $2: the translation does not work" >&2
  return 1
}

# measure LABEL WEB_NS APP_NS INET_NS WEB_EIP NAT_EIP: the translation check, then every figure
# of one half, to $WORK/LABEL.json.
measure() {
  local label=$1 web=$2 app=$3 inet=$4 web_eip=$5 nat_eip=$6
  expect_seen "$web" "$web_eip"
  expect_seen "$app" "$nat_eip"
  log "$label: web is seen as $web_eip, app as $nat_eip"
  for ns in "$inet" "$web"; do
    ip netns exec "$ns" python3 "$BENCH_PY" serve 5301 >/dev/null 2>&1 &
    echo $! >>"$WORK/pids"
    wait_listen "$ns" 5301
  done
  iperf "$label-igw-up" "$web" "$inet"
  iperf "$label-igw-down" "$web" "$inet" -R
  iperf "$label-nat-up" "$app" "$inet"
  iperf "$label-nat-down" "$app" "$inet" -R
  connects "$label-igw-conn" "$web" "$SERVER"
  connects "$label-nat-conn" "$app" "$SERVER"
  connects "$label-eip-conn" "$inet" "$web_eip"
  local parts="" k
  if [ "$SUSTAINED" -gt 0 ]; then
    log "$label-nat-sustained: $SUSTAINED new TCP connections through the NAT gateway"
    timeout 180 ip netns exec "$app" python3 "$BENCH_PY" connect "$SERVER" 5301 "$SUSTAINED" \
      "$CONC" 120 1024 >"$WORK/$label-nat-sustained.json"
    parts="\"nat-sustained\": $(cat "$WORK/$label-nat-sustained.json")"
  fi
  stop_started
  for k in igw-up igw-down nat-up nat-down igw-conn nat-conn eip-conn; do
    parts+="${parts:+, }\"$k\": $(cat "$WORK/$label-$k.json")"
  done
  echo "{$parts}" >"$WORK/$label.json"
}

# ---- (a) the kernel: routing, VXLAN and nftables
kernel_half() {
  log "kernel topology (namespaces ${K}*)"
  for n in fabric host-1 host-2 inet web app; do
    ip netns add "$K$n"
    ip -n "$K$n" link set lo up
  done
  ip -n "${K}fabric" link add br0 type bridge
  ip -n "${K}fabric" addr add 198.18.0.1/16 dev br0
  ip -n "${K}fabric" link set br0 up
  for i in 1 2; do
    ip -n "${K}fabric" link add "p$i" mtu 9100 type veth peer name u0 netns "${K}host-$i" mtu 9100
    ip -n "${K}fabric" link set "p$i" master br0 up
    ip -n "${K}host-$i" addr add "198.18.0.1$i/16" dev u0
    ip -n "${K}host-$i" link set u0 up
    ip netns exec "${K}host-$i" sysctl -qw net.ipv4.ip_forward=1
  done
  # The VPC's path between the hosts: a point-to-point kernel VXLAN.
  ip -n "${K}host-1" link add vx0 type vxlan id 257 local 198.18.0.11 remote 198.18.0.12 \
    dstport 4789 dev u0
  ip -n "${K}host-2" link add vx0 type vxlan id 257 local 198.18.0.12 remote 198.18.0.11 \
    dstport 4789 dev u0
  for i in 1 2; do
    ip -n "${K}host-$i" link set vx0 mtu 1500 up
    ip -n "${K}host-$i" addr add "10.255.255.$i/30" dev vx0
  done
  # The instances, each on a veth to its host (the host is its subnet's router, +1).
  ip -n "${K}host-1" link add tap0 type veth peer name eth0 netns "${K}web"
  ip -n "${K}host-1" addr add 10.0.0.1/24 dev tap0
  ip -n "${K}host-2" link add tap0 type veth peer name eth0 netns "${K}app"
  ip -n "${K}host-2" addr add 10.0.1.1/24 dev tap0
  for i in 1 2; do ip -n "${K}host-$i" link set tap0 up; done
  ip -n "${K}web" addr add 10.0.0.10/24 dev eth0
  ip -n "${K}web" link set eth0 up
  ip -n "${K}web" route add default via 10.0.0.1
  ip -n "${K}app" addr add 10.0.1.10/24 dev eth0
  ip -n "${K}app" link set eth0 up
  ip -n "${K}app" route add default via 10.0.1.1
  # The internet, reached only through host-1's edge.
  ip -n "${K}inet" link add inet0 type bridge
  ip -n "${K}inet" addr add 203.0.113.1/24 dev inet0
  ip -n "${K}inet" addr add "$SERVER/24" dev inet0
  ip -n "${K}inet" link set inet0 up
  ip -n "${K}inet" link add e1 type veth peer name edge0 netns "${K}host-1"
  ip -n "${K}inet" link set e1 master inet0 up
  ip -n "${K}host-1" addr add "$K_NAT_EIP/24" dev edge0 # primary: masquerade's source
  ip -n "${K}host-1" addr add "$K_WEB_EIP/24" dev edge0
  ip -n "${K}host-1" link set edge0 up
  ip -n "${K}host-1" route add default via 203.0.113.1
  ip -n "${K}host-1" route add 10.0.1.0/24 via 10.255.255.2
  ip -n "${K}host-2" route add default via 10.255.255.1
  ip netns exec "${K}host-1" nft -f - <<EOF
table ip nat {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    iifname "edge0" ip daddr $K_WEB_EIP dnat to 10.0.0.10
  }
  chain postrouting {
    type nat hook postrouting priority srcnat;
    oifname "edge0" ip saddr 10.0.0.10 snat to $K_WEB_EIP
    oifname "edge0" ip saddr 10.0.1.0/24 masquerade
  }
}
EOF
  # The same HTTP server as the lab's internet: it answers with the client's address.
  "$BIN" lab internet-serve --netns "${K}inet" --http "$SERVER:80" >/dev/null 2>&1 &
  echo $! >>"$WORK/pids"
  wait_listen "${K}inet" 80
  measure kernel "${K}web" "${K}app" "${K}inet" "$K_WEB_EIP" "$K_NAT_EIP"
  for n in fabric host-1 host-2 inet web app; do ip netns del "$K$n"; done
}

# ---- (b) softvpc, MODE: the agents' --fast-path
softvpc_half() {
  local mode=$1
  cat >"$WORK/nat-lab.toml" <<'EOF'
[[host]]
name = "host-1"

[[host]]
name = "host-2"

[internet]
hosts = ["203.0.113.10"]
http = "203.0.113.10:80"

[[vpc]]
name = "nat-vpc"
cidr = "10.0.0.0/16"
internet_gateway = true

[[vpc.subnet]]
name = "public"
cidr = "10.0.0.0/24"
routes = [{ destination = "0.0.0.0/0", target = "internet-gateway" }]

[[vpc.subnet]]
name = "private"
cidr = "10.0.1.0/24"
routes = [{ destination = "0.0.0.0/0", target = "nat-gateway:nat" }]

[[vpc.nat_gateway]]
name = "nat"
subnet = "public"

[[vpc.security_group]]
name = "web"
ingress = [{ protocol = "tcp", port = 5301, cidr = "0.0.0.0/0" }]

[[instance]]
name = "web"
vpc = "nat-vpc"
subnet = "public"
ip = "10.0.0.10"
host = "host-1"
elastic_ip = true
security_groups = ["web"]

[[instance]]
name = "app"
vpc = "nat-vpc"
subnet = "private"
ip = "10.0.1.10"
host = "host-2"
EOF
  log "softvpc lab, --fast-path $mode (prefix $SOFTVPC_LAB_PREFIX, API port $SOFTVPC_LAB_API_PORT)"
  timeout 120 "$BIN" lab down >/dev/null 2>&1 || true
  timeout 300 "$BIN" lab up --fast-path "$mode" "$WORK/nat-lab.toml" >"$WORK/lab-up.log" 2>&1 ||
    { cat "$WORK/lab-up.log" >&2; return 1; }
  timeout 30 "$BIN" lab status --json >"$WORK/status.json"
  local web app eips
  web=$(python3 -c 'import json,sys; print(next(i["netns"] for i in json.load(open(sys.argv[1]))["instances"] if i["name"]=="web"))' "$WORK/status.json")
  app=$(python3 -c 'import json,sys; print(next(i["netns"] for i in json.load(open(sys.argv[1]))["instances"] if i["name"]=="app"))' "$WORK/status.json")
  # The public addresses, as the API reports them: web's Elastic IP and the NAT gateway's.
  eips=$(python3 "$BENCH_PY" nat-addresses "$WORK/status.json")
  set -- $eips
  log "softvpc: web's Elastic IP $1, the NAT gateway's $2"
  python3 "$BENCH_PY" drops "$WORK/status.json" >"$WORK/drops-before.json"
  measure "softvpc-$mode" "$web" "$app" "${SOFTVPC_LAB_PREFIX}internet" "$1" "$2"
  python3 "$BENCH_PY" drops "$WORK/status.json" >"$WORK/drops-after.json"
  log "softvpc: DHCP lease time ($SERVICE_RUNS runs) and DNS queries per second ($DNS_QUERIES) in app"
  timeout 120 ip netns exec "$app" python3 "$BENCH_PY" services 10.0.0.2 ip-10-0-1-10.ec2.internal \
    "$SERVICE_RUNS" "$DNS_QUERIES" >"$WORK/services-$mode.json"
  python3 - "$WORK" "$mode" <<'EOF'
import json, sys
work, mode = sys.argv[1], sys.argv[2]
fig = json.load(open(f"{work}/softvpc-{mode}.json"))
fig["drops_before"] = json.load(open(f"{work}/drops-before.json"))
fig["drops_after"] = json.load(open(f"{work}/drops-after.json"))
fig["services"] = json.load(open(f"{work}/services-{mode}.json"))
json.dump(fig, open(f"{work}/softvpc-{mode}.json", "w"))
EOF
  timeout 120 "$BIN" lab down >/dev/null 2>&1
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
rc=0
run_half kernel_half
[ "$HALF_RC" -eq 0 ] || { echo "kernel half failed (exit $HALF_RC)" >&2; exit 1; }
reports=()
for m in $MODES; do
  run_half softvpc_half "$m"
  if [ "$HALF_RC" -eq 0 ]; then
    reports+=("$m=$WORK/softvpc-$m.json")
  else
    echo "!! softvpc --fast-path $m failed: its figures are missing" >&2
    rc=1
  fi
done

echo
echo "softvpc NAT benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), kernel $(uname -r)"
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine skews both halves)"
echo "command: scripts/bench-nat.sh -t $T -k $CONNECTS -c $CONC -m \"$MODES\" -N $SUSTAINED"
echo "softvpc: $BIN built $(date -u -r "$BIN" +%Y-%m-%dT%H:%MZ 2>/dev/null || echo '?'), checkout at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
python3 "$BENCH_PY" nat-report "$WORK/kernel.json" "${reports[@]}"
exit $rc
