"""The proxy on real iptables, inside a network namespace of the test's own (so no rule touches
the host): an apiserver and `hyperkube proxy` run in it, echo servers stand in for pods on
addresses of its loopback device, and clients connect to the Services' virtual IPs from in it.
Services and EndpointSlices are written directly, as the endpointslice controller would.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import _free_port, _hyperkube_bin, _stop
from e2e_util import wait_for

CLUSTER_IP = "10.0.0.50"
PODS = ["10.244.0.2", "10.244.0.3"]

ECHO = """
import socket, sys, threading
def serve(c):
    c.sendall(sys.argv[1].encode() + b"\\n")
    while data := c.recv(64):
        c.sendall(data)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080)); s.listen(64)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""

# One connection kept open: prints the greeting, then echoes each line of stdin through it.
CHAT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
f = s.makefile("rw")
print(f.readline().strip(), flush=True)
for line in sys.stdin:
    f.write(line); f.flush()
    print(f.readline().strip(), flush=True)
"""

ASK = """
import socket, sys
s = socket.socket(); s.settimeout(2)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(64).decode().split()[0])
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__)
"""


class Netns:
    def __init__(self, name: str):
        self.name = name

    def run(self, *argv: str, check: bool = True) -> str:
        out = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise AssertionError(f"{argv} in {self.name}: {out.returncode}\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def start(self, *argv: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdin=subprocess.DEVNULL,
                                stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)

    def ask(self, ip: str, port: int) -> str:
        return self.run("python3", "-c", ASK, ip, str(port)).strip()


class Cluster:
    def __init__(self, ns: Netns, port: int, base: Path):
        self.ns, self.port, self.base = ns, port, base
        self.proxy: subprocess.Popen | None = None

    def kubectl(self, *args: str, input: str | None = None) -> str:
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns.name, "kubectl", f"--server=http://127.0.0.1:{self.port}", *args],
            capture_output=True, text=True, timeout=60, input=input)
        assert out.returncode == 0, f"kubectl {args}: {out.stderr}"
        return out.stdout

    def apply(self, obj: dict) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def start_proxy(self, path: str | None = None) -> None:
        """Starts the proxy; `path` replaces PATH, to put stand-in tools first."""
        env = {**os.environ, "PATH": path} if path else None
        self.proxy = self.ns.start(
            str(_hyperkube_bin()), "proxy", f"--master=http://127.0.0.1:{self.port}", "--cluster-cidr=10.244.0.0/16",
            "--healthz-bind-address=127.0.0.1:10256", "--metrics-bind-address=127.0.0.1:10249",
            "--iptables-sync-period=2s", "--iptables-min-sync-period=100ms", log=self.base / "proxy.log", env=env)

    def stop_proxy(self) -> None:
        if self.proxy:
            _stop(self.proxy)

    def nat(self) -> str:
        return self.ns.run("iptables-save", "-t", "nat")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    name = f"hk-proxy-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    ns = Netns(name)
    base = tmp_path_factory.mktemp("proxy")
    procs = []
    try:
        ns.run("ip", "link", "set", "lo", "up")
        for ip in PODS:
            ns.run("ip", "addr", "add", f"{ip}/32", "dev", "lo")
            procs.append(ns.start("python3", "-c", ECHO, ip, log=base / f"echo-{ip}.log"))
        port = _free_port()
        procs.append(ns.start(str(_hyperkube_bin()), "apiserver", f"--insecure-port={port}",
                              f"--data-dir={base / 'data'}", log=base / "apiserver.log"))
        plane = Cluster(ns, port, base)
        wait_for("the apiserver", lambda: "ok" in plane.kubectl("get", "--raw", "/readyz"))
        plane.start_proxy()
        yield plane
        plane.stop_proxy()
    finally:
        for proc in procs:
            _stop(proc)
        subprocess.run(["ip", "netns", "del", name])
        for log in base.glob("*.log"):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def service(affinity: str = "None") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": CLUSTER_IP, "sessionAffinity": affinity,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}}


def slice_of(ready: dict[str, bool]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ok}} for ip, ok in ready.items()]}


def answers(cluster: Cluster, ip: str = CLUSTER_IP, port: int = 80, tries: int = 24) -> set[str]:
    return {cluster.ns.ask(ip, port) for _ in range(tries)}


def test_a_cluster_ip_balances_over_ready_endpoints_and_rejects_without_them(cluster: Cluster):
    cluster.apply(service())
    cluster.apply(slice_of({PODS[0]: True, PODS[1]: True}))
    wait_for("both endpoints to answer on the cluster IP", lambda: answers(cluster) == set(PODS))
    # NodePort, on an address of this node.
    assert answers(cluster, PODS[0], 30080) == set(PODS)
    # A not-ready endpoint leaves the rotation.
    cluster.apply(slice_of({PODS[0]: True, PODS[1]: False}))
    wait_for("only the ready endpoint to answer", lambda: answers(cluster) == {PODS[0]})
    # Client affinity keeps one client on one endpoint.
    cluster.apply(slice_of({PODS[0]: True, PODS[1]: True}))
    cluster.apply(service(affinity="ClientIP"))
    wait_for("client affinity", lambda: "--rcheck" in cluster.nat())
    assert len(answers(cluster)) == 1
    cluster.apply(service())
    # No endpoints: refused at once, not a timeout.
    cluster.apply(slice_of({}))
    wait_for("connections to be refused", lambda: answers(cluster, tries=1) == {"refused"})


def test_rules_heal_and_survive_a_restart_without_duplicates_or_dropped_connections_then_clean_up(cluster: Cluster):
    cluster.apply(service())
    cluster.apply(slice_of({PODS[0]: True}))
    wait_for("the endpoint to answer", lambda: answers(cluster, tries=1) == {PODS[0]})
    # Someone flushes the proxy's chain: the periodic sync writes it again.
    cluster.ns.run("iptables", "-t", "nat", "-F", "KUBE-SERVICES")
    wait_for("the rules to heal", lambda: answers(cluster, tries=1) == {PODS[0]}, timeout=10)
    # A cluster IP without rules stays on this host: the service range goes to the dummy device.
    route = cluster.ns.run("ip", "route", "get", "10.0.0.99")
    assert "dev hyperkube0" in route, route
    health = cluster.ns.run("python3", "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:10256/healthz').status)")
    assert health.strip() == "200"
    metrics = cluster.ns.run("python3", "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:10249/metrics').read().decode())")
    assert "kubeproxy_sync_proxy_rules_duration_seconds_count" in metrics
    before = cluster.nat()
    chat = subprocess.Popen(["ip", "netns", "exec", cluster.ns.name, "python3", "-c", CHAT, CLUSTER_IP, "80"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert chat.stdout.readline().strip() == PODS[0]
        cluster.stop_proxy()
        cluster.start_proxy()
        wait_for("the restarted proxy's rules", lambda: answers(cluster, tries=1) == {PODS[0]})
        # The connection made before the restart still carries data: conntrack keeps its NAT.
        chat.stdin.write("still here\n")
        chat.stdin.flush()
        assert chat.stdout.readline().strip() == "still here"
    finally:
        _stop(chat)
    after = cluster.nat()
    assert after.count("-j KUBE-SERVICES") == before.count("-j KUBE-SERVICES") == 2, after
    assert sorted(l for l in after.splitlines() if l.startswith(":KUBE")) == sorted(
        l for l in before.splitlines() if l.startswith(":KUBE"))
    cluster.stop_proxy()
    cluster.ns.run(str(_hyperkube_bin()), "proxy", "--cleanup")
    assert "KUBE-" not in cluster.ns.run("iptables-save"), cluster.ns.run("iptables-save")
    assert "hyperkube0" not in cluster.ns.run("ip", "link")
    cluster.start_proxy()


def test_a_failed_restore_keeps_the_last_good_rules_says_which_line_and_retries(cluster: Cluster):
    cluster.apply(service())
    cluster.apply(slice_of({PODS[0]: True}))
    wait_for("the endpoint to answer", lambda: answers(cluster, tries=1) == {PODS[0]})
    # A stand-in iptables-restore that refuses while a flag file exists, as a kernel without a
    # needed module would, and otherwise runs the real one.
    fake = cluster.base / "fakebin"
    fake.mkdir(exist_ok=True)
    flag = cluster.base / "refuse"
    real = subprocess.run(["sh", "-c", "command -v iptables-restore"], capture_output=True, text=True).stdout.strip()
    (fake / "iptables-restore").write_text(
        f"#!/bin/sh\nif [ -e {flag} ]; then echo 'iptables-restore: line 3 failed' >&2; exit 1; fi\nexec {real} \"$@\"\n")
    (fake / "iptables-restore").chmod(0o755)
    cluster.stop_proxy()
    cluster.start_proxy(path=f"{fake}:{os.environ['PATH']}")
    wait_for("the proxy to write its rules", lambda: answers(cluster, tries=1) == {PODS[0]})
    flag.touch()
    cluster.apply(slice_of({PODS[1]: True}))
    log = cluster.base / "proxy.log"
    wait_for("the failure to be logged with its line",
             lambda: "line 3 failed (the line: " in log.read_text(), timeout=15)
    assert answers(cluster, tries=4) == {PODS[0]}, "the last good rules stay while writes fail"
    flag.unlink()
    wait_for("the retry to write the new rules", lambda: answers(cluster, tries=1) == {PODS[1]}, timeout=15)
    metrics = cluster.ns.run("python3", "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:10249/metrics').read().decode())")
    failures = [l for l in metrics.splitlines() if l.startswith("kubeproxy_sync_proxy_rules_iptables_restore_failures_total")]
    assert failures and float(failures[0].split()[-1]) >= 1, failures
    cluster.stop_proxy()
    cluster.start_proxy()
