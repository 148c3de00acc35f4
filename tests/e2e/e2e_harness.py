"""End-to-end test harness: the helpers the tests use around one softvpc lab (the fixtures that
build and remove the lab are in conftest.py).

`Lab` wraps the lab's CLI and status, runs commands inside its namespaces, pings, captures with
tcpdump (`Capture`: pcap read back both as text and as raw frames), reads the agents' metrics and
mapping views, and drives the EC2 API with the AWS CLI. `TOPOLOGY` is the test lab.

Everything VPC-side runs inside instance namespaces (`softvpc lab exec`, `ip netns exec`); nothing
is ever sent from the root namespace to a VPC address.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

sys.path.insert(0, str(HERE.parent))
import ports  # noqa: E402  (tests/ports.py, shared with tests/api)

# Several suites may run at once on one machine (developers, CI): each run gets its own lab prefix
# (svt<pid>-, so a crashed run's leftovers can be told from a live run's) and API port unless
# told otherwise, so their namespaces never collide.
PREFIX = os.environ.get("SOFTVPC_E2E_PREFIX") or f"svt{os.getpid()}-"
RUN_PREFIX_RE = re.compile(r"^(svt(\d+)-)")
STATE_DIR = Path(f"/tmp/{PREFIX}e2e-lab")
WORK_DIR = Path(f"/tmp/svt-e2e-{os.getpid()}")
SOFTVPC_BIN = os.environ.get("SOFTVPC_BIN", str(REPO / "target" / "release" / "softvpc"))
SENDPKT = str(HERE / "sendpkt.py")

# The seed topology (issue 2, section 4, and its internet) plus `kvtep`: a registered host that runs no agent, where
# a kernel VXLAN device plays the virtual router for `kvm1` (tests/e2e/test_interop.py).
TOPOLOGY = """\
[[host]]
name = "host-1"

[[host]]
name = "host-2"

[[host]]
name = "kvtep"
agent = false

[internet]
hosts = ["203.0.113.10", "203.0.113.11"]
http = "203.0.113.10:80"
udp_echo = "203.0.113.10:7"
dns = "203.0.113.10:53"

[internet.dns_names]
"www.example.test" = "203.0.113.10"
"client.example.test" = "203.0.113.11"

[[vpc]]
name = "zigi-vpc1"
cidr = "10.0.0.0/16"
[[vpc.subnet]]
cidr = "10.0.0.0/24"
[[vpc.subnet]]
cidr = "10.0.1.0/24"

[[vpc]]
name = "zigi-vpc2"
cidr = "10.0.0.0/16"
[[vpc.subnet]]
cidr = "10.0.0.0/24"

[[instance]]
name = "zigi-vm1"
vpc = "zigi-vpc1"
subnet = "10.0.0.0/24"
ip = "10.0.0.148"
host = "host-1"

[[instance]]
name = "zigi-vm2"
vpc = "zigi-vpc1"
subnet = "10.0.0.0/24"
ip = "10.0.0.185"
host = "host-2"

[[instance]]
name = "zigi-vm3"
vpc = "zigi-vpc1"
subnet = "10.0.1.0/24"
ip = "10.0.1.20"
host = "host-2"

[[instance]]
name = "zigi-vm4"
vpc = "zigi-vpc1"
subnet = "10.0.0.0/24"
ip = "10.0.0.30"
host = "host-1"

[[instance]]
name = "other-vm1"
vpc = "zigi-vpc2"
subnet = "10.0.0.0/24"
ip = "10.0.0.148"
host = "host-1"

[[instance]]
name = "other-vm2"
vpc = "zigi-vpc2"
subnet = "10.0.0.0/24"
ip = "10.0.0.185"
host = "host-2"

