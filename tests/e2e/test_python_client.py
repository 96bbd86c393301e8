"""The official Python client (PyPI `kubernetes`) against hyperkube's
apiserver, configured from the test kubeconfig the way a user's program is:
create, read, list (with label selectors), patch (strategic merge, merge,
JSON patch), replace with a stale resourceVersion, delete, and watch —
including resuming a watch from a noted resourceVersion, which must deliver
exactly the changes made after it, in order.
"""

from __future__ import annotations

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from e2e_util import unique

WATCH_SECONDS = 15


@pytest.fixture
def core(k8s_client) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_client)


@pytest.fixture
def apps(k8s_client) -> client.AppsV1Api:
    return client.AppsV1Api(k8s_client)


def cm(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        data=data,
    )


def test_configmap_crud(core: client.CoreV1Api, namespace: str):
    ns = namespace
    created = core.create_namespaced_config_map(ns, cm("alpha", {"a": "1"}, {"app": "demo"}))
    assert created.metadata.name == "alpha"
    assert created.metadata.namespace == ns
    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.data == {"a": "1"}

    core.create_namespaced_config_map(ns, cm("beta", {"b": "2"}, {"app": "other"}))

    read = core.read_namespaced_config_map("alpha", ns)
    assert read.metadata.uid == created.metadata.uid
    assert read.data == {"a": "1"}

    listed = core.list_namespaced_config_map(ns)
    assert sorted(i.metadata.name for i in listed.items) == ["alpha", "beta"]
    assert listed.metadata.resource_version
    selected = core.list_namespaced_config_map(ns, label_selector="app=demo")
    assert [i.metadata.name for i in selected.items] == ["alpha"]
    everywhere = core.list_config_map_for_all_namespaces(label_selector="app=other")
    assert (ns, "beta") in {(i.metadata.namespace, i.metadata.name) for i in everywhere.items}

    # Strategic merge patch (the client's default for a dict body).
    patched = core.patch_namespaced_config_map("alpha", ns, {"data": {"b": "2"}, "metadata": {"labels": {"x": "y"}}})
    assert patched.data == {"a": "1", "b": "2"}
    assert patched.metadata.labels == {"app": "demo", "x": "y"}
    assert patched.metadata.resource_version != created.metadata.resource_version

    # JSON patch (a list body).
    patched = core.patch_namespaced_config_map("alpha", ns, [{"op": "remove", "path": "/data/a"}])
    assert patched.data == {"b": "2"}

    # Merge patch, chosen explicitly.
    patched = core.patch_namespaced_config_map(
        "alpha", ns, {"data": {"b": None, "c": "3"}}, _content_type="application/merge-patch+json"
    )
    assert patched.data == {"c": "3"}

    # Replace with the current resourceVersion works; with a stale one it is a conflict.
    current = core.read_namespaced_config_map("alpha", ns)
    stale_rv = current.metadata.resource_version
    current.data = {"c": "33"}
    replaced = core.replace_namespaced_config_map("alpha", ns, current)
    assert replaced.data == {"c": "33"}
    current.data = {"c": "lost"}
    current.metadata.resource_version = stale_rv
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("alpha", ns, current)
    assert e.value.status == 409
    assert core.read_namespaced_config_map("alpha", ns).data == {"c": "33"}

    # Creating an existing name is a conflict too.
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, cm("alpha", {}))
    assert e.value.status == 409

    core.delete_namespaced_config_map("alpha", ns)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("alpha", ns)
    assert e.value.status == 404
    assert [i.metadata.name for i in core.list_namespaced_config_map(ns).items] == ["beta"]

    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("alpha", ns)
    assert e.value.status == 404


def test_deployment_crud(apps: client.AppsV1Api, namespace: str):
    ns = namespace
    body = client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(name="app", image="nginx:1.25"),
                        client.V1Container(name="sidecar", image="busybox:1.36"),
                    ]
                ),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, body)
    assert created.metadata.generation == 1
    assert created.spec.replicas == 2
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted

    listed = apps.list_namespaced_deployment(ns, label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]

    # Strategic merge: containers merge by name.
    patched = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}
    )
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"app": "nginx:1.27", "sidecar": "busybox:1.36"}
    assert patched.metadata.generation == 2

    # The scale subresource.
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 4

    apps.delete_namespaced_deployment("web", ns, propagation_policy="Background")
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("web", ns)
    assert e.value.status == 404


