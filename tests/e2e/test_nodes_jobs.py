"""Jobs and DaemonSets through kubectl 1.37, on the control plane's apiserver with the
controller manager running against it. The tests stand in for kubelets: they register nodes
and report pod phases.

The control plane is shared by the session, so each test labels its own nodes and selects
only them.
"""

from e2e_util import mark_pod, register_node, table_rows_by_name, unique, wait_for


def job_pods(api, name: str) -> list[dict]:
    pods = api.read(f"/api/v1/namespaces/default/pods?labelSelector=batch.kubernetes.io/job-name={name}")
    return pods["items"]


def test_kubectl_waits_for_a_created_job_to_complete(control_plane, plane_kubectl):
    api, name = control_plane.api, unique("job")
    plane_kubectl("create", "job", name, "--image=busybox", "--", "true")

    pods = wait_for(f"a pod for job {name}", lambda: job_pods(api, name), timeout=30)
    assert len(pods) == 1, pods
    pod = pods[0]
    assert pod["metadata"]["labels"]["job-name"] == name
    assert "batch.kubernetes.io/job-tracking" in pod["metadata"]["finalizers"]
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Job", name, True)

    mark_pod(api, "default", pod["metadata"]["name"], "Succeeded", ready=False)
    plane_kubectl("wait", "--for=condition=complete", f"job/{name}", "--timeout=30s")

    job = plane_kubectl.json("get", "job", name)
    assert job["status"]["succeeded"] == 1
    assert job["status"].get("active", 0) == 0
    reasons = {c["type"]: c["reason"] for c in job["status"]["conditions"]}
    assert reasons["Complete"] == "CompletionsReached", reasons
    _, rows = table_rows_by_name(plane_kubectl("get", "job", name).stdout)
    assert rows[name]["STATUS"] == "Complete" and rows[name]["COMPLETIONS"] == "1/1", rows
    # Counted, the pod no longer holds the finalizer.
    pod = api.read(f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}")
    assert "batch.kubernetes.io/job-tracking" not in pod["metadata"].get("finalizers", [])


def test_kubectl_get_ds_counts_a_pod_for_each_registered_node(control_plane, plane_kubectl):
    api, name = control_plane.api, unique("ds")
    nodes = [unique("node") for _ in range(2)]
    for node in nodes:
        register_node(api, node)
        r = api.patch(f"/api/v1/nodes/{node}", json={"metadata": {"labels": {"e2e-daemon": name}}},
                      headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
    manifest = f"""
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      nodeSelector: {{e2e-daemon: {name}}}
      containers:
      - name: agent
        image: busybox
"""
    plane_kubectl("apply", "-f", "-", input=manifest)

    def counts():
        _, rows = table_rows_by_name(plane_kubectl("get", "ds", name).stdout)
        row = rows[name]
        return row if (row["DESIRED"], row["CURRENT"]) == ("2", "2") else None

    row = wait_for(f"daemon set {name} to count two pods", counts, timeout=30)
    assert row["NODE SELECTOR"] == f"e2e-daemon={name}", row
    pods = api.read(f"/api/v1/namespaces/default/pods?labelSelector=app={name}")["items"]
    targets = sorted(
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        for p in pods
    )
    assert targets == sorted(nodes)

    for pod in pods:
        mark_pod(api, "default", pod["metadata"]["name"], "Running", ready=True)

    def ready():
        _, rows = table_rows_by_name(plane_kubectl("get", "ds", name).stdout)
        row = rows[name]
        return row if (row["READY"], row["AVAILABLE"], row["UP-TO-DATE"]) == ("2", "2", "2") else None

    wait_for(f"daemon set {name} to count two ready pods", ready, timeout=30)
    plane_kubectl("delete", "ds", name)
    for node in nodes:
        api.delete(f"/api/v1/nodes/{node}")
