"""The kubelet with the apiserver, on the real Docker engine, driven by kubectl 1.37.

A kubelet registers its node against the session's apiserver and runs the pods bound to it:
their status shows in `kubectl get pod -o yaml`, `kubectl logs` (and `-f`) reach the
containers, deleting a pod stops its containers within its grace period, the node is Ready and
its Lease renews, and a static pod shows up as a mirror pod. Needs the Docker engine and the
images images/hyperkube/build.sh makes (scripts/test provides both).
"""

import functools
import json
import re
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, _make_kubectl, docker, run_kubelet
import e2e_util
from e2e_util import Kubectl

# Containers start on a real engine, slower under load: a minute unless a test says otherwise.
wait_for = functools.partial(e2e_util.wait_for, timeout=60.0)


@pytest.fixture(scope="module")
def k137(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return _make_kubectl("1.37", kubeconfig, tmp_path_factory)


@pytest.fixture(scope="module")
def node(apiserver: str, tmp_path_factory: pytest.TempPathFactory):
    """A kubelet on the Docker engine, registered as a fresh node, with one static pod."""
    static = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: static-web}\nspec:\n"
        "  terminationGracePeriodSeconds: 1\n"
        f"  containers: [{{name: web, image: \"{BUSYBOX}\", command: [sleep, \"3600\"]}}]\n"
    )
    yield from run_kubelet(apiserver, tmp_path_factory, static_pod=static)


def test_the_node_is_ready_and_its_lease_renews(k137: Kubectl, node: str):
    ready = wait_for("the node to be Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in k137.json("get", "node", node)["status"]["conditions"]
    ))
    assert ready
    info = k137.json("get", "node", node)["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("docker://"), info
    first = wait_for("the lease", lambda: k137.json("get", "lease", node, "-n", "kube-node-lease")["spec"]["renewTime"])
    renewed = wait_for("the lease to renew", lambda: (
        t := k137.json("get", "lease", node, "-n", "kube-node-lease")["spec"]["renewTime"]) != first and t, timeout=30)
    assert renewed > first
    out = k137("get", "nodes").stdout
    assert re.search(rf"^{node}\s+Ready\s", out, re.M), out


def test_a_static_pod_shows_up_as_a_mirror_pod(k137: Kubectl, node: str):
    name = f"static-web-{node}"
    pod = wait_for("the mirror pod to run", lambda: (
        p := k137.json("get", "pod", name, "-n", "default"))["status"].get("phase") == "Running" and p)
    assert "kubernetes.io/config.mirror" in pod["metadata"]["annotations"]
    assert pod["spec"]["nodeName"] == node
    # The kubelet sees its mirror pod in the apiserver too; it must not run it a second time.
    time.sleep(3)
    running = docker("ps", "-q", "--filter", f"label=io.hyperkube.node={node}", "--filter", "label=io.kubernetes.container.name=web")
    assert len(running.split()) == 1, running
    # Deleting the mirror does not stop the static pod: the kubelet makes a new mirror.
    k137("delete", "pod", name, "-n", "default", "--wait=false")
    wait_for("a new mirror pod", lambda: (
        p := k137.json("get", "pod", name, "-n", "default"))["metadata"]["uid"] != pod["metadata"]["uid"]
        and not p["metadata"].get("deletionTimestamp") and p)
    again = docker("ps", "-q", "--filter", f"label=io.hyperkube.node={node}", "--filter", "label=io.kubernetes.container.name=web")
    assert again == running, "the static pod's container kept running"


def test_a_bound_pod_runs_logs_and_stops_within_its_grace_period(k137: Kubectl, node: str, namespace: str):
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker", "namespace": namespace},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 3,
            "containers": [{"name": "tick", "image": BUSYBOX, "command": [
                "sh", "-c", "echo started; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"]}],
        },
    }
    k137("apply", "-f", "-", input=json.dumps(manifest))
    pod = wait_for("the pod to run", lambda: (
        p := k137.json("get", "pod", "ticker", "-n", namespace))["status"].get("phase") == "Running" and p)
    status = pod["status"]
    assert status["podIP"] and status["hostIP"] == "127.0.0.1", status
    container = status["containerStatuses"][0]
    assert container["ready"] is True and container["restartCount"] == 0, container
    assert container["containerID"].startswith("docker://"), container
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True", status["conditions"]
    yaml_out = k137("get", "pod", "ticker", "-n", namespace, "-o", "yaml").stdout
    assert "phase: Running" in yaml_out

    assert "started" in wait_for("the log", lambda: k137("logs", "ticker", "-n", namespace).stdout)
    with k137.popen("logs", "-f", "ticker", "-n", namespace) as follow:
        follow.wait_for_line(lambda line: line == "started", what="the first line")
        first = int(follow.wait_for_line(lambda line: line.startswith("tick"), what="a tick").split()[1])
        # Lines written after the request started keep arriving on the same stream.
        follow.wait_for_line(lambda line: line == f"tick {first + 6}", what="six more ticks")

    container_id = container["containerID"].removeprefix("docker://")
    started = time.monotonic()
    k137("delete", "pod", "ticker", "-n", namespace, "--timeout=60s")
    took = time.monotonic() - started
    assert docker("ps", "-q", "--filter", f"id={container_id}") == "", "the container is stopped"
    assert took < 3 + 10, f"deletion took {took:.1f}s with a 3s grace period"
    k137.fails("get", "pod", "ticker", "-n", namespace)