def _collect(w: watch.Watch, stream, until, limit: int = 100) -> list[tuple[str, str, dict]]:
    """Reads (type, name, raw object) events until `until(events)` is true."""
    events: list[tuple[str, str, dict]] = []
    for event in stream:
        raw = event["raw_object"]
        events.append((event["type"], raw["metadata"]["name"], raw))
        if until(events) or len(events) >= limit:
            break
    w.stop()
    return events


def test_watch_configmaps(core: client.CoreV1Api, namespace: str):
    ns = namespace
    start_rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("one", {"k": "v"}))
    core.patch_namespaced_config_map("one", ns, {"data": {"k": "v2"}})
    core.delete_namespaced_config_map("one", ns)
    end = unique("end")
    core.create_namespaced_config_map(ns, cm(end, {}))

    w = watch.Watch()
    stream = w.stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=start_rv,
        timeout_seconds=WATCH_SECONDS,
        _request_timeout=WATCH_SECONDS + 5,
    )
    events = _collect(w, stream, lambda evs: evs[-1][1] == end)
    assert [(t, n) for t, n, _ in events] == [
        ("ADDED", "one"),
        ("MODIFIED", "one"),
        ("DELETED", "one"),
        ("ADDED", end),
    ]
    assert events[1][2]["data"] == {"k": "v2"}
    rvs = [int(raw["metadata"]["resourceVersion"]) for _, _, raw in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs), rvs


def test_watch_resume_from_resource_version(core: client.CoreV1Api, namespace: str):
    """Objects created before the noted resourceVersion are not replayed; every
    change after it is, exactly once and in order."""
    ns = namespace
    for name in ["before-1", "before-2"]:
        core.create_namespaced_config_map(ns, cm(name, {"k": name}))
    noted = core.create_namespaced_config_map(ns, cm("before-3", {"k": "before-3"})).metadata.resource_version

    core.create_namespaced_config_map(ns, cm("after-1", {"k": "after-1"}))
    core.patch_namespaced_config_map("before-1", ns, {"data": {"k": "changed"}})
    core.create_namespaced_config_map(ns, cm("after-2", {"k": "after-2"}))
    core.delete_namespaced_config_map("before-2", ns)
    end = unique("end")
    core.create_namespaced_config_map(ns, cm(end, {}))

    w = watch.Watch()
    stream = w.stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=noted,
        timeout_seconds=WATCH_SECONDS,
        _request_timeout=WATCH_SECONDS + 5,
    )
    events = _collect(w, stream, lambda evs: evs[-1][1] == end)
    assert [(t, n) for t, n, _ in events] == [
        ("ADDED", "after-1"),
        ("MODIFIED", "before-1"),
        ("ADDED", "after-2"),
        ("DELETED", "before-2"),
        ("ADDED", end),
    ]
    assert all(int(raw["metadata"]["resourceVersion"]) > int(noted) for _, _, raw in events)
    assert events[1][2]["data"] == {"k": "changed"}

    # A label-selected watch from the same point sees only matching objects.
    core.create_namespaced_config_map(ns, cm("labelled", {}, {"pick": "me"}))
    w = watch.Watch()
    stream = w.stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=noted,
        label_selector="pick=me",
        timeout_seconds=WATCH_SECONDS,
        _request_timeout=WATCH_SECONDS + 5,
    )
    events = _collect(w, stream, lambda evs: True)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "labelled")]


def test_watch_deployments(apps: client.AppsV1Api, namespace: str):
    ns = namespace
    start_rv = apps.list_namespaced_deployment(ns).metadata.resource_version
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "watched"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "watched"}},
            "template": {
                "metadata": {"labels": {"app": "watched"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        },
    }
    apps.create_namespaced_deployment(ns, body)
    apps.patch_namespaced_deployment_scale("watched", ns, {"spec": {"replicas": 3}})
    apps.delete_namespaced_deployment("watched", ns)

    w = watch.Watch()
    stream = w.stream(
        apps.list_namespaced_deployment,
        ns,
        resource_version=start_rv,
        timeout_seconds=WATCH_SECONDS,
        _request_timeout=WATCH_SECONDS + 5,
    )
    events = _collect(w, stream, lambda evs: evs[-1][0] == "DELETED")
    assert [(t, n) for t, n, _ in events] == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]
    assert events[1][2]["spec"]["replicas"] == 3
    assert events[0][2]["kind"] == "Deployment" and events[0][2]["apiVersion"] == "apps/v1"
