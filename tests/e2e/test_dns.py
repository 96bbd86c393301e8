"""`hyperkube dns` as a process against the session's apiserver: Services made with kubectl
1.37, asked over UDP (and TCP) with dnspython. A small nameserver of the test's own on loopback
stands in for the host's resolvers (`--nameservers`), so no query leaves the machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from conftest import _free_port, _hyperkube_bin, _make_kubectl, _stop, _tail
from e2e_util import Kubectl, wait_for

UPSTREAM_ANSWER = "192.0.2.10"
DOMAIN = "cluster.local"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Upstream:
    """Answers every A question with UPSTREAM_ANSWER over UDP, and remembers the names."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            query = dns.message.from_wire(wire)
            question = query.question[0]
            self.asked.append(question.name.to_text())
            reply = dns.message.make_response(query)
            if question.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", UPSTREAM_ANSWER))
            self.sock.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


class DnsServer:
    def __init__(self, proc: subprocess.Popen, port: int, healthz_port: int, log: Path, upstream: Upstream):
        self.proc, self.port, self.healthz_port, self.log, self.upstream = proc, port, healthz_port, log, upstream

    def ask(self, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        if tcp:
            return dns.query.tcp(query, "127.0.0.1", port=self.port, timeout=5)
        return dns.query.udp(query, "127.0.0.1", port=self.port, timeout=5)

    def answers(self, name: str, rdtype: str) -> list[str]:
        reply = self.ask(name, rdtype)
        return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)

    def healthz(self) -> int | None:
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{self.healthz_port}/healthz", timeout=2) as resp:
                return resp.status
        except OSError:
            return None

    def logs(self) -> str:
        return f"--- dns log ({self.log}) ---\n{_tail(self.log)}"


@pytest.fixture(scope="module")
def dns_server(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory):
    upstream = Upstream()
    port, healthz_port = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("dns") / "dns.log"
    argv = [
        str(_hyperkube_bin()), "dns", f"--kubeconfig={kubeconfig}", "--dns-bind-address=127.0.0.1",
        f"--dns-port={port}", f"--healthz-port={healthz_port}", f"--nameservers=127.0.0.1:{upstream.port}",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    server = DnsServer(proc, port, healthz_port, log, upstream)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"`{' '.join(argv)}` exited with code {proc.returncode}\n{server.logs()}", pytrace=False)
            return server.healthz() == 200

        wait_for("hyperkube dns to be healthy", healthy)
        yield server
    finally:
        _stop(proc)
        upstream.stop()


@pytest.fixture
def kubectl137(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return _make_kubectl("1.37", kubeconfig, tmp_path_factory)


@pytest.fixture(autouse=True)
def _dns_still_running(request: pytest.FixtureRequest):
    yield
    if "dns_server" in request.fixturenames:
        server: DnsServer = request.getfixturevalue("dns_server")
        assert server.proc.poll() is None, f"hyperkube dns exited during the test\n{server.logs()}"


def test_a_cluster_ip_service_made_with_kubectl_has_a_srv_and_ptr(dns_server, kubectl137, namespace):
    kubectl137("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", namespace)
    ip = kubectl137.json("get", "service", "web", "-n", namespace)["spec"]["clusterIP"]
    name = f"web.{namespace}.svc.{DOMAIN}."
    assert wait_for(f"{name} to resolve", lambda: dns_server.answers(name, "A") == [ip])
    reply = dns_server.ask(name, "A")
    assert reply.flags & dns.flags.AA
    assert reply.answer[0].ttl == 30
    # kubectl names the port "80-8080".
    assert dns_server.answers(f"_80-8080._tcp.{name}", "SRV") == [f"0 100 80 {name}"]
    assert dns_server.answers(dns.reversename.from_address(ip).to_text(), "PTR") == [name]
    # Over TCP the answer is the same.
    assert sorted(rd.to_text() for rd in dns_server.ask(name, "A", tcp=True).answer[0]) == [ip]


def test_a_headless_service_answers_its_ready_endpoints(dns_server, kubectl137, namespace):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": namespace},
               "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}
    endpoints = [
        {"addresses": ["10.244.3.2"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.244.3.3"], "conditions": {"ready": True}},
        {"addresses": ["10.244.3.4"], "hostname": "db-2", "conditions": {"ready": False}},
    ]
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "db-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": "db"}},
              "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
              "endpoints": endpoints}
    kubectl137("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [service, slice_]}))
    name = f"db.{namespace}.svc.{DOMAIN}."
    assert wait_for(f"{name} to resolve", lambda: dns_server.answers(name, "A") == ["10.244.3.2", "10.244.3.3"])
    assert dns_server.answers(f"db-0.{name}", "A") == ["10.244.3.2"]
    assert dns_server.answers(f"_pg._tcp.{name}", "SRV") == [f"0 50 5432 10-244-3-3.{name}", f"0 50 5432 db-0.{name}"]
    assert dns_server.ask(f"db-2.{name}", "A").rcode() == dns.rcode.NXDOMAIN


def test_an_external_name_service_is_a_cname_chased_upstream(dns_server, kubectl137, namespace):
    kubectl137("create", "service", "externalname", "search", "--external-name=search.example", "-n", namespace)
    name = f"search.{namespace}.svc.{DOMAIN}."
    reply = wait_for(f"{name} to resolve", lambda: (r := dns_server.ask(name, "A")).answer and r)
    assert [(rrset.rdtype, [rd.to_text() for rd in rrset]) for rrset in reply.answer] == [
        (dns.rdatatype.CNAME, ["search.example."]),
        (dns.rdatatype.A, [UPSTREAM_ANSWER]),
    ]


def test_unknown_cluster_names_are_nxdomain_and_others_are_forwarded(dns_server, namespace):
    reply = dns_server.ask(f"missing.{namespace}.svc.{DOMAIN}.", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.authority[0].rdtype == dns.rdatatype.SOA
    assert dns_server.answers("www.example.", "A") == [UPSTREAM_ANSWER]
    assert "www.example." in dns_server.upstream.asked
    assert f"missing.{namespace}.svc.{DOMAIN}." not in dns_server.upstream.asked


def test_garbage_gets_formerr_and_the_server_answers_on(dns_server):
    garbage = bytes([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0x00])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(garbage, ("127.0.0.1", dns_server.port))
        wire, _ = s.recvfrom(65535)
    assert wire[:2] == b"\x12\x34"
    assert wire[2] & 0x80, "the reply is a response"
    assert wire[3] & 0x0F == dns.rcode.FORMERR
    assert dns_server.answers(f"dns-version.{DOMAIN}.", "TXT") == ['"1.1.0"']
