"""kubectl create namespace and kubectl apply (client-side, three-way merge)
against hyperkube's apiserver, once with kubectl 1.37 and once with 1.20.

The apply scenario: a multi-document YAML with a Deployment, a Service and a
ConfigMap is applied, an annotation is added out of band with `kubectl
annotate`, then a changed manifest is applied. Upstream semantics checked:
the objects are updated in place, a Deployment's metadata.generation goes up
by one per spec or annotation change (pkg/registry/apps/deployment/strategy.go
PrepareForUpdate), fields the manifest never owned (the extra annotation, the
Service's allocated clusterIP) survive, and re-applying an identical manifest
changes nothing.
"""

from __future__ import annotations

import ipaddress
import json
import textwrap

from e2e_util import Kubectl, unique

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def test_create_namespace(kubectl: Kubectl):
    ns = unique(f"e2e-create-ns-{kubectl.version.replace('.', '')}")
    out = kubectl("create", "namespace", ns)
    assert f"namespace/{ns} created" in out.stdout

    obj = kubectl.json("get", "namespace", ns)
    assert obj["kind"] == "Namespace"
    assert obj["apiVersion"] == "v1"
    assert obj["metadata"]["name"] == ns
    assert obj["metadata"].get("uid")
    assert obj["metadata"].get("creationTimestamp")
    assert obj["status"]["phase"] == "Active"

    listed = kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert f"namespace/{ns}" in listed

    # Creating it again is AlreadyExists, and kubectl says so.
    again = kubectl.fails("create", "namespace", ns)
    assert "AlreadyExists" in again.stderr or "already exists" in again.stderr

    # A namespaced object can be created in it.
    kubectl("create", "configmap", "probe", "-n", ns, "--from-literal=k=v")
    assert kubectl.json("get", "configmap", "probe", "-n", ns)["data"] == {"k": "v"}


def test_create_generators(kubectl: Kubectl, namespace: str):
    """`kubectl create <kind>` builds typed objects client-side. kubectl 1.37
    sends these with Content-Type application/vnd.kubernetes.protobuf (and
    Accept: protobuf, then JSON); kubectl 1.20 sends JSON."""
    ns = namespace
    out = kubectl("create", "configmap", "gen-cm", "-n", ns, "--from-literal=a=1", "--from-literal=b=2")
    assert "configmap/gen-cm created" in out.stdout
    assert kubectl.json("get", "configmap", "gen-cm", "-n", ns)["data"] == {"a": "1", "b": "2"}

    out = kubectl("create", "deployment", "gen-web", "-n", ns, "--image=nginx:1.25", "--replicas=2")
    assert "deployment.apps/gen-web created" in out.stdout
    dep = kubectl.json("get", "deployment", "gen-web", "-n", ns)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "gen-web"}}
    assert dep["metadata"]["labels"] == {"app": "gen-web"}
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("nginx", "nginx:1.25")

    out = kubectl("create", "service", "clusterip", "gen-web", "-n", ns, "--tcp=80:8080")
    assert "service/gen-web created" in out.stdout
    svc = kubectl.json("get", "service", "gen-web", "-n", ns)
    assert svc["spec"]["selector"] == {"app": "gen-web"}
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["protocol"]) == (80, 8080, "TCP")
    ipaddress.ip_address(svc["spec"]["clusterIP"])

    out = kubectl("create", "secret", "generic", "gen-secret", "-n", ns, "--from-literal=password=s3cret")
    assert "secret/gen-secret created" in out.stdout
    secret = kubectl.json("get", "secret", "gen-secret", "-n", ns)
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"password": "czNjcmV0"}  # base64("s3cret")


