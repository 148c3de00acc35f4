"""Trust between hosts and the mapping service, on the lab's real underlay.

The impostor of issue 7: from host-2's namespace (the underlay), `RegisterHost{host-1,
198.18.0.99}` sent with curl over plain text, over TLS without a certificate, with host-2's
certificate, and with a certificate for host-1 from another CA (made with openssl): each is
refused and logged with its reason, host-1 keeps its address and a ping across hosts keeps
working. A watch without the host's certificate gets nothing; a host name without a token is
never registered.

Then a host is added as the README says (a token from `softvpc server join-token`, an agent
with `--join-token`), gets an instance that pings across hosts, and is removed with
`softvpc server remove-host` (refused while the instance runs, then `--force`): its watch ends,
its agent cannot reconnect, and host-1 no longer accepts its VXLAN.
"""

import struct
import subprocess

import frames as fr
from e2e_harness import (PREFIX, SOFTVPC_BIN, HandHost, STATE_DIR, WORK_DIR, netns_exists, run,
                         wait_until)

SERVER_DIR = STATE_DIR / "server"
CA = SERVER_DIR / "ca" / "ca.crt"
MAPPING = "198.18.0.1:8788"
RPC = "https://softvpc-server:8788/softvpc.mapping.v1.Mapping/"


def _pb_string(field, value):
    data = value.encode()
    return bytes([field << 3 | 2, len(data)]) + data


def _grpc_body(message):
    return b"\x00" + struct.pack("!I", len(message)) + message


def _register_body(name, ip):
    return _grpc_body(_pb_string(1, name) + _pb_string(2, ip))


def _grpc(lab, method, body, cert=None, key=None, tls=True, netns=None):
    """One unary gRPC call with curl from `netns` (host-2's by default); (exit code, grpc-status
    or None, output)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR / f"grpc-{method}.bin"
    path.write_bytes(body)
    cmd = ["curl", "-sS", "--max-time", "5", "-D", "-", "-o", "/dev/null",
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "--data-binary", f"@{path}"]
    if tls:
        cmd += ["--http2", "--cacert", str(CA), "--resolve", f"softvpc-server:8788:198.18.0.1"]
        if cert:
            cmd += ["--cert", str(cert), "--key", str(key)]
        cmd.append(RPC + method)
    else:
        cmd += ["--http2-prior-knowledge",
                f"http://{MAPPING}/softvpc.mapping.v1.Mapping/{method}"]
    proc = lab.netns_exec(netns or lab.host("host-2")["netns"], *cmd, timeout=20)
    status = None
    for line in proc.stdout.splitlines():
        if line.lower().startswith("grpc-status:"):
            status = int(line.split(":", 1)[1].strip())
    return proc.returncode, status, proc.stdout + proc.stderr


def _other_ca_cert(d):
    """A certificate for host-1 shaped like softvpc's, from a CA made with openssl."""
    d.mkdir(parents=True, exist_ok=True)
    ssl = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "evil-ca.key", "-out", "evil-ca.crt", "-subj", "/O=softvpc/CN=softvpc CA",
        "-days", "1", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign")
    ssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "evil.key", "-out", "evil.csr",
        "-subj", "/O=softvpc/OU=softvpc hosts/CN=host-1")
    (d / "ext.cnf").write_text("extendedKeyUsage=clientAuth\n")
    ssl("x509", "-req", "-in", "evil.csr", "-CA", "evil-ca.crt", "-CAkey", "evil-ca.key",
        "-CAcreateserial", "-out", "evil.crt", "-days", "1", "-extfile", "ext.cnf")
    return d / "evil.crt", d / "evil.key"


def _host_ip_in_view(lab, viewer, host_name):
    hosts = lab.mappings(viewer).get("hosts", [])
    for h in hosts:
        if h.get("name") == host_name:
            return h.get("underlay_ip")
    raise AssertionError(f"{host_name} not in {viewer}'s view: {hosts}")


def _server_log():
    return (STATE_DIR / "logs" / "server.log").read_text(errors="replace")


def test_the_impostor_is_refused(lab):
    h1_ip = lab.host("host-1")["underlay_ip"]
    assert _host_ip_in_view(lab, "host-2", "host-1") == h1_ip
    assert lab.ping("zigi-vm2", "10.0.0.148").ok
    impostor = _register_body("host-1", "198.18.0.99")
    host2 = STATE_DIR / "agents" / "host-2"

    # Plain text (the curl): the TLS listener refuses it.
    rc, status, out = _grpc(lab, "RegisterHost", impostor, tls=False)
    assert status is None and rc != 0, out
    # TLS, no certificate: UNAUTHENTICATED.
    rc, status, out = _grpc(lab, "RegisterHost", impostor)
    assert status == 16, out
    # host-2's own certificate, claiming host-1: PERMISSION_DENIED.
    rc, status, out = _grpc(lab, "RegisterHost", impostor,
                            cert=host2 / "host.crt", key=host2 / "host.key")
    assert status == 7, out
    # host-1's name in a certificate of another CA: the handshake fails.
    evil_crt, evil_key = _other_ca_cert(WORK_DIR / "evil-pki")
    rc, status, out = _grpc(lab, "RegisterHost", impostor, cert=evil_crt, key=evil_key)
    assert status is None and rc != 0, out
    # A host name nobody gave a token to: refused, so it can never be placed on.
    rc, status, out = _grpc(lab, "RegisterHost", _register_body("host-9", "198.18.0.99"))
    assert status == 16, out
    rc, status, out = _grpc(lab, "RegisterHost", _register_body("host-9", "198.18.0.99"),
                            cert=host2 / "host.crt", key=host2 / "host.key")
    assert status == 7, out

    # Watch without a certificate, and host-2 asking for host-1's view: nothing.
    watch = _grpc_body(_pb_string(1, lab.host_id("host-1")))
    assert _grpc(lab, "Watch", watch)[1] == 16
    assert _grpc(lab, "Watch", watch, cert=host2 / "host.crt", key=host2 / "host.key")[1] == 7

    # Each refusal is in the server's log with its reason.
    log = _server_log()
    refusals = "\n".join(line for line in log.splitlines() if "refused" in line)
    for reason in ("a client certificate is required",        # no certificate
                   "the certificate is for host",              # host-2's certificate
                   "invalid peer certificate",                 # another CA
                   "corrupt message"):                         # plain text
        assert reason in refusals, f"no '{reason}' among the server's refusals:\n{refusals}"

    # Nothing changed: host-1 keeps its address everywhere, traffic keeps flowing.
    names = [t["Value"] for h in lab.aws("describe-hosts")["Hosts"]
             for t in h.get("Tags", []) if t["Key"] == "Name"]
    assert "host-9" not in names, names
    assert _host_ip_in_view(lab, "host-2", "host-1") == h1_ip
    assert _host_ip_in_view(lab, "host-1", "host-1") == h1_ip
    assert lab.ping("zigi-vm2", "10.0.0.148").ok
    assert lab.ping("zigi-vm1", "10.0.0.185").ok


