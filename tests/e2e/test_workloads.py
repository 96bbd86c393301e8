"""Deployments, ReplicaSets and ReplicationControllers through kubectl 1.37, against the control
plane's apiserver and `hyperkube controller-manager`. No kubelet runs: the test stands in for
one, marking every pod of its namespace Running and Ready through the status subresource.

Covers create, scale, `rollout status`, `rollout history`, `rollout undo`, `rollout restart`,
pod replacement, scaling to zero and back, delete, and a restarted controller manager.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from e2e_util import Api, Kubectl, unique, wait_for

ROLLOUT_TIMEOUT = "90s"


class StandInKubelet:
    """Marks each pod of `namespace` Running and Ready once it appears, from a thread, until
    stopped. A pod deleted before it is marked is skipped."""

    def __init__(self, base_url: str, namespace: str):
        self.api = Api(base_url)  # its own session: requests sessions are not shared across threads
        self.namespace = namespace
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "StandInKubelet":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopped.wait(0.2):
            r = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods")
            if r.status_code != 200:
                continue
            for pod in r.json().get("items") or []:
                conditions = (pod.get("status") or {}).get("conditions") or []
                if pod["metadata"].get("deletionTimestamp") or any(
                    c["type"] == "Ready" and c["status"] == "True" for c in conditions
                ):
                    continue
                self._mark(pod["metadata"]["name"])

    def _mark(self, name: str) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"phase": "Running", "startTime": now, "podIP": "10.244.0.10", "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": now} for t in ("Ready", "ContainersReady")]}
        self.api.patch(f"/api/v1/namespaces/{self.namespace}/pods/{name}/status", json={"status": status},
                       headers={"Content-Type": "application/merge-patch+json"})


@pytest.fixture
def plane_namespace(control_plane) -> str:
    name = unique("workloads")
    control_plane.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": name}})
    return name


def pods(k: Kubectl, ns: str, selector: str) -> list[dict]:
    items = k.json("get", "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def images(k: Kubectl, ns: str, selector: str) -> set[str]:
    return {p["spec"]["containers"][0]["image"] for p in pods(k, ns, selector)}


def rolled_out(k: Kubectl, ns: str, name: str) -> None:
    out = k("rollout", "status", f"deployment/{name}", "-n", ns, f"--timeout={ROLLOUT_TIMEOUT}",
            timeout=120).stdout
    assert "successfully rolled out" in out, out


def history(k: Kubectl, ns: str, name: str) -> dict[str, str]:
    """`kubectl rollout history` as revision -> change cause."""
    out = k("rollout", "history", f"deployment/{name}", "-n", ns).stdout
    rows = [line.split(None, 1) for line in out.splitlines()[2:] if line.strip()]
    return {row[0]: (row[1].strip() if len(row) > 1 else "") for row in rows}


def test_deployment_lifecycle_through_kubectl(control_plane, plane_kubectl: Kubectl, plane_namespace: str):
    k, ns = plane_kubectl, plane_namespace
    with StandInKubelet(control_plane.apiserver.url, ns):
        k("create", "deployment", "web", "--image=busybox:1", "--replicas=3", "-n", ns)
        rolled_out(k, ns, "web")
        assert len(pods(k, ns, "app=web")) == 3
        rs = k.json("get", "replicasets", "-n", ns, "-l", "app=web")["items"]
        assert len(rs) == 1
        assert rs[0]["metadata"]["name"] == "web-" + rs[0]["metadata"]["labels"]["pod-template-hash"]
        d = k.json("get", "deployment", "web", "-n", ns)
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        reasons = {c["type"]: c["reason"] for c in d["status"]["conditions"]}
        assert reasons == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}

        k("scale", "deployment", "web", "--replicas=5", "-n", ns)
        rolled_out(k, ns, "web")
        assert len(pods(k, ns, "app=web")) == 5

        k("annotate", "deployment", "web", "kubernetes.io/change-cause=to busybox 2", "-n", ns)
        k("set", "image", "deployment/web", "busybox=busybox:2", "-n", ns)
        rolled_out(k, ns, "web")
        assert images(k, ns, "app=web") == {"busybox:2"}
        revisions = history(k, ns, "web")
        assert list(revisions) == ["1", "2"], revisions
        assert revisions["2"] == "to busybox 2"

        k("rollout", "undo", "deployment/web", "-n", ns)
        rolled_out(k, ns, "web")
        assert images(k, ns, "app=web") == {"busybox:1"}
        assert list(history(k, ns, "web")) == ["2", "3"], "revision 1 came back as 3"
        assert len(k.json("get", "replicasets", "-n", ns, "-l", "app=web")["items"]) == 2

        k("rollout", "restart", "deployment/web", "-n", ns)
        rolled_out(k, ns, "web")
        restarted = pods(k, ns, "app=web")
        assert len(restarted) == 5
        assert all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in restarted)
        assert list(history(k, ns, "web")) == ["2", "3", "4"]

        victim = restarted[0]["metadata"]["name"]
        k("delete", "pod", victim, "-n", ns)
        wait_for("the deleted pod replaced", lambda: len(pods(k, ns, "app=web")) == 5
                 and victim not in {p["metadata"]["name"] for p in pods(k, ns, "app=web")})

        k("scale", "deployment", "web", "--replicas=0", "-n", ns)
        wait_for("no pods at 0 replicas", lambda: not pods(k, ns, "app=web"))
        k("scale", "deployment", "web", "--replicas=2", "-n", ns)
        rolled_out(k, ns, "web")
        assert len(pods(k, ns, "app=web")) == 2

        k("delete", "deployment", "web", "-n", ns)
        wait_for("the deployment gone", lambda: "web" not in k("get", "deployments", "-n", ns, "-o", "name").stdout)


def test_replica_sets_and_replication_controllers_through_kubectl(
    control_plane, plane_kubectl: Kubectl, plane_namespace: str
):
    k, ns = plane_kubectl, plane_namespace
    rs = """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: front}
