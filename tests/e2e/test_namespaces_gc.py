"""Namespace lifecycle, garbage collection and endpoints as a user sees them through
kubectl 1.37, against an apiserver with `hyperkube controller-manager` running (the
`control_plane` fixture): `kubectl delete namespace` empties and removes the namespace,
`kubectl delete --cascade=...` on an owner treats its dependents as upstream's garbage
collector does, and `kubectl get endpoints/endpointslices` follows pod readiness.

The test stands in for kubelets (`register_node`, `mark_pod`); owners and dependents are
ConfigMaps and Secrets linked by ownerReferences, so no workload controller is needed.
"""

from __future__ import annotations

import pytest

from e2e_util import (
    Api,
    Kubectl,
    configmap,
    mark_pod,
    ns_path,
    register_node,
    table_rows_by_name,
    unique,
    wait_for,
)


def new_namespace(kubectl: Kubectl, prefix: str) -> str:
    name = unique(prefix)
    kubectl("create", "namespace", name)
    return name


def owned_by(owner: dict) -> dict:
    meta = owner["metadata"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"], "uid": meta["uid"],
            "blockOwnerDeletion": True}


def with_owner(obj: dict, owner: dict) -> dict:
    obj["metadata"]["ownerReferences"] = [owned_by(owner)]
    return obj


def secret(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {}}


def test_kubectl_delete_namespace_removes_its_content_and_then_the_namespace(control_plane, plane_kubectl):
    api: Api = control_plane.api
    ns = new_namespace(plane_kubectl, "doomed")
    kept = new_namespace(plane_kubectl, "kept")
    for where in (ns, kept):
        api.create(ns_path(where, "configmaps"), configmap("settings", {"k": "v"}))
        api.create(ns_path(where, "secrets"), secret("token"))
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"}}
    api.create(ns_path(ns, "leases", group="coordination.k8s.io/v1"), lease)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    api.create(ns_path(ns, "pods"), pod)

    # kubectl waits until the namespace is gone.
    out = plane_kubectl("delete", "namespace", ns, "--timeout=60s")
    assert f'namespace "{ns}" deleted' in out.stdout, out.describe()
    assert not api.exists(f"/api/v1/namespaces/{ns}")
    for path in (ns_path(ns, "configmaps"), ns_path(ns, "secrets"), ns_path(ns, "pods"),
                 ns_path(ns, "leases", group="coordination.k8s.io/v1")):
        assert api.read(path)["items"] == [], path
    out = plane_kubectl("get", "namespaces", "-o", "name")
    assert f"namespace/{ns}" not in out.stdout.split()
    assert api.exists(ns_path(kept, "configmaps", "settings"))
    assert api.exists(ns_path(kept, "secrets", "token"))


def make_family(api: Api, ns: str) -> dict:
    """An owner ConfigMap with two dependents (a ConfigMap and a Secret) that block its
    foreground deletion."""
    owner = api.create(ns_path(ns, "configmaps"), configmap("owner"))
    api.create(ns_path(ns, "configmaps"), with_owner(configmap("child"), owner))
    api.create(ns_path(ns, "secrets"), with_owner(secret("child-secret"), owner))
    return owner


DEPENDENTS = (("configmaps", "child"), ("secrets", "child-secret"))


def test_kubectl_delete_cascade_background_removes_the_dependents(control_plane, plane_kubectl):
    api: Api = control_plane.api
    ns = new_namespace(plane_kubectl, "gc-background")
    make_family(api, ns)
    plane_kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=background")
    assert not api.exists(ns_path(ns, "configmaps", "owner"))
    for resource, name in DEPENDENTS:
        wait_for(f"{resource}/{name} to be collected",
                 lambda: not api.exists(ns_path(ns, resource, name)))


def test_kubectl_delete_cascade_foreground_removes_the_dependents_first(control_plane, plane_kubectl):
    api: Api = control_plane.api
    ns = new_namespace(plane_kubectl, "gc-foreground")
    make_family(api, ns)
    # kubectl returns once the owner is gone; by then its blocking dependents must be too.
    plane_kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground", "--timeout=60s")
    assert not api.exists(ns_path(ns, "configmaps", "owner"))
    for resource, name in DEPENDENTS:
        assert not api.exists(ns_path(ns, resource, name)), f"{resource}/{name} outlived its owner"