[[instance]]
name = "kvm1"
vpc = "zigi-vpc1"
subnet = "10.0.0.0/24"
ip = "10.0.0.50"
host = "kvtep"
"""

# Patterns over `tcpdump -nn -e` lines ("... ethertype ARP (0x0806), length 42: Request ...").
ECHO_REQUEST_RE = re.compile(r"(\S+) > (\S+): ICMP echo request")
ECHO_REPLY_RE = re.compile(r"(\S+) > (\S+): ICMP echo reply")
ARP_REQUEST_RE = re.compile(r": Request who-has (\S+)(?: \([^)]*\))? tell (\S+),")
ARP_REPLY_RE = re.compile(r": Reply (\S+) is-at (\S+),")

# Processes the harness started (tcpdump, iperf3...), killed by pid at session end if still alive.
_STARTED: list = []


def run(cmd, timeout=30, check=False, env=None, input=None):
    """Runs a command, capturing text output; never hangs longer than `timeout`."""
    cmd = [str(c) for c in cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              input=input)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n"
                             f"stdout: {err.stdout}\nstderr: {err.stderr}") from err
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {' '.join(cmd)}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (see tests/ports.py), as a string."""
    return str(ports.free_port())


def netns_list():
    out = run(["ip", "netns", "list"], check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_exists(name):
    return name in netns_list()


def wait_until(predicate, timeout, interval=0.2, what="condition"):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def eni_gone(ec2, eni):
    """Cleanup: `eni` detached (if it is) and deleted."""
    with contextlib.suppress(Exception):
        att = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])[
            "NetworkInterfaces"][0].get("Attachment")
        if att:
            ec2.detach_network_interface(AttachmentId=att["AttachmentId"])

    def deleted():
        try:
            ec2.delete_network_interface(NetworkInterfaceId=eni)
            return True
        except Exception:  # still detaching
            return False

    wait_until(deleted, 30, interval=0.5, what=f"{eni} to be deleted")