X3, X3_IP, X3_VM_IP = "host-x3", "198.18.0.63", "10.0.0.63"


class _NewHost(HandHost):
    """A host added by hand to the lab's underlay, with its own agent."""

    def __init__(self, lab):
        super().__init__(lab, X3, X3_IP, f"{PREFIX}x3", f"{PREFIX}x3p"[:15],
                         WORK_DIR / "x3-agent", WORK_DIR / "x3-agent.log", PREFIX,
                         mtu=9100)  # the lab's jumbo underlay

    def __enter__(self):
        self.plug()
        # How a real host joins: a token from the server, the agent trades it.
        token = run([SOFTVPC_BIN, "server", "join-token", "--data-dir", str(SERVER_DIR),
                     "--host", X3, "--ttl", "5m"], check=True).stdout.strip()
        assert token.startswith("svpc1."), token
        self.start_agent(f"https://{MAPPING}", token)
        return self

    def __exit__(self, *exc):
        self.stop()


def test_add_then_remove_a_host(lab):
    subnet = lab.instance("zigi-vm1")["subnet_id"]
    vm1 = lab.instance("zigi-vm1")
    vni = lab.vni(vm1["vpc_id"])
    h1_ip = lab.host("host-1")["underlay_ip"]
    iid = x3_mac = None

    def control(marker):
        # From the new host's own instance: a source that host holds (a frame claiming another
        # host's instance is dropped as forged_source whether or not the sender is registered).
        return fr.vxlan(vni, fr.udp_frame(x3_mac, vm1["mac"], X3_VM_IP, vm1["ip"], marker))

    with _NewHost(lab) as x3:
        def registered():
            hosts = lab.aws("describe-hosts")["Hosts"]
            return any(t["Value"] == X3 for h in hosts for t in h.get("Tags", []))
        wait_until(registered, 30, what=f"{X3} to join and register")
        out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1",
                      "--subnet-id", subnet, "--private-ip-address", X3_VM_IP,
                      "--placement", f"HostId={lab.host_id(X3)}")
        iid = out["Instances"][0]["InstanceId"]
        x3_mac = out["Instances"][0]["NetworkInterfaces"][0]["MacAddress"]
        vm_ns = f"{PREFIX}{iid}"
        wait_until(lambda: netns_exists(vm_ns), 30, what="the new host's instance namespace")
        assert lab.wait_ping("zigi-vm1", X3_VM_IP, timeout=30).ok
        assert (x3.state / "host.key").stat().st_mode & 0o777 == 0o600

        # Before removal, host-1 accepts the new host's VXLAN.
        with lab.capture("zigi-vm1") as caps:
            lab.send_udp(x3.ns, h1_ip, 4789, [control(b"svt-x3-before")])
        assert caps["zigi-vm1"].udp_containing(b"svt-x3-before"), caps["zigi-vm1"].text()

        # Refused while its instance runs.
        refused = run([SOFTVPC_BIN, "server", "remove-host", "--data-dir", str(SERVER_DIR), X3])
        assert refused.returncode != 0 and "instance" in refused.stderr, refused
        assert registered()

        removed = run([SOFTVPC_BIN, "server", "remove-host", "--data-dir", str(SERVER_DIR),
                       X3, "--force"], check=True)
        assert iid in removed.stdout, removed.stdout
        assert not registered()
        state = lab.aws("describe-instances", "--instance-ids", iid)
        assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"

        # Its watch ended and it cannot reconnect: refused, with the reason, on both sides.
        wait_until(lambda: "PermissionDenied" in x3.agent_log()
                   and "RegisterHost failed" in x3.agent_log(), 30,
                   what="the removed host's agent to be refused")
        assert "watch ended: host revoked" in _server_log()
        assert X3 not in [h.get("name") for h in lab.mappings("host-1").get("hosts", [])]

        # Its VXLAN is no longer accepted by host-1.
        before = lab.drops("host-1", "vxlan_unknown_source")
        with lab.capture("zigi-vm1") as caps:
            lab.send_udp(x3.ns, h1_ip, 4789, [control(b"svt-x3-after")])
        assert not caps["zigi-vm1"].udp_containing(b"svt-x3-after"), caps["zigi-vm1"].text()
        assert lab.drops("host-1", "vxlan_unknown_source") > before
        assert lab.ping("zigi-vm2", "10.0.0.148").ok
    if iid:
        wait_until(lambda: not netns_exists(f"{PREFIX}{iid}"), 20,
                   what="the removed host's instance namespace to go")
