"""kubectl get against hyperkube's apiserver, with kubectl 1.37 and 1.20:
the server-side tables (kubectl asks for `as=Table;g=meta.k8s.io;v=v1`, and
the column set is upstream's pkg/printers/internalversion/printers.go),
-o wide/yaml/json/jsonpath/name, label selectors of every kind, and watching
with `get -w` (plain and --output-watch-events).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from e2e_util import (
    Api,
    Kubectl,
    configmap,
    deployment,
    ns_path,
    parse_table,
    service,
    table_rows_by_name,
    unique,
)


@pytest.fixture
def workload(api: Api, namespace: str) -> dict:
    """A Deployment web (2 replicas, container nginx), a Service web and a
    ConfigMap settings with two keys."""
    dep = api.create(ns_path(namespace, "deployments", group="apps/v1"), deployment("web", replicas=2))
    svc = api.create(ns_path(namespace, "services"), service("web"))
    cm = api.create(ns_path(namespace, "configmaps"), configmap("settings", {"a": "1", "b": "2"}))
    return {"deployment": dep, "service": svc, "configmap": cm}


def test_table_headers_and_cells(kubectl: Kubectl, namespace: str, workload: dict):
    ns = namespace

    header, rows = table_rows_by_name(kubectl("get", "deployments", "-n", ns).stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    web = rows["web"]
    # No controller runs, so no pod is ready: READY is ready/desired.
    assert web["READY"] == "0/2"
    assert web["UP-TO-DATE"] == "0"
    assert web["AVAILABLE"] == "0"
    assert re.fullmatch(r"\d+[smhd].*", web["AGE"]), web

    header, rows = table_rows_by_name(kubectl("get", "deployments", "-n", ns, "-o", "wide").stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows["web"]["CONTAINERS"] == "nginx"
    assert rows["web"]["IMAGES"] == "nginx:1.25"
    assert rows["web"]["SELECTOR"] == "app=web"

    header, rows = table_rows_by_name(kubectl("get", "configmaps", "-n", ns).stdout)
    assert header == ["NAME", "DATA", "AGE"]
    assert rows["settings"]["DATA"] == "2"

    header, rows = table_rows_by_name(kubectl("get", "services", "-n", ns).stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows["web"]["TYPE"] == "ClusterIP"
    assert rows["web"]["CLUSTER-IP"] == workload["service"]["spec"]["clusterIP"]
    assert rows["web"]["EXTERNAL-IP"] == "<none>"
    assert rows["web"]["PORT(S)"] == "80/TCP"

    header, rows = table_rows_by_name(kubectl("get", "services", "-n", ns, "-o", "wide").stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert rows["web"]["SELECTOR"] == "app=web"

    header, rows = table_rows_by_name(kubectl("get", "namespace", ns).stdout)
    assert header == ["NAME", "STATUS", "AGE"]
    assert rows[ns]["STATUS"] == "Active"

    # A single object by name prints the same columns.
    header, rows = table_rows_by_name(kubectl("get", "deployment", "web", "-n", ns).stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert list(rows) == ["web"]

    # --show-labels adds a LABELS column.
    header, rows = table_rows_by_name(kubectl("get", "deployments", "-n", ns, "--show-labels").stdout)
    assert header[-1] == "LABELS"
    assert rows["web"]["LABELS"] == "app=web"

    # --no-headers drops the header line only.
    lines = [l for l in kubectl("get", "configmaps", "-n", ns, "--no-headers").stdout.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].split()[:2] == ["settings", "2"], lines


def test_empty_list_message(kubectl: Kubectl, namespace: str):
    out = kubectl("get", "configmaps", "-n", namespace)
    assert out.stdout.strip() == ""
    assert f"No resources found in {namespace} namespace." in out.stderr


def test_output_formats(kubectl: Kubectl, api: Api, namespace: str, workload: dict):
    ns = namespace

    obj = yaml.safe_load(kubectl("get", "configmap", "settings", "-n", ns, "-o", "yaml").stdout)
    assert obj["kind"] == "ConfigMap"
    assert obj["apiVersion"] == "v1"
    assert obj["metadata"]["name"] == "settings"
    assert obj["metadata"]["namespace"] == ns
    assert obj["data"] == {"a": "1", "b": "2"}
    assert obj["metadata"]["resourceVersion"] == workload["configmap"]["metadata"]["resourceVersion"]
    assert obj["metadata"]["uid"] == workload["configmap"]["metadata"]["uid"]

    lst = yaml.safe_load(kubectl("get", "configmaps", "-n", ns, "-o", "yaml").stdout)
    assert lst["kind"] == "List"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["settings"]
    assert lst["items"][0]["kind"] == "ConfigMap"

    obj = json.loads(kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert obj["kind"] == "Deployment"
    assert obj["apiVersion"] == "apps/v1"
    assert obj["spec"]["replicas"] == 2
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    # Upstream defaulting happened on create.
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"
    assert obj["spec"]["revisionHistoryLimit"] == 10
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"

    lst = json.loads(kubectl("get", "services", "-n", ns, "-o", "json").stdout)
    assert lst["kind"] == "List"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["web"]

    more = ["extra-1", "extra-2"]
    for name in more:
        api.create(ns_path(ns, "configmaps"), configmap(name, {"x": "y"}))
    out = kubectl("get", "configmaps", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert sorted(out.split()) == sorted(["settings", *more])

    out = kubectl("get", "configmap", "settings", "-n", ns, "-o", "jsonpath={.data.b}").stdout
    assert out == "2"

    out = kubectl("get", "configmaps", "-n", ns, "-o", "name").stdout.split()
    assert sorted(out) == sorted(f"configmap/{n}" for n in ["settings", *more])

    out = kubectl(
        "get", "deployments", "-n", ns, "-o", "custom-columns=N:.metadata.name,R:.spec.replicas"
    ).stdout
    header, rows = parse_table(out)
    assert header == ["N", "R"]
    assert rows == [["web", "2"]]


# name -> labels; the expected matches below follow upstream selector semantics
# (apimachinery/pkg/labels): `!=` and `notin` also match objects without the key.
SELECTOR_OBJECTS = {
    "a": {"env": "prod", "tier": "web"},
    "b": {"env": "dev", "tier": "db"},
    "c": {"env": "prod"},
    "d": {},
}


@pytest.mark.parametrize(
    "selector,expected",
    [
        ("env=prod", ["a", "c"]),
        ("env==prod", ["a", "c"]),
        ("env!=prod", ["b", "d"]),
        ("env in (dev,qa)", ["b"]),
        ("env notin (prod)", ["b", "d"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d"]),
        ("env=prod,tier", ["a"]),
        ("env=prod,!tier", ["c"]),
        ("env=staging", []),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_label_selectors(kubectl: Kubectl, api: Api, namespace: str, selector: str, expected: list[str]):
    for name, labels in SELECTOR_OBJECTS.items():
        api.create(ns_path(namespace, "configmaps"), configmap(name, {"k": name}, labels=labels))
    out = kubectl(
        "get", "configmaps", "-n", namespace, "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"
    ).stdout
    assert sorted(out.split()) == expected

    # The same selector as a table.
    out = kubectl("get", "configmaps", "-n", namespace, "--selector", selector, "--no-headers")
    assert sorted(line.split()[0] for line in out.stdout.splitlines() if line.strip()) == expected


def test_label_selector_invalid(kubectl: Kubectl, namespace: str):
    out = kubectl.fails("get", "configmaps", "-n", namespace, "-l", "env in (prod")
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("events", [False, True], ids=["plain", "output-watch-events"])
def test_get_watch(kubectl: Kubectl, api: Api, namespace: str, events: bool):
    ns = namespace
    first = unique("first")
    api.create(ns_path(ns, "configmaps"), configmap(first, {"k": "v"}))

    args = ["get", "configmaps", "-n", ns, "-w"]
    if events:
        args.append("--output-watch-events")
    with kubectl.popen(*args) as watch:
        # The initial list is printed first (as ADDED events with --output-watch-events).
        header = watch.wait_for_line(lambda l: "NAME" in l.split(), what="the table header")
        if events:
            assert header.split()[:4] == ["EVENT", "NAME", "DATA", "AGE"], header
        else:
            assert header.split()[:3] == ["NAME", "DATA", "AGE"], header
        line = watch.wait_for_line(lambda l: first in l.split(), what=f"the existing configmap {first}")
        if events:
            assert line.split()[0] == "ADDED", line

        later = unique("later")
        api.create(ns_path(ns, "configmaps"), configmap(later, {"x": "1", "y": "2"}))
        line = watch.wait_for_line(lambda l: later in l.split(), what=f"the new configmap {later}")
        cols = line.split()
        if events:
            assert cols[0] == "ADDED", line
            assert cols[2] == "2", line  # DATA
        else:
            assert cols[1] == "2", line

        r = api.patch(
            ns_path(ns, "configmaps", first),
            data=json.dumps({"data": {"k": "v", "k2": "v2"}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        line = watch.wait_for_line(lambda l: first in l.split(), what=f"the change to {first}")
        cols = line.split()
        if events:
            assert cols[0] == "MODIFIED", line
            assert cols[2] == "2", line
        else:
            assert cols[1] == "2", line

        r = api.delete(ns_path(ns, "configmaps", later))
        assert r.status_code == 200, r.text
        if events:
            line = watch.wait_for_line(lambda l: later in l.split(), what=f"the deletion of {later}")
            assert line.split()[0] == "DELETED", line
        else:
            # Plain -w prints the deleted object's row again.
            watch.wait_for_line(lambda l: later in l.split(), what=f"the deletion of {later}")


def test_get_watch_single_object(kubectl: Kubectl, api: Api, namespace: str):
    """`get NAME -w` watches one object (fieldSelector=metadata.name=NAME)."""
    ns = namespace
    target, other = unique("target"), unique("other")
    api.create(ns_path(ns, "configmaps"), configmap(target, {"k": "v"}))
    with kubectl.popen("get", "configmap", target, "-n", ns, "-w", "--output-watch-events") as watch:
        watch.wait_for_line(lambda l: target in l.split(), what=f"the initial {target}")
        api.create(ns_path(ns, "configmaps"), configmap(other, {"k": "v"}))
        r = api.patch(
            ns_path(ns, "configmaps", target),
            data=json.dumps({"metadata": {"labels": {"seen": "yes"}}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        line = watch.wait_for_line(lambda l: "MODIFIED" in l.split(), what=f"MODIFIED {target}")
        assert target in line.split(), line
        assert all(other not in l.split() for l in watch.lines), watch.describe()
