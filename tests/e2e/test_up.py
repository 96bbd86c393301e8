"""The local cluster as a user gets it: `hyperkube up` starts a containerized kubelet that runs
the control plane, the proxy and the cluster DNS as static pods; kubectl 1.37 then runs a
Deployment, exposes it and reaches it by name from another pod; `up` again changes nothing;
`hyperkube down` removes exactly what was made. Needs root, the Docker engine and the images
images/hyperkube/build.sh makes (scripts/test provides them); runs on the host's network, with
its own port, data directory and kubeconfig.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import BUSYBOX, _free_port, _hyperkube_bin, _make_kubectl, docker
from e2e_util import Kubectl, wait_for


class Local:
    def __init__(self, name: str, port: int, data: Path, home: Path):
        self.name, self.port, self.data, self.home = name, port, data, home

    def run(self, command: str, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = [str(_hyperkube_bin()), command, f"--name={self.name}", f"--port={self.port}", f"--data-dir={self.data}", *flags]
        env = {**os.environ, "HOME": str(self.home)}
        env.pop("KUBECONFIG", None)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        print(f"$ {' '.join(argv)}\n{out.stdout}{out.stderr}")
        return out

    def kubelet_id(self) -> str:
        return docker("ps", "-q", "--filter", f"label=io.hyperkube.cluster={self.name}")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("up")
    home = base / "home"
    (home / ".kube").mkdir(parents=True)
    # Someone else's context, which up and down must leave alone.
    (home / ".kube" / "config").write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: prod, cluster: {server: 'https://prod.example'}}]\n"
        "users: [{name: prod, user: {token: keep-me}}]\ncontexts: [{name: prod, context: {cluster: prod, user: prod}}]\n"
        "current-context: prod\n")
    cluster = Local(f"hk-e2e-{uuid.uuid4().hex[:6]}", _free_port(), base / "data", home)
    up = cluster.run("up", "--timeout=240s")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        cluster.up_output = up.stdout
        yield cluster
    finally:
        cluster.run("down", "--purge")


@pytest.fixture(scope="module")
def kubectl(local: Local, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return _make_kubectl("1.37", local.home / ".kube" / "config", tmp_path_factory)


def test_up_says_what_it_waits_for_and_writes_a_context_beside_the_others(local: Local, kubectl: Kubectl):
    for stage in ("the apiserver to answer", "the node to be Ready", "the system pods to run"):
        assert f"waiting for {stage}" in local.up_output, local.up_output
    config = (local.home / ".kube" / "config").read_text()
    assert "keep-me" in config and "prod.example" in config, config
    assert kubectl("config", "current-context").stdout.strip() == local.name
    nodes = kubectl.json("get", "nodes")["items"]
    assert [c["status"] for n in nodes for c in n["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    pods = {p["metadata"]["name"].rsplit("-", 1)[0]: p["status"]["phase"]
            for p in kubectl.json("get", "pods", "-n", "kube-system")["items"]}
    assert pods == {"k8s-master": "Running", "kube-proxy": "Running", "kube-dns": "Running"}, pods
    # The kubelet container asks for nothing more than it needs.
    inspect = json.loads(docker("inspect", local.kubelet_id()))[0]["HostConfig"]
    assert inspect["Privileged"] is False and not inspect["Devices"], inspect
    assert inspect["RestartPolicy"]["Name"] == "always"


def test_a_deployment_is_reached_by_its_service_name_from_another_pod(local: Local, kubectl: Kubectl):
    kubectl("create", "deployment", "web", f"--image={BUSYBOX}", "--",
            "sh", "-c", "echo hello-through-the-service > /tmp/index.html && exec httpd -f -p 8080 -h /tmp")
    kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    kubectl("rollout", "status", "deployment/web", "--timeout=120s")
    kubectl("run", "client", f"--image={BUSYBOX}", "--restart=Never", "--",
            "sh", "-c", "until wget -q -O- http://web/; do sleep 1; done")
    wait_for("the client to get the page through DNS and the proxy",
             lambda: kubectl.json("get", "pod", "client")["status"].get("phase") == "Succeeded", timeout=120)
    assert "hello-through-the-service" in kubectl("logs", "client").stdout


def test_up_again_changes_nothing_and_status_reports(local: Local):
    before = local.kubelet_id()
    again = local.run("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "running already" in again.stdout
    assert local.kubelet_id() == before, "the same kubelet container"
    status = local.run("status")
    assert status.returncode == 0
    assert "apiserver" in status.stdout and "ready" in status.stdout, status.stdout
    assert "pod kube-system/kube-dns" in status.stdout


def test_down_removes_what_up_made_and_keeps_the_data(local: Local):
    down = local.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not docker("ps", "-aq", "--filter", f"label=io.hyperkube.cluster={local.name}")
    node = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip().lower()
    assert not docker("ps", "-aq", "--filter", f"label=io.hyperkube.node={node}")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "KUBE-" not in rules
    assert "hyperkube0" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert " /var/lib/kubelet " not in Path("/proc/self/mountinfo").read_text()
    config = (local.home / ".kube" / "config").read_text()
    assert local.name not in config and "keep-me" in config, config
    assert (local.data / "data").is_dir(), "the store stays without --purge"
    # Down again, and on a cluster that is gone, is harmless.
    assert local.run("down").returncode == 0