spec:
  replicas: 2
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front}}
    spec: {containers: [{name: c, image: busybox:1}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: back}
spec:
  replicas: 1
  selector: {app: back}
  template:
    metadata: {labels: {app: back}}
    spec: {containers: [{name: c, image: busybox:1}]}
"""
    with StandInKubelet(control_plane.apiserver.url, ns):
        k("apply", "-n", ns, "-f", "-", input=rs)
        k("scale", "rs", "front", "--replicas=4", "-n", ns)
        k("scale", "rc", "back", "--replicas=3", "-n", ns)

        def ready(kind: str, name: str, want: int) -> bool:
            status = k.json("get", kind, name, "-n", ns).get("status") or {}
            return status.get("replicas") == want and status.get("readyReplicas") == want

        wait_for("4 ready ReplicaSet pods", lambda: ready("rs", "front", 4))
        wait_for("3 ready ReplicationController pods", lambda: ready("rc", "back", 3))
        owners = {p["metadata"]["ownerReferences"][0]["kind"] for p in pods(k, ns, "app in (front,back)")}
        assert owners == {"ReplicaSet", "ReplicationController"}
        row = k("get", "rs", "front", "-n", ns, "--no-headers").stdout.split()
        assert row[:4] == ["front", "4", "4", "4"], row


def test_a_restarted_controller_manager_makes_no_extra_pods(
    control_plane, plane_kubectl: Kubectl, plane_namespace: str
):
    k, ns = plane_kubectl, plane_namespace
    k("create", "deployment", "steady", "--image=busybox:1", "--replicas=4", "-n", ns)
    wait_for("4 pods", lambda: len(pods(k, ns, "app=steady")) == 4)
    before = {p["metadata"]["name"] for p in pods(k, ns, "app=steady")}

    old = control_plane.components["controller-manager"]
    os.kill(old.pid, signal.SIGTERM)
    old.wait(timeout=30)
    control_plane.start("controller-manager", "--leader-elect=false")

    # Something for the new manager to do: once it has, it has also looked at the old pods.
    k("scale", "deployment", "steady", "--replicas=5", "-n", ns)
    wait_for("5 pods", lambda: len(pods(k, ns, "app=steady")) == 5)
    after = {p["metadata"]["name"] for p in pods(k, ns, "app=steady")}
    assert before < after and len(after - before) == 1, (before, after)
    wait_for("the new manager's status", lambda: (k.json("get", "rs", "-n", ns, "-l", "app=steady")["items"][0]
                                                 .get("status", {}).get("replicas")) == 5)
    assert len(pods(k, ns, "app=steady")) == 5