def manifests(image: str, mode: str, tier: str, greeting: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          labels:
            app: web
            tier: {tier}
        spec:
          replicas: 2
          selector:
            matchLabels:
              app: web
          template:
            metadata:
              labels:
                app: web
            spec:
              containers:
              - name: nginx
                image: {image}
                env:
                - name: MODE
                  value: "{mode}"
                ports:
                - containerPort: 80
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: web
        spec:
          selector:
            app: web
          ports:
          - port: 80
            targetPort: 80
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: web-config
        data:
          greeting: {greeting}
        """
    )


def test_apply_create_then_update(kubectl: Kubectl, namespace: str, tmp_path):
    ns = namespace
    manifest = tmp_path / "app.yaml"

    # --- first apply: everything is created
    manifest.write_text(manifests("nginx:1.25", "one", "frontend", "hello"))
    out = kubectl("apply", "-n", ns, "-f", manifest)
    assert "deployment.apps/web created" in out.stdout, out.stdout
    assert "service/web created" in out.stdout, out.stdout
    assert "configmap/web-config created" in out.stdout, out.stdout

    dep = kubectl.json("get", "deployment", "web", "-n", ns)
    assert dep["metadata"]["generation"] == 1
    assert dep["metadata"]["labels"] == {"app": "web", "tier": "frontend"}
    assert LAST_APPLIED in dep["metadata"]["annotations"]
    last_applied = json.loads(dep["metadata"]["annotations"][LAST_APPLIED])
    assert last_applied["kind"] == "Deployment"
    assert last_applied["metadata"]["name"] == "web"
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "nginx"
    assert container["image"] == "nginx:1.25"
    assert container["env"] == [{"name": "MODE", "value": "one"}]
    assert dep["spec"]["replicas"] == 2

    svc = kubectl.json("get", "service", "web", "-n", ns)
    cluster_ip = svc["spec"]["clusterIP"]
    ipaddress.ip_address(cluster_ip)  # allocated by the apiserver, a real address
    assert svc["spec"]["type"] == "ClusterIP"  # defaulted
    assert svc["spec"]["ports"][0]["protocol"] == "TCP"  # defaulted

    cm = kubectl.json("get", "configmap", "web-config", "-n", ns)
    assert cm["data"] == {"greeting": "hello"}

    # --- a change made outside the manifest
    kubectl("annotate", "deployment", "web", "-n", ns, "e2e.example.com/note=kept")
    dep = kubectl.json("get", "deployment", "web", "-n", ns)
    assert dep["metadata"]["annotations"]["e2e.example.com/note"] == "kept"
    # Upstream bumps a Deployment's generation on annotation changes too.
    assert dep["metadata"]["generation"] == 2
    generation_before = dep["metadata"]["generation"]

    # --- second apply: changed image, env and label
    manifest.write_text(manifests("nginx:1.27", "two", "backend", "bye"))
    out = kubectl("apply", "-n", ns, "-f", manifest)
    assert "deployment.apps/web configured" in out.stdout, out.stdout
    assert "configmap/web-config configured" in out.stdout, out.stdout

    dep = kubectl.json("get", "deployment", "web", "-n", ns)
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.27"
    assert container["env"] == [{"name": "MODE", "value": "two"}]
    assert container["ports"][0]["containerPort"] == 80
    assert dep["metadata"]["labels"] == {"app": "web", "tier": "backend"}
    assert dep["metadata"]["generation"] == generation_before + 1
    # Not in the manifest, so the three-way merge leaves it alone.
    assert dep["metadata"]["annotations"]["e2e.example.com/note"] == "kept"
    assert json.loads(dep["metadata"]["annotations"][LAST_APPLIED])["metadata"]["labels"]["tier"] == "backend"
    assert dep["spec"]["replicas"] == 2

    svc = kubectl.json("get", "service", "web", "-n", ns)
    assert svc["spec"]["clusterIP"] == cluster_ip

    cm = kubectl.json("get", "configmap", "web-config", "-n", ns)
    assert cm["data"] == {"greeting": "bye"}

    # --- third apply of the same manifest: nothing to do
    rv_before = dep["metadata"]["resourceVersion"]
    out = kubectl("apply", "-n", ns, "-f", manifest)
    assert "deployment.apps/web unchanged" in out.stdout, out.stdout
    assert "service/web unchanged" in out.stdout, out.stdout
    assert "configmap/web-config unchanged" in out.stdout, out.stdout
    dep = kubectl.json("get", "deployment", "web", "-n", ns)
    assert dep["metadata"]["resourceVersion"] == rv_before
    assert dep["metadata"]["generation"] == generation_before + 1


def test_apply_removes_field_dropped_from_manifest(kubectl: Kubectl, namespace: str, tmp_path):
    """A key that the previous apply set and the new manifest drops is removed
    (that is what last-applied-configuration is for); a key added by someone
    else stays."""
    ns = namespace
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: '1'\n  b: '2'\n")
    kubectl("apply", "-n", ns, "-f", f)
    kubectl("patch", "configmap", "c", "-n", ns, "--type=merge", "-p", '{"data":{"z":"other"}}')
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: '1'\n")
    kubectl("apply", "-n", ns, "-f", f)
    assert kubectl.json("get", "configmap", "c", "-n", ns)["data"] == {"a": "1", "z": "other"}
