"""kubectl commands that change objects, against hyperkube's apiserver, with
kubectl 1.37 and 1.20: label, annotate, patch (json, merge, strategic), scale
(the /scale subresource), edit (KUBE_EDITOR is a sed script) and delete with
each --cascade policy.

Deletion semantics asserted are the apiserver's alone (no controller-manager
runs here), as in upstream's generic registry (Store.Delete with
EnableGarbageCollection, the default):
  * background: the object is removed at once;
  * foreground: the object stays, with metadata.deletionTimestamp set and the
    `foregroundDeletion` finalizer, until the garbage collector removes it;
  * orphan: likewise, with the `orphan` finalizer.
Removing the last finalizer of an object that has a deletionTimestamp deletes
it (Store.Update / shouldDeleteDuringUpdate), which the tests use to clean up.
"""

from __future__ import annotations

import json
import stat

import pytest

from e2e_util import Api, Kubectl, configmap, container_by_name, deployment, ns_path


def cm_path(ns: str, name: str | None = None) -> str:
    return ns_path(ns, "configmaps", name)


def deploy_path(ns: str, name: str | None = None) -> str:
    return ns_path(ns, "deployments", name, group="apps/v1")


def test_label(kubectl: Kubectl, api: Api, namespace: str):
    ns = namespace
    api.create(cm_path(ns), configmap("c", {"k": "v"}, labels={"app": "demo"}))

    out = kubectl("label", "configmap", "c", "-n", ns, "color=blue")
    assert "configmap/c labeled" in out.stdout
    assert api.read(cm_path(ns, "c"))["metadata"]["labels"] == {"app": "demo", "color": "blue"}

    # Changing an existing label needs --overwrite.
    before = api.read(cm_path(ns, "c"))
    kubectl.fails("label", "configmap", "c", "-n", ns, "color=red")
    after = api.read(cm_path(ns, "c"))
    assert after["metadata"]["labels"]["color"] == "blue"
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    kubectl("label", "configmap", "c", "-n", ns, "color=red", "--overwrite")
    assert api.read(cm_path(ns, "c"))["metadata"]["labels"]["color"] == "red"

    # A stale --resource-version is a conflict, and nothing changes.
    stale = before["metadata"]["resourceVersion"]
    out = kubectl.fails("label", "configmap", "c", "-n", ns, "size=xl", f"--resource-version={stale}")
    assert "Conflict" in out.stderr or "the object has been modified" in out.stderr, out.stderr
    assert "size" not in api.read(cm_path(ns, "c"))["metadata"]["labels"]

    kubectl("label", "configmap", "c", "-n", ns, "color-")
    assert api.read(cm_path(ns, "c"))["metadata"]["labels"] == {"app": "demo"}

    # Label many objects by selector.
    api.create(cm_path(ns), configmap("d", {"k": "v"}, labels={"app": "demo"}))
    api.create(cm_path(ns), configmap("e", {"k": "v"}, labels={"app": "other"}))
    kubectl("label", "configmaps", "-n", ns, "-l", "app=demo", "picked=yes")
    picked = api.read(cm_path(ns) + "?labelSelector=picked%3Dyes")
    assert sorted(i["metadata"]["name"] for i in picked["items"]) == ["c", "d"]


def test_annotate(kubectl: Kubectl, api: Api, namespace: str):
    ns = namespace
    api.create(cm_path(ns), configmap("c", {"k": "v"}))

    out = kubectl("annotate", "configmap", "c", "-n", ns, "owner=team-a", "note=multi word value")
    assert "configmap/c annotated" in out.stdout
    annotations = api.read(cm_path(ns, "c"))["metadata"]["annotations"]
    assert annotations["owner"] == "team-a"
    assert annotations["note"] == "multi word value"

    kubectl.fails("annotate", "configmap", "c", "-n", ns, "owner=team-b")
    assert api.read(cm_path(ns, "c"))["metadata"]["annotations"]["owner"] == "team-a"

    kubectl("annotate", "configmap", "c", "-n", ns, "owner=team-b", "--overwrite")
    assert api.read(cm_path(ns, "c"))["metadata"]["annotations"]["owner"] == "team-b"

    kubectl("annotate", "configmap", "c", "-n", ns, "owner-")
    annotations = api.read(cm_path(ns, "c"))["metadata"].get("annotations") or {}
    assert "owner" not in annotations
    assert annotations.get("note") == "multi word value"


