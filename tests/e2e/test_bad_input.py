"""Malformed and invalid requests sent straight over HTTP (requests) to
hyperkube's apiserver. Each must be refused with upstream's status code and a
JSON metav1.Status body (kind Status, apiVersion v1, status Failure, code
equal to the HTTP status, a reason and a message), and must leave the store
exactly as it was (the affected collections are listed before and after).

Upstream references: apiserver/pkg/endpoints/handlers (create.go, update.go,
rest.go limitedReadBody: bodies over 3 MiB are 413), apimachinery's
StatusError constructors (NewBadRequest 400, NewInvalid 422 with causes,
NewConflict 409, NewNotFound 404), the NamespaceLifecycle admission plugin
(creating in a namespace that does not exist is 404 for the namespace).
"""

from __future__ import annotations

import json

import pytest

from e2e_util import Api, assert_status, causes, configmap, ensure_default_service_account, ns_path

MiB = 1024 * 1024


def cm_list(ns: str) -> str:
    return ns_path(ns, "configmaps")


@pytest.fixture
def seeded(api: Api, namespace: str) -> str:
    """A namespace holding one ConfigMap, so "unchanged" compares something."""
    api.create(cm_list(namespace), configmap("existing", {"k": "v"}))
    return namespace


def test_invalid_json_body(api: Api, seeded: str):
    ns = seeded
    before = api.snapshot(cm_list(ns))
    r = api.post(
        cm_list(ns),
        data=b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "broken"',
        headers={"Content-Type": "application/json"},
    )
    assert_status(r, 400, "BadRequest")
    r = api.post(cm_list(ns), data=b"not json at all", headers={"Content-Type": "application/json"})
    assert_status(r, 400, "BadRequest")
    assert api.snapshot(cm_list(ns)) == before


def test_invalid_json_patch_body(api: Api, seeded: str):
    ns = seeded
    before = api.snapshot(cm_list(ns))
    for ctype in [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
    ]:
        r = api.patch(ns_path(ns, "configmaps", "existing"), data=b'{"data": ', headers={"Content-Type": ctype})
        assert_status(r, 400, "BadRequest")
    assert api.snapshot(cm_list(ns)) == before


def test_yaml_body(api: Api, seeded: str):
    ns = seeded
    before = api.snapshot(cm_list(ns))
    bad = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n data: {\n"
    r = api.post(cm_list(ns), data=bad, headers={"Content-Type": "application/yaml"})
    assert_status(r, 400, "BadRequest")
    assert api.snapshot(cm_list(ns)) == before

    # Well-formed YAML is accepted, which shows the 400 was about the body.
    good = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n"
    r = api.post(cm_list(ns), data=good, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert api.read(ns_path(ns, "configmaps", "from-yaml"))["data"] == {"k": "v"}


def test_kind_does_not_match_url(api: Api, seeded: str):
    ns = seeded
    before_cm = api.snapshot(cm_list(ns))
    before_pods = api.snapshot(ns_path(ns, "pods"))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wrong-kind"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    r = api.post(cm_list(ns), json=pod)
    assert_status(r, 400, "BadRequest")

    # The right kind in the wrong group/version is refused as well.
    wrong_group = {**configmap("wrong-group", {"k": "v"}), "apiVersion": "apps/v1"}
    r = api.post(cm_list(ns), json=wrong_group)
    assert_status(r, 400, "BadRequest")

    assert api.snapshot(cm_list(ns)) == before_cm
    assert api.snapshot(ns_path(ns, "pods")) == before_pods


def test_invalid_name(api: Api, seeded: str):
    ns = seeded
    before = api.snapshot(cm_list(ns))
    r = api.post(cm_list(ns), json=configmap("Bad_Name", {"k": "v"}))
    status = assert_status(r, 422, "Invalid")
    details = status.get("details") or {}
    assert details.get("name") == "Bad_Name", status
    assert details.get("kind") == "ConfigMap", status
    cs = causes(status)
    assert any(c.get("field") == "metadata.name" and c.get("reason") == "FieldValueInvalid" for c in cs), status
    assert "Bad_Name" in status["message"]
    assert api.snapshot(cm_list(ns)) == before


def test_name_in_body_differs_from_url_on_update(api: Api, seeded: str):
    ns = seeded
    before = api.snapshot(cm_list(ns))
    obj = api.read(ns_path(ns, "configmaps", "existing"))
    obj["metadata"]["name"] = "other-name"
    r = api.put(ns_path(ns, "configmaps", "existing"), json=obj)
    assert_status(r, 400, "BadRequest")
    assert api.snapshot(cm_list(ns)) == before


def test_missing_required_field(api: Api, seeded: str):
    ns = seeded
    ensure_default_service_account(api, ns)
    before = api.snapshot(ns_path(ns, "pods"))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "no-image"},
        "spec": {"containers": [{"name": "app"}]},
    }
    r = api.post(ns_path(ns, "pods"), json=pod)
    status = assert_status(r, 422, "Invalid")
    cs = causes(status)
    assert any(
        c.get("field") == "spec.containers[0].image" and c.get("reason") == "FieldValueRequired" for c in cs
    ), status
    assert (status.get("details") or {}).get("kind") == "Pod", status

    # No containers at all is invalid too.
    pod["spec"] = {"containers": []}
    r = api.post(ns_path(ns, "pods"), json=pod)
    status = assert_status(r, 422, "Invalid")
    assert any(c.get("field") == "spec.containers" for c in causes(status)), status

    assert api.snapshot(ns_path(ns, "pods")) == before