def pid_alive(pid):
    """Whether `pid` runs (a zombie waiting for its reaper does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def parse_prometheus(text):
    """Prometheus text -> {(name, frozenset(labels.items())): value}."""
    series = {}
    line_re = re.compile(r'^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
    label_re = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = frozenset(label_re.findall(m.group(2) or ""))
        try:
            series[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return series


def metric_sum(series, name, **labels):
    """Sum of every series called `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in series.items() if n == name and want <= set(ls))


def find_in_json(node, predicate):
    """Every dict inside `node` (recursively) for which predicate(dict) is true."""
    found = []
    if isinstance(node, dict):
        if predicate(node):
            found.append(node)
        for value in node.values():
            found.extend(find_in_json(value, predicate))
    elif isinstance(node, list):
        for value in node:
            found.extend(find_in_json(value, predicate))
    return found


class PingResult:
    def __init__(self, proc):
        self.ok = proc.returncode == 0
        self.output = proc.stdout + proc.stderr
        self.ttls = [int(t) for t in re.findall(r"ttl=(\d+)", proc.stdout)]
        self.times = [float(t) for t in re.findall(r"time=([\d.]+) ms", proc.stdout)]
        self.received = len(self.ttls)

    def __repr__(self):
        return f"PingResult(ok={self.ok}, ttls={self.ttls})\n{self.output}"


class Capture:
    """tcpdump on one interface of one namespace, written to a pcap file.

    `start()` returns once tcpdump really captures (it said "listening on"); `stop()` ends it by
    pid and reads the file back both as tcpdump's text (`lines`) and as raw frames (`frames`).
    """

    def __init__(self, netns, iface, path, label=None):
        self.netns, self.iface, self.path = netns, iface, Path(path)
        self.label = label or f"{netns}:{iface}"
        self.proc = None
        self.lines, self.frames = [], []

    def start(self):
        self.errpath = self.path.with_suffix(".err")
        errfile = open(self.errpath, "w")
        self.proc = subprocess.Popen(
            # --immediate-mode: hand each packet over at once (not per 1 s buffer block), so a
            # stop right after the traffic misses nothing; -Z root: keep the right to write here.
            ["ip", "netns", "exec", self.netns, "tcpdump", "-i", self.iface, "-nn", "-e", "-U",
             "--immediate-mode", "-Z", "root", "-s", "0", "-w", str(self.path)],
            stdout=subprocess.DEVNULL, stderr=errfile, stdin=subprocess.DEVNULL)
        errfile.close()
        _STARTED.append(self.proc)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"tcpdump in {self.label} exited: {self.errpath.read_text()}")
            return "listening on" in self.errpath.read_text()

        wait_until(listening, 10, interval=0.05, what=f"tcpdump to listen in {self.label}")
        return self

    def stop(self, settle=0.3):
        if self.proc is None:
            return self
        time.sleep(settle)  # let frames still in flight land in the capture
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None
        from frames import Frame, read_pcap
        self.frames = [Frame(raw) for _, raw in read_pcap(str(self.path))]
        out = run(["tcpdump", "-r", str(self.path), "-nn", "-e"], check=True).stdout
        self.lines = [line for line in out.splitlines() if line.strip()]
        return self

    def text(self):
        return "\n".join(self.lines)

    def containing(self, needle: bytes):
        return [f for f in self.frames if needle in f.raw]

    def udp_containing(self, needle: bytes):
        """UDP datagrams carrying `needle` (not the ICMP errors that quote them)."""
        return [f for f in self.containing(needle) if f.ipv4() and f.ipv4()[2] == 17]



class HandHost:
    """A host added by hand to a lab's underlay: its own namespace `ns`, a veth from the
    fabric's br0 (`port` there, `u0` inside at `ip`/16, MTU `mtu` on both ends when given), and
    its own `softvpc agent` with state in `state` and output in `log`. `stop` undoes it all."""

    def __init__(self, lab, name, ip, ns, port, state, log, instance_prefix, mtu=None):
        self.lab, self.name, self.ip = lab, name, ip
        self.ns, self.port, self.state, self.log = ns, port, state, log
        self.instance_prefix, self.mtu = instance_prefix, mtu
        self.proc = None

    def plug(self):
        fabric = self.lab.netns("fabric")
        run(["ip", "netns", "add", self.ns], check=True)
        run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        run(["ip", "-n", fabric, "link", "add", self.port, "type", "veth", "peer", "name",
             "u0", "netns", self.ns], check=True)
        if self.mtu:
            for ns, dev in ((fabric, self.port), (self.ns, "u0")):
                run(["ip", "-n", ns, "link", "set", dev, "mtu", str(self.mtu)], check=True)
        run(["ip", "-n", fabric, "link", "set", self.port, "master", "br0", "up"], check=True)
        run(["ip", "-n", self.ns, "addr", "add", f"{self.ip}/16", "dev", "u0"], check=True)
        run(["ip", "-n", self.ns, "link", "set", "u0", "up"], check=True)

    def start_agent(self, server_url, token, *extra):
        """Starts its agent; `extra` are more `softvpc agent` arguments."""
        self.proc = subprocess.Popen(
            [SOFTVPC_BIN, "agent", "--netns", self.ns, "--server", server_url,
             "--host-name", self.name, "--underlay-ip", self.ip,
             "--instance-netns-prefix", self.instance_prefix,
             "--join-token", token, "--state-dir", str(self.state), *extra],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

    def agent_log(self):
        return self.log.read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        run(["ip", "-n", self.lab.netns("fabric"), "link", "del", self.port])
        if netns_exists(self.ns):
            run(["ip", "netns", "del", self.ns])

class Lab:
    """A running lab: its CLI, its status, and helpers to act inside its namespaces."""

    def __init__(self, topology_path):
        self.topology_path = topology_path
        # Own prefix, state dir and API port: another lab (svpc-, :8787) may run meanwhile.
        # SOFTVPC_FLOW_LOG_MAX_WINDOW: the agents close flow log windows after 10 s, not the
        # flow logs' 60 s, so test_flow_logs.py waits seconds (AWS's interval is a maximum).
        # SOFTVPC_SG_RULES_PER_GROUP: the server's quota raised as AWS allows (200 rules x 5
        # groups = 1,000 per ENI) for test_sg_1000_rules.py.
        self.env = dict(os.environ, SOFTVPC_LAB_PREFIX=PREFIX, SOFTVPC_LAB_DIR=str(STATE_DIR),
                        SOFTVPC_FLOW_LOG_MAX_WINDOW="10", SOFTVPC_SG_RULES_PER_GROUP="200",
                        SOFTVPC_LAB_API_PORT=os.environ.get("SVT_API_PORT") or free_port())
        self._status = None
        self._captures = 0

    # ---- the CLI
    def cli(self, *args, timeout=60, check=False):
        return run([SOFTVPC_BIN, "lab", *args], timeout=timeout, check=check, env=self.env)

    def status(self, refresh=False):
        if self._status is None or refresh:
            proc = self.cli("status", "--json", check=True)
            self._status = json.loads(proc.stdout)
        return self._status

    @property
    def api_url(self):
        return self.status()["api_url"]

    def credentials(self):
        """(access key id, secret) of the server's generated key pair (every API call is signed)."""
        import configparser
        cp = configparser.ConfigParser()
        cp.read(self.status()["credentials_file"])
        return cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]

    def instance(self, name):
        for inst in self.status()["instances"]:
            if inst["name"] == name:
                return inst
        for inst in self.status(refresh=True)["instances"]:
            if inst["name"] == name:
                return inst
        raise KeyError(f"no instance {name} in lab status")

    def host(self, name):
        for host in self.status()["hosts"]:
            if host["name"] == name:
                return host
        raise KeyError(f"no host {name} in lab status")

    def netns(self, name):
        """The namespace of an instance (by Name tag) or of a host (host name), `fabric` or
        `internet`."""
        if name in ("fabric", "internet"):
            return f"{PREFIX}{name}"
        try:
            return self.instance(name)["netns"]
        except KeyError:
            return self.host(name)["netns"]

    # ---- running things inside the lab
    def exec(self, name, *cmd, timeout=30, check=False):
        """`softvpc lab exec NAME -- CMD...`: runs CMD in instance NAME's namespace."""
        return self.cli("exec", name, "--", *cmd, timeout=timeout, check=check)

    def netns_exec(self, netns, *cmd, timeout=30, check=False):
        return run(["ip", "netns", "exec", netns, *cmd], timeout=timeout, check=check)

    def ping(self, src, dst_ip, count=1, wait=2, interval=0.2, pattern=None, timeout=None):
        cmd = ["ping", "-n", "-c", str(count), "-W", str(wait), "-i", str(interval)]
        if pattern:
            cmd += ["-p", pattern]
        cmd.append(dst_ip)
        return PingResult(self.exec(src, *cmd, timeout=timeout or (count * (interval + wait) + 15)))

    def wait_ping(self, src, dst_ip, timeout=30):
        """Pings once a second until a reply comes; returns the successful PingResult."""
        return wait_until(lambda: (r := self.ping(src, dst_ip, wait=1)).ok and r, timeout,
                          interval=0.5, what=f"{src} to reach {dst_ip}")

    def send_frames(self, name, frames_, iface="eth0"):
        """Sends raw Ethernet frames from instance NAME (AF_PACKET socket, via lab exec)."""
        return self.exec(name, sys.executable, SENDPKT, "raw", iface,
                         *[f.hex() for f in frames_], check=True)

    def send_udp(self, netns, dst_ip, port, payloads):
        """Sends UDP datagrams from inside `netns` (a host or the fabric namespace)."""
        return self.netns_exec(netns, sys.executable, SENDPKT, "udp", dst_ip, str(port),
                               *[p.hex() for p in payloads], check=True)

    @contextlib.contextmanager
    def capture(self, *names, iface="eth0"):
        """Captures on `iface` of each named instance (or host netns, for iface u0) meanwhile.

        Yields {name: Capture}; on exit every capture is stopped and read back."""
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        caps = {}
        try:
            for name in names:
                self._captures += 1
                path = WORK_DIR / f"cap{self._captures}-{name}.pcap"
                caps[name] = Capture(self.netns(name), iface, path, label=name).start()
            yield caps
        finally:
            for i, cap in enumerate(caps.values()):
                cap.stop(settle=0.3 if i == 0 else 0)

    # ---- the agents' HTTP endpoints
    def agent_get(self, host, path):
        proc = self.netns_exec(self.host(host)["netns"], "curl", "-s", "-f", "--max-time", "5",
                               f"http://127.0.0.1:9469{path}", check=True)
        return proc.stdout

    def metrics(self, host):
        return parse_prometheus(self.agent_get(host, "/metrics"))

    def release_address(self, alloc):
        """Cleanup: Elastic IP `alloc` disassociated (if it is) and released; never raises."""
        for a in self.aws("describe-addresses", "--allocation-ids", alloc)["Addresses"]:
            if a.get("AssociationId"):
                self.aws("disassociate-address", "--association-id", a["AssociationId"],
                         check=False)
        self.aws("release-address", "--allocation-id", alloc, check=False)

    def remove_internet_gateway(self, igw, vpc):
        """Cleanup: internet gateway `igw` detached from `vpc` and deleted; never raises."""
        self.aws("detach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc,
                 check=False)
        self.aws("delete-internet-gateway", "--internet-gateway-id", igw, check=False)

    def fast_path_errors(self, host):
        """The agent's fast-path error count, and (for an assertion message) its log's last
        fast-path warnings: a count alone says nothing about what failed."""
        count = metric_sum(self.metrics(host), "softvpc_fast_path_errors_total")
        lines = []
        if count:
            for log in sorted((STATE_DIR / "logs").glob("*.log")):
                text = log.read_text(errors="replace").splitlines()
                lines += [f"{log.name}: {line}" for line in text
                          if "fast path" in line and ("WARN" in line or "ERROR" in line)][-8:]
        return count, "\n".join(lines)

    def drops(self, host, reason):
        return metric_sum(self.metrics(host), "softvpc_drops_total", reason=reason)

    def mappings_text(self, host):
        """What the agent holds now, as text: its `/mappings` without `local_changes` (the
        history of ENIs it took in or out names ENIs it no longer holds)."""
        view = self.mappings(host)
        view.pop("local_changes", None)
        return json.dumps(view)

    def mappings(self, host):
        return json.loads(self.agent_get(host, "/mappings"))

    def vni(self, vpc_id):
        """The VPC's VNI as the agents hold it (DescribeVpcs does not show it)."""
        for host in ("host-1", "host-2"):
            found = find_in_json(self.mappings(host), lambda d: vpc_id in d.values() and any(
                "vni" in k.lower() and isinstance(v, int) for k, v in d.items()))
            for d in found:
                for k, v in d.items():
                    if "vni" in k.lower() and isinstance(v, int):
                        return v
        raise AssertionError(f"no VNI for {vpc_id} in the agents' /mappings")

    def agent_alive(self, host):
        status = self.status(refresh=True)
        entry = next(h for h in status["hosts"] if h["name"] == host)
        return entry["running"] and entry["pid"] and pid_alive(entry["pid"])

    # ---- the EC2 API
    def aws_env(self):
        ak, sk = self.credentials()
        return dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk,
                    AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                    AWS_CONFIG_FILE=str(WORK_DIR / "aws-config-none"),
                    AWS_SHARED_CREDENTIALS_FILE=str(WORK_DIR / "aws-credentials-none"),
                    AWS_PAGER="", AWS_MAX_ATTEMPTS="1")

    def aws(self, *args, check=True, timeout=60):
        """`aws ec2 --endpoint-url URL ARGS --output json`; parsed JSON (or the process)."""
        proc = run(["aws", "ec2", "--endpoint-url", self.api_url, *args, "--output", "json"],
                   timeout=timeout, env=self.aws_env())
        if not check:
            return proc
        if proc.returncode != 0:
            raise AssertionError(f"aws ec2 {' '.join(args)} failed: {proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def host_id(self, host_name):
        """A registered host's id: from DescribeHosts, else from DescribeInstances placement of
        an instance on it, else from the agents' mapping view."""
        hosts = self.aws("describe-hosts", check=False)
        if hosts.returncode == 0:
            for host in json.loads(hosts.stdout or "{}").get("Hosts", []):
                names = {t.get("Value") for t in host.get("Tags", []) if t.get("Key") == "Name"}
                names |= {host.get("HostName"), host.get("Name")}
                if host_name in names and host.get("HostId"):
                    return host["HostId"]
        ids = [i["instance_id"] for i in self.status()["instances"] if i["host"] == host_name]
        if ids:
            out = self.aws("describe-instances", "--instance-ids", ids[0])
            for res in out.get("Reservations", []):
                for inst in res.get("Instances", []):
                    host_id = inst.get("Placement", {}).get("HostId")
                    if host_id:
                        return host_id
        for host in ("host-1", "host-2"):
            for d in find_in_json(self.mappings(host), lambda d: host_name in d.values()):
                for v in d.values():
                    if isinstance(v, str) and re.fullmatch(r"h-[0-9a-f]{17}", v):
                        return v
        raise AssertionError(f"cannot find the host id of {host_name}")
