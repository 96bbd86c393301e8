"""`hyperkube up --etcd-servers`: the local cluster keeps its objects in a real etcd, under
upstream's key layout, and they outlive the apiserver container and the cluster itself (the etcd
is the user's; `down --purge` leaves it alone). Needs what test_up.py needs, plus Debian's etcd.
"""

import base64
import uuid

import pytest
import requests

from conftest import _free_port, _make_kubectl, _start_etcd, docker
from e2e_util import wait_for
from test_up import Local


@pytest.fixture(scope="module")
def etcd_url(tmp_path_factory: pytest.TempPathFactory):
    yield from _start_etcd(tmp_path_factory)


def _etcd_has(etcd_url: str, key: str) -> bool:
    """Whether `key` exists, asked through etcd's JSON gateway."""
    body = {"key": base64.b64encode(key.encode()).decode(), "count_only": True}
    reply = requests.post(f"{etcd_url}/v3/kv/range", json=body, timeout=10)
    reply.raise_for_status()
    return int(reply.json().get("count", 0)) == 1


def test_up_on_etcd_keeps_the_clusters_objects_in_etcd(etcd_url: str, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("up-etcd")
    (base / "home").mkdir()
    cluster = Local(f"hk-etcd-{uuid.uuid4().hex[:6]}", _free_port(), base / "data", base / "home")
    key = "/registry/configmaps/default/kept-in-etcd"
    try:
        up = cluster.run("up", f"--etcd-servers={etcd_url}", "--timeout=240s")
        assert up.returncode == 0, up.stdout + up.stderr
        kubectl = _make_kubectl("1.37", cluster.home / ".kube" / "config", tmp_path_factory)
        nodes = kubectl.json("get", "nodes")["items"]
        assert [c["status"] for n in nodes for c in n["status"]["conditions"] if c["type"] == "Ready"] == ["True"]

        kubectl("create", "configmap", "kept-in-etcd", "--from-literal=where=etcd")
        assert _etcd_has(etcd_url, key)
        assert not list((base / "data").rglob("*.redb")), "no embedded store beside etcd"

        apiserver = docker("ps", "-q", "--filter", "label=io.kubernetes.pod.namespace=kube-system",
                           "--filter", "label=io.kubernetes.container.name=apiserver")
        docker("kill", apiserver)
        got = wait_for("the restarted apiserver to serve the configmap from etcd", lambda: kubectl.json(
            "get", "configmap", "kept-in-etcd", check=False) if apiserver not in docker(
                "ps", "-q", "--filter", "label=io.kubernetes.container.name=apiserver") else None, timeout=120)
        assert got["data"] == {"where": "etcd"}
    finally:
        down = cluster.run("down", "--purge")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (cluster.home / ".kube" / "config").exists(), "the kubeconfig up made, with nothing else in it, goes"
    assert _etcd_has(etcd_url, key), "down --purge leaves the user's etcd alone"