def test_stale_resource_version_on_put(api: Api, seeded: str):
    ns = seeded
    path = ns_path(ns, "configmaps", "existing")
    old = api.read(path)

    fresh = json.loads(json.dumps(old))
    fresh["data"] = {"k": "v2"}
    r = api.put(path, json=fresh)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]

    before = api.snapshot(cm_list(ns))
    stale = json.loads(json.dumps(old))  # still carries the old resourceVersion
    stale["data"] = {"k": "lost-update"}
    r = api.put(path, json=stale)
    status = assert_status(r, 409, "Conflict")
    assert (status.get("details") or {}).get("name") == "existing", status
    assert api.snapshot(cm_list(ns)) == before
    assert api.read(path)["data"] == {"k": "v2"}

    # A patch carrying a stale resourceVersion is a conflict as well.
    r = api.patch(
        path,
        data=json.dumps({"metadata": {"resourceVersion": old["metadata"]["resourceVersion"]}, "data": {"k": "x"}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_status(r, 409, "Conflict")
    assert api.snapshot(cm_list(ns)) == before


def test_body_too_large(api: Api, seeded: str):
    ns = seeded
    before = api.snapshot(cm_list(ns))
    # Just over upstream's 3 MiB request body limit (a small overrun keeps the
    # unread remainder small, so the server can answer before the upload ends).
    body = configmap("huge", {"blob": ""})
    envelope = len(json.dumps(body).encode())
    body["data"]["blob"] = "x" * (3 * MiB - envelope + 1024)
    data = json.dumps(body).encode()
    assert 3 * MiB < len(data) < 3 * MiB + 2048
    r = api.post(cm_list(ns), data=data, headers={"Content-Type": "application/json"})
    assert_status(r, 413, "RequestEntityTooLarge")
    assert api.snapshot(cm_list(ns)) == before


@pytest.mark.parametrize(
    "path_template",
    [
        "/api/v1/namespaces/{ns}/flibbertigibbets",
        "/api/v1/namespaces/{ns}/flibbertigibbets/x",
        "/apis/apps/v1/namespaces/{ns}/flibbertigibbets",
    ],
)
def test_unknown_resource(api: Api, seeded: str, path_template: str):
    ns = seeded
    path = path_template.format(ns=ns)
    before = api.snapshot(cm_list(ns))
    assert_status(api.get(path), 404, "NotFound")
    assert_status(api.post(path, json=configmap("x", {})), 404, "NotFound")
    assert api.snapshot(cm_list(ns)) == before


def test_missing_object(api: Api, seeded: str):
    ns = seeded
    before = api.snapshot(cm_list(ns))
    status = assert_status(api.get(ns_path(ns, "configmaps", "nope")), 404, "NotFound")
    assert (status.get("details") or {}).get("name") == "nope", status
    assert (status.get("details") or {}).get("kind") == "configmaps", status
    assert_status(api.delete(ns_path(ns, "configmaps", "nope")), 404, "NotFound")
    r = api.patch(
        ns_path(ns, "configmaps", "nope"),
        data='{"data":{"a":"b"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_status(r, 404, "NotFound")
    assert api.snapshot(cm_list(ns)) == before


def test_namespace_missing(api: Api, seeded: str):
    missing = seeded + "-missing"
    namespaces_before = api.snapshot("/api/v1/namespaces")
    all_cms_before = api.snapshot("/api/v1/configmaps")
    r = api.post(cm_list(missing), json=configmap("orphan", {"k": "v"}))
    status = assert_status(r, 404, "NotFound")
    details = status.get("details") or {}
    assert details.get("name") == missing, status
    assert details.get("kind") == "namespaces", status
    assert api.snapshot("/api/v1/namespaces") == namespaces_before
    assert api.snapshot("/api/v1/configmaps") == all_cms_before

    assert_status(api.get(f"/api/v1/namespaces/{missing}"), 404, "NotFound")