def test_kubectl_delete_cascade_foreground_waits_for_a_dependent_held_by_a_finalizer(control_plane, plane_kubectl):
    api: Api = control_plane.api
    ns = new_namespace(plane_kubectl, "gc-held")
    owner = api.create(ns_path(ns, "configmaps"), configmap("owner"))
    held = with_owner(configmap("held"), owner)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    api.create(ns_path(ns, "configmaps"), held)

    plane_kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground", "--wait=false")
    wait_for("the dependent to be deleted",
             lambda: api.read(ns_path(ns, "configmaps", "held"))["metadata"].get("deletionTimestamp"))
    waiting = plane_kubectl.json("get", "configmap", "owner", "-n", ns)
    assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"], waiting["metadata"]
    assert waiting["metadata"].get("deletionTimestamp"), waiting["metadata"]

    plane_kubectl("patch", "configmap", "held", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for("the owner to go after its dependent", lambda: not api.exists(ns_path(ns, "configmaps", "owner")))
    assert not api.exists(ns_path(ns, "configmaps", "held"))


def test_kubectl_delete_cascade_orphan_keeps_the_dependents_without_the_reference(control_plane, plane_kubectl):
    api: Api = control_plane.api
    ns = new_namespace(plane_kubectl, "gc-orphan")
    make_family(api, ns)
    plane_kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=orphan", "--timeout=60s")
    assert not api.exists(ns_path(ns, "configmaps", "owner"))
    for resource, name in DEPENDENTS:
        meta = api.read(ns_path(ns, resource, name))["metadata"]
        assert not meta.get("ownerReferences"), meta
        assert "deletionTimestamp" not in meta, meta


def web_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]}}


def test_kubectl_get_endpoints_and_endpointslices_follow_pod_readiness(control_plane, plane_kubectl):
    api: Api = control_plane.api
    ns = new_namespace(plane_kubectl, "endpoints")
    node = unique("node")
    register_node(api, node)
    for name in ("ready", "unready"):
        api.create(ns_path(ns, "pods"), web_pod(name, node))
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    api.create(ns_path(ns, "services"), svc)
    mark_pod(api, ns, "ready", ready=True)
    mark_pod(api, ns, "unready", ready=False)

    def pods_by_readiness():
        ep = plane_kubectl.json("get", "endpoints", "web", "-n", ns)
        names = {"ready": [], "unready": []}
        for subset in ep.get("subsets") or []:
            names["ready"] += [a["targetRef"]["name"] for a in subset.get("addresses") or []]
            names["unready"] += [a["targetRef"]["name"] for a in subset.get("notReadyAddresses") or []]
        return names == {"ready": ["ready"], "unready": ["unready"]} and ep

    ep = wait_for("the Endpoints to list one ready and one unready pod", pods_by_readiness)
    subset = ep["subsets"][0]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}], subset
    assert subset["addresses"][0]["nodeName"] == node
    _, rows = table_rows_by_name(plane_kubectl("get", "endpoints", "web", "-n", ns).stdout)
    assert rows["web"]["ENDPOINTS"] == "10.244.0.10:8080", rows

    def slice_conditions():
        slices = plane_kubectl.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")
        got = {e["targetRef"]["name"]: e["conditions"] for s in slices["items"] for e in s.get("endpoints") or []}
        return got if len(got) == 2 else None

    conditions = wait_for("both pods in the EndpointSlices", slice_conditions)
    assert conditions["ready"] == {"ready": True, "serving": True, "terminating": False}
    assert conditions["unready"] == {"ready": False, "serving": False, "terminating": False}
    slices = plane_kubectl.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")["items"]
    assert len(slices) == 1, slices
    labels = slices[0]["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert slices[0]["addressType"] == "IPv4"
    owner = slices[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Service", "web", True)
    name = slices[0]["metadata"]["name"]
    _, rows = table_rows_by_name(plane_kubectl("get", "endpointslices", "-n", ns).stdout)
    assert (rows[name]["ADDRESSTYPE"], rows[name]["PORTS"]) == ("IPv4", "8080"), rows

    # The unready pod turning ready joins the ready addresses.
    mark_pod(api, ns, "unready", ready=True)
    wait_for("both pods ready in the Endpoints", lambda: sorted(
        a["targetRef"]["name"]
        for s in plane_kubectl.json("get", "endpoints", "web", "-n", ns).get("subsets") or []
        for a in s.get("addresses") or []) == ["ready", "unready"])

    # Deleting the Service takes its Endpoints, and its slices through their owner reference.
    plane_kubectl("delete", "service", "web", "-n", ns)
    wait_for("the Endpoints and EndpointSlices to go", lambda: not api.exists(ns_path(ns, "endpoints", "web"))
             and not api.read(ns_path(ns, "endpointslices", group="discovery.k8s.io/v1"))["items"])