def test_patch_json(kubectl: Kubectl, api: Api, namespace: str):
    ns = namespace
    api.create(cm_path(ns), configmap("c", {"a": "1", "c": "3"}))
    ops = [
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/c"},
        {"op": "add", "path": "/metadata/labels", "value": {"patched": "json"}},
    ]
    out = kubectl("patch", "configmap", "c", "-n", ns, "--type=json", "-p", json.dumps(ops))
    assert "configmap/c patched" in out.stdout
    obj = api.read(cm_path(ns, "c"))
    assert obj["data"] == {"a": "10", "b": "2"}
    assert obj["metadata"]["labels"] == {"patched": "json"}

    # A failing "test" operation rejects the whole patch.
    rv = obj["metadata"]["resourceVersion"]
    bad = [{"op": "test", "path": "/data/a", "value": "nope"}, {"op": "replace", "path": "/data/a", "value": "x"}]
    kubectl.fails("patch", "configmap", "c", "-n", ns, "--type=json", "-p", json.dumps(bad))
    obj = api.read(cm_path(ns, "c"))
    assert obj["data"] == {"a": "10", "b": "2"}
    assert obj["metadata"]["resourceVersion"] == rv

    # Removing a missing path is an error too.
    kubectl.fails(
        "patch", "configmap", "c", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/data/missing"}]'
    )
    assert api.read(cm_path(ns, "c"))["metadata"]["resourceVersion"] == rv