def test_a_pod_reads_configmaps_and_secrets_as_files_and_env(k137: Kubectl, node: str, namespace: str):
    k137("create", "configmap", "settings", "-n", namespace, "--from-literal=greeting=hello", "--from-literal=mode=one")
    k137("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cret")
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader", "namespace": namespace, "labels": {"app": "reader"}},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "reader", "image": BUSYBOX,
                "command": ["sh", "-c", "echo env $GREETING $PASSWORD $POD_NAME; "
                            "while true; do echo file $(cat /config/mode) $(cat /secret/password) $(cat /info/labels); sleep 0.5; done"],
                "env": [
                    {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/config"},
                    {"name": "secret", "mountPath": "/secret", "readOnly": True},
                    {"name": "info", "mountPath": "/info"},
                ],
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "settings"}},
                {"name": "secret", "secret": {"secretName": "creds"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            ],
        },
    }
    k137("apply", "-f", "-", input=json.dumps(manifest))
    wait_for("the pod to run", lambda: k137.json("get", "pod", "reader", "-n", namespace)["status"].get("phase") == "Running")
    logs = wait_for("the files", lambda: (out := k137("logs", "reader", "-n", namespace).stdout) and "file one" in out and out)
    assert "env hello s3cret reader" in logs, logs
    assert 'file one s3cret app="reader"' in logs, logs
    k137("patch", "configmap", "settings", "-n", namespace, "--type=merge", "-p", '{"data":{"mode":"two"}}')
    wait_for("the changed ConfigMap in the file", lambda: "file two" in k137("logs", "reader", "-n", namespace).stdout, timeout=30)
    k137("delete", "pod", "reader", "-n", namespace, "--timeout=30s")


def test_a_missing_configmap_leaves_the_pod_waiting_with_a_failed_mount_event(k137: Kubectl, node: str, namespace: str):
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waiting", "namespace": namespace},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "does-not-exist"}}],
        },
    }
    k137("apply", "-f", "-", input=json.dumps(manifest))
    state = wait_for("the container to wait", lambda: (
        s := k137.json("get", "pod", "waiting", "-n", namespace)["status"].get("containerStatuses")) and s[0]["state"].get("waiting"))
    assert state["reason"] == "ContainerCreating", state
    event = wait_for("a FailedMount event", lambda: next((
        e for e in k137.json("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=waiting")["items"]
        if e["reason"] == "FailedMount"), None))
    assert "does-not-exist" in event["message"], event
    assert event["type"] == "Warning" and event["source"]["component"] == "kubelet", event
    described = k137("describe", "pod", "waiting", "-n", namespace).stdout
    assert "FailedMount" in described, described
    k137("create", "configmap", "does-not-exist", "-n", namespace, "--from-literal=k=v")
    wait_for("the pod to run once the ConfigMap exists", lambda: k137.json("get", "pod", "waiting", "-n", namespace)["status"].get("phase") == "Running")
    k137("delete", "pod", "waiting", "-n", namespace, "--timeout=30s")
