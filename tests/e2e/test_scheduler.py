"""The scheduler (`hyperkube scheduler`) seen through kubectl 1.37.

On the control plane's own apiserver, with the scheduler running: a pod created with
`kubectl apply` gets a node, and a pod too big for every node stays Pending while
`kubectl describe pod` shows why (the FailedScheduling event and the PodScheduled condition).
Other test files may register nodes on the same control plane, so the checks do not depend on
how many nodes there are.
"""

import json
import re

import pytest

from conftest import ControlPlane
from e2e_util import Kubectl, register_node, table_rows_by_name, unique, wait_for


@pytest.fixture
def namespace(scheduler: ControlPlane, scheduler_kubectl: Kubectl) -> str:
    name = unique("sched")
    scheduler_kubectl("create", "namespace", name)
    return name


def pod(name: str, cpu: str, node_selector: dict[str, str] | None = None) -> str:
    spec = {
        "containers": [{"name": "app", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def test_a_pod_gets_a_node(scheduler: ControlPlane, scheduler_kubectl: Kubectl, namespace: str):
    node = unique("node")
    register_node(scheduler.api, node, cpu="4", memory="8Gi")
    scheduler_kubectl("apply", "-n", namespace, "-f", "-", input=pod("web", "100m", {"kubernetes.io/hostname": node}))

    def bound():
        got = scheduler_kubectl.json("get", "pod", "web", "-n", namespace)
        return got["spec"].get("nodeName")

    assert wait_for("pod web to be bound", bound) == node
    _, rows = table_rows_by_name(scheduler_kubectl("get", "pod", "web", "-n", namespace, "-o", "wide").stdout)
    assert rows["web"]["NODE"] == node, rows
    conditions = scheduler_kubectl.json("get", "pod", "web", "-n", namespace)["status"]["conditions"]
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in conditions), conditions


def test_a_pod_too_big_stays_pending_and_describe_says_why(
    scheduler: ControlPlane, scheduler_kubectl: Kubectl, namespace: str
):
    register_node(scheduler.api, unique("node"), cpu="2", memory="4Gi")
    scheduler_kubectl("apply", "-n", namespace, "-f", "-", input=pod("huge", "1000"))

    # Nodes of other tests may add reasons of their own ("1 node(s) had untolerated taint ...").
    reason = re.compile(
        r"Warning\s+FailedScheduling\s+.*default-scheduler\s+0/(\d+) nodes are available: (?:.*, )?(\d+) Insufficient cpu"
    )

    def described():
        out = scheduler_kubectl("describe", "pod", "huge", "-n", namespace).stdout
        return out if reason.search(out) else None

    out = wait_for("kubectl describe to show FailedScheduling", described)
    nodes, insufficient = map(int, reason.search(out).groups())
    assert 1 <= insufficient <= nodes, out
    assert re.search(r"^Status:\s+Pending$", out, re.M), out
    assert re.search(r"^Node:\s+<none>$", out, re.M), out
    assert re.search(r"^\s+PodScheduled\s+False\s*$", out, re.M), out
    got = scheduler_kubectl.json("get", "pod", "huge", "-n", namespace)
    assert "nodeName" not in got["spec"], got["spec"]
    condition = next(c for c in got["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (condition["status"], condition["reason"]) == ("False", "Unschedulable"), condition
