"""The whole control plane with a real kubelet, driven by kubectl 1.37: a Deployment turns
into a ReplicaSet and pods (controller manager), the pods are bound to the kubelet's node
(scheduler) and run as containers on the Docker engine (kubelet), their Service gets their
addresses (endpoints controller), and deleting the namespace removes it all (namespace
controller and kubelet). Needs the Docker engine and the images images/hyperkube/build.sh
makes (scripts/test provides both).
"""

import functools
import json

import pytest

import e2e_util
from conftest import BUSYBOX, ControlPlane, docker, run_kubelet
from e2e_util import Kubectl, unique

wait_for = functools.partial(e2e_util.wait_for, timeout=90.0)


@pytest.fixture(scope="module")
def node(scheduler: ControlPlane, tmp_path_factory: pytest.TempPathFactory):
    yield from run_kubelet(scheduler.apiserver.url, tmp_path_factory)


def running_pods(kubectl: Kubectl, namespace: str) -> list[dict]:
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
    return [p for p in pods if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]]


def containers(namespace: str) -> list[str]:
    """The running app containers of pods in `namespace` (not their pause containers)."""
    return docker(
        "ps", "-q", "--filter", f"label=io.kubernetes.pod.namespace={namespace}",
        "--filter", "label=io.kubernetes.docker.type=container",
    ).split()


def test_a_deployment_runs_on_the_node_and_goes_with_its_namespace(
    scheduler: ControlPlane, node: str, scheduler_kubectl: Kubectl
):
    k = scheduler_kubectl
    ns = unique("cluster")
    k("create", "namespace", ns)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": BUSYBOX, "command": ["sleep", "3600"],
                                    "ports": [{"containerPort": 8080, "name": "http"}]}],
                },
            },
        },
    }
    k("apply", "-f", "-", input=json.dumps(deployment))
    k("rollout", "status", "deployment/web", "-n", ns, "--timeout=120s")
    pods = wait_for("two running pods", lambda: len(running_pods(k, ns)) == 2 and running_pods(k, ns))
    assert {p["spec"]["nodeName"] for p in pods} == {node}, "the scheduler bound them to the kubelet's node"
    assert all(p["status"].get("podIP") for p in pods), pods
    assert len(containers(ns)) == 2, "one container per pod on the engine"

    # The Service's endpoints are the pods' addresses.
    k("expose", "deployment", "web", "-n", ns, "--port=80", "--target-port=http")
    ips = sorted(p["status"]["podIP"] for p in pods)
    wait_for("the endpoints to list both pods", lambda: sorted(
        a["ip"] for s in k.json("get", "endpoints", "web", "-n", ns).get("subsets", [])
        for a in s.get("addresses", [])) == ips)

    # A deleted pod is replaced, and the replacement runs.
    gone = pods[0]["metadata"]["name"]
    k("delete", "pod", gone, "-n", ns, "--timeout=60s")
    wait_for("a replacement pod", lambda: len(running_pods(k, ns)) == 2
             and gone not in {p["metadata"]["name"] for p in running_pods(k, ns)})

    # Deleting the namespace stops the containers and removes everything in it.
    k("delete", "namespace", ns, "--timeout=120s")
    wait_for("the containers to stop", lambda: not containers(ns))
    assert k("get", "namespace", ns, check=False).returncode != 0