def test_patch_merge(kubectl: Kubectl, api: Api, namespace: str):
    ns = namespace
    api.create(cm_path(ns), configmap("c", {"a": "1", "b": "2"}))
    out = kubectl("patch", "configmap", "c", "-n", ns, "--type=merge", "-p", '{"data":{"a":null,"z":"26"}}')
    assert "configmap/c patched" in out.stdout
    assert api.read(cm_path(ns, "c"))["data"] == {"b": "2", "z": "26"}

    # A merge patch replaces lists wholesale: only the patched container is left.
    api.create(
        deploy_path(ns),
        deployment("web", containers=[("app", "nginx:1.25"), ("sidecar", "busybox:1.36")]),
    )
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.37"}]}}}}
    kubectl("patch", "deployment", "web", "-n", ns, "--type=merge", "-p", json.dumps(patch))
    containers = api.read(deploy_path(ns, "web"))["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("sidecar", "busybox:1.37")]


def test_patch_strategic(kubectl: Kubectl, api: Api, namespace: str):
    ns = namespace
    api.create(
        deploy_path(ns),
        deployment("web", containers=[("app", "nginx:1.25"), ("sidecar", "busybox:1.36")]),
    )
    generation = api.read(deploy_path(ns, "web"))["metadata"]["generation"]

    # Containers merge by name: the patched one changes, the other is kept.
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "busybox:1.37", "env": [{"name": "LEVEL", "value": "debug"}]}
                    ]
                }
            }
        }
    }
    out = kubectl("patch", "deployment", "web", "-n", ns, "--type=strategic", "-p", json.dumps(patch))
    assert "deployment.apps/web patched" in out.stdout
    dep = api.read(deploy_path(ns, "web"))
    spec = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "sidecar"]
    assert container_by_name(spec, "app")["image"] == "nginx:1.25"
    assert container_by_name(spec, "sidecar")["image"] == "busybox:1.37"
    assert container_by_name(spec, "sidecar")["env"] == [{"name": "LEVEL", "value": "debug"}]
    assert dep["metadata"]["generation"] == generation + 1

    # A new name is appended; $patch: delete removes by name.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "extra", "image": "redis:7"}]}}}}
    kubectl("patch", "deployment", "web", "-n", ns, "-p", json.dumps(patch))  # strategic is the default
    spec = api.read(deploy_path(ns, "web"))["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "sidecar", "extra"]

    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    kubectl("patch", "deployment", "web", "-n", ns, "--type=strategic", "-p", json.dumps(patch))
    spec = api.read(deploy_path(ns, "web"))["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "extra"]
    assert container_by_name(spec, "app")["image"] == "nginx:1.25"

    # Maps merge: a label is added beside the existing ones.
    kubectl("patch", "deployment", "web", "-n", ns, "-p", '{"metadata":{"labels":{"extra":"yes"}}}')
    assert api.read(deploy_path(ns, "web"))["metadata"]["labels"] == {"app": "web", "extra": "yes"}


def test_scale(kubectl: Kubectl, api: Api, namespace: str):
    ns = namespace
    api.create(deploy_path(ns), deployment("web", replicas=1))

    out = kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3")
    assert "deployment.apps/web scaled" in out.stdout
    assert api.read(deploy_path(ns, "web"))["spec"]["replicas"] == 3
    assert kubectl("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "3"

    scale = api.read(deploy_path(ns, "web") + "/scale")
    assert scale["kind"] == "Scale"
    assert scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 3
    assert scale["metadata"]["name"] == "web"
    assert scale["status"]["selector"] == "app=web"

    # With a precondition kubectl reads the scale and updates it (PUT).
    kubectl.fails("scale", "deployment", "web", "-n", ns, "--current-replicas=2", "--replicas=5")
    assert api.read(deploy_path(ns, "web"))["spec"]["replicas"] == 3
    kubectl("scale", "deployment", "web", "-n", ns, "--current-replicas=3", "--replicas=1")
    assert api.read(deploy_path(ns, "web"))["spec"]["replicas"] == 1

    kubectl("scale", "deployment", "web", "-n", ns, "--replicas=0")
    assert api.read(deploy_path(ns, "web"))["spec"]["replicas"] == 0


def _editor(tmp_path, sed_expr: str) -> str:
    script = tmp_path / "editor.sh"
    script.write_text(f"#!/bin/sh\nexec sed -i -e '{sed_expr}' \"$1\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(script)


def test_edit(kubectl: Kubectl, api: Api, namespace: str, tmp_path):
    ns = namespace
    api.create(cm_path(ns), configmap("c", {"greeting": "hello", "other": "same"}))
    editor = _editor(tmp_path, "s/greeting: hello/greeting: edited/")
    out = kubectl("edit", "configmap", "c", "-n", ns, env={"KUBE_EDITOR": editor, "EDITOR": editor})
    assert "configmap/c edited" in out.stdout, out.stdout + out.stderr
    assert api.read(cm_path(ns, "c"))["data"] == {"greeting": "edited", "other": "same"}

    # Editing a deployment's image goes through the same patch path.
    api.create(deploy_path(ns), deployment("web", containers=[("app", "nginx:1.25")]))
    editor = _editor(tmp_path, "s/image: nginx:1.25/image: nginx:1.26/")
    out = kubectl("edit", "deployment", "web", "-n", ns, env={"KUBE_EDITOR": editor})
    assert "deployment.apps/web edited" in out.stdout, out.stdout + out.stderr
    spec = api.read(deploy_path(ns, "web"))["spec"]["template"]["spec"]
    assert container_by_name(spec, "app")["image"] == "nginx:1.26"

    # An editor that changes nothing: kubectl cancels and the object is untouched.
    rv = api.read(cm_path(ns, "c"))["metadata"]["resourceVersion"]
    noop = _editor(tmp_path, "s/this-does-not-occur//")
    out = kubectl("edit", "configmap", "c", "-n", ns, env={"KUBE_EDITOR": noop})
    assert "Edit cancelled" in out.stdout + out.stderr
    assert api.read(cm_path(ns, "c"))["metadata"]["resourceVersion"] == rv


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_delete_cascade(kubectl: Kubectl, api: Api, namespace: str, cascade: str):
    ns = namespace
    created = api.create(deploy_path(ns), deployment("web", replicas=2))
    api.create(cm_path(ns), configmap("bystander", {"k": "v"}))

    if cascade == "background":
        out = kubectl("delete", "deployment", "web", "-n", ns, f"--cascade={cascade}", "--timeout=30s")
        assert 'deployment.apps "web" deleted' in out.stdout
        assert not api.exists(deploy_path(ns, "web"))
    else:
        # Without a garbage collector the object waits for it: don't let kubectl wait.
        out = kubectl("delete", "deployment", "web", "-n", ns, f"--cascade={cascade}", "--wait=false")
        assert 'deployment.apps "web" deleted' in out.stdout
        finalizer = {"foreground": "foregroundDeletion", "orphan": "orphan"}[cascade]
        dep = api.read(deploy_path(ns, "web"))
        assert dep["metadata"].get("deletionTimestamp"), dep["metadata"]
        assert finalizer in (dep["metadata"].get("finalizers") or []), dep["metadata"]
        assert dep["metadata"].get("deletionGracePeriodSeconds") == 0, dep["metadata"]
        # Marking an object for deletion bumps its generation (registry markAsDeleting).
        assert dep["metadata"]["generation"] == created["metadata"]["generation"] + 1
        # kubectl shows it, still listed.
        assert "web" in kubectl("get", "deployments", "-n", ns, "-o", "name").stdout

        # Clearing the finalizers completes the deletion.
        kubectl("patch", "deployment", "web", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        assert not api.exists(deploy_path(ns, "web"))

    # Other objects are untouched.
    assert api.read(cm_path(ns, "bystander"))["data"] == {"k": "v"}
    out = kubectl("get", "deployments", "-n", ns, "-o", "name").stdout
    assert out.strip() == ""


def test_delete_by_selector_and_missing(kubectl: Kubectl, api: Api, namespace: str):
    ns = namespace
    for name, team in [("a", "x"), ("b", "x"), ("c", "y")]:
        api.create(cm_path(ns), configmap(name, {"k": "v"}, labels={"team": team}))
    out = kubectl("delete", "configmaps", "-n", ns, "-l", "team=x", "--timeout=30s")
    assert 'configmap "a" deleted' in out.stdout and 'configmap "b" deleted' in out.stdout
    remaining = api.read(cm_path(ns))["items"]
    assert [i["metadata"]["name"] for i in remaining] == ["c"]

    out = kubectl.fails("delete", "configmap", "nope", "-n", ns)
    assert "NotFound" in out.stderr or "not found" in out.stderr
    out = kubectl("delete", "configmap", "nope", "-n", ns, "--ignore-not-found")
    assert out.stdout.strip() == ""
