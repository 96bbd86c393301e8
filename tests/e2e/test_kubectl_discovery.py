"""kubectl commands that read the API's description of itself, against
hyperkube's apiserver, with kubectl 1.37 and 1.20: api-resources and
api-versions (discovery), explain (OpenAPI v3 for 1.37 with fallback to v2,
OpenAPI v2 for 1.20), get --raw for /metrics, /version and /healthz, and
the "unknown resource type" error.
"""

from __future__ import annotations

import json
import re

import pytest

from e2e_util import Api, Kubectl, configmap, ns_path, parse_table, squash

# name, short names, group/version, namespaced, kind: as upstream serves them.
EXPECTED_RESOURCES = [
    ("pods", "po", "v1", "true", "Pod"),
    ("services", "svc", "v1", "true", "Service"),
    ("configmaps", "cm", "v1", "true", "ConfigMap"),
    ("namespaces", "ns", "v1", "false", "Namespace"),
    ("nodes", "no", "v1", "false", "Node"),
    ("deployments", "deploy", "apps/v1", "true", "Deployment"),
    ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
]


def test_api_resources(kubectl: Kubectl):
    out = kubectl("api-resources").stdout
    header, rows = parse_table(out)
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    by_key = {}
    for row in rows:
        by_key[(row[0], row[2])] = row
    for name, short, gv, namespaced, kind in EXPECTED_RESOURCES:
        row = by_key.get((name, gv))
        assert row is not None, f"{name} ({gv}) missing from api-resources:\n{out}"
        assert short in row[1].split(","), row
        assert row[3] == namespaced, row
        assert row[4] == kind, row

    names = kubectl("api-resources", "-o", "name").stdout.split()
    for expected in ["pods", "services", "configmaps", "namespaces", "deployments.apps"]:
        assert expected in names, names

    namespaced = kubectl("api-resources", "--namespaced=false", "-o", "name").stdout.split()
    assert "namespaces" in namespaced and "nodes" in namespaced
    assert "pods" not in namespaced

    apps = kubectl("api-resources", "--api-group=apps", "-o", "name").stdout.split()
    assert "deployments.apps" in apps
    assert "pods" not in apps


def test_short_names_resolve(kubectl: Kubectl, api: Api, namespace: str):
    """Short names from discovery work as resource types."""
    api.create(ns_path(namespace, "configmaps"), configmap("short", {"a": "b"}))
    for short in ["cm", "configmap", "configmaps"]:
        out = kubectl("get", short, "-n", namespace, "-o", "name").stdout.split()
        assert out == ["configmap/short"], (short, out)
    for short in ["deploy", "svc", "po"]:
        out = kubectl("get", short, "-n", namespace, "-o", "name")
        assert out.stdout.strip() == ""
    assert f"namespace/{namespace}" in kubectl("get", "ns", "-o", "name").stdout.split()


def test_api_versions(kubectl: Kubectl):
    versions = kubectl("api-versions").stdout.split()
    for gv in ["v1", "apps/v1"]:
        assert gv in versions, versions


def test_unknown_resource_type(kubectl: Kubectl):
    out = kubectl.fails("get", "flibbertigibbets")
    assert "the server doesn't have a resource type" in out.stderr, out.stderr


def test_explain_pod_containers(kubectl: Kubectl):
    out = kubectl("explain", "pods.spec.containers").stdout
    text = squash(out)
    assert "KIND: Pod" in text, out
    assert "VERSION: v1" in text, out
    assert "DESCRIPTION:" in text, out
    assert "List of containers belonging to the pod." in text, out
    assert "FIELDS:" in text, out
    # A few fields of Container, with their types.
    for field in ["image <string>", "name <string> -required-"]:
        assert field in text, f"{field!r} not in:\n{out}"
    # OpenAPI v3 explain names the referenced type; the v2 one says Object.
    assert "env <[]EnvVar>" in text or "env <[]Object>" in text, out


def test_explain_deployment(kubectl: Kubectl):
    out = kubectl("explain", "deployment.spec.replicas").stdout
    text = squash(out)
    assert "KIND: Deployment" in text, out
    # 1.37 prints GROUP: apps and VERSION: v1; 1.20 prints VERSION: apps/v1.
    assert re.search(r"VERSION: (apps/)?v1\b", text), out
    assert "replicas <integer>" in text, out
    assert "Number of desired pods." in text, out


def test_explain_unknown_field(kubectl: Kubectl):
    out = kubectl.fails("explain", "pods.spec.nosuchfield")
    assert "nosuchfield" in out.stderr, out.stderr


def test_get_raw_metrics(kubectl: Kubectl):
    # Make sure at least one request has been counted before.
    kubectl("get", "namespaces")
    out = kubectl("get", "--raw", "/metrics").stdout
    assert "# TYPE apiserver_request_total counter" in out
    samples = [l for l in out.splitlines() if l.startswith("apiserver_request_total{")]
    assert samples, out[:2000]
    assert any('verb="LIST"' in s and 'resource="namespaces"' in s for s in samples), "\n".join(samples[:50])


def test_get_raw_version_and_health(kubectl: Kubectl):
    info = json.loads(kubectl("get", "--raw", "/version").stdout)
    for key in ["major", "minor", "gitVersion", "goVersion", "platform"]:
        assert key in info, info
    assert kubectl("get", "--raw", "/healthz").stdout.strip() == "ok"
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    assert kubectl("get", "--raw", "/livez").stdout.strip() == "ok"

    groups = json.loads(kubectl("get", "--raw", "/apis").stdout)
    assert groups["kind"] == "APIGroupList"
    assert "apps" in [g["name"] for g in groups["groups"]]
    core = json.loads(kubectl("get", "--raw", "/api").stdout)
    assert core["kind"] == "APIVersions"
    assert core["versions"] == ["v1"]


@pytest.mark.parametrize("path", ["/api/v1", "/apis/apps/v1"])
def test_raw_resource_list(kubectl: Kubectl, path: str):
    body = json.loads(kubectl("get", "--raw", path).stdout)
    assert body["kind"] == "APIResourceList"
    assert body["groupVersion"] == {"/api/v1": "v1", "/apis/apps/v1": "apps/v1"}[path]
    names = {r["name"] for r in body["resources"]}
    if path == "/api/v1":
        assert {"pods", "services", "configmaps", "namespaces", "pods/status"} <= names
    else:
        assert {"deployments", "deployments/scale", "deployments/status"} <= names
