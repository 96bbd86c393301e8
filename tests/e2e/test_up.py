"""The local cluster as a user gets it: `hyperkube up` starts a containerized kubelet that runs
the control plane, the proxy and the cluster DNS as static pods; kubectl 1.37 then runs a
Deployment, exposes it and reaches it by name from another pod; `up` again changes nothing;
`hyperkube down` removes exactly what was made. Needs root, the Docker engine and the images
images/hyperkube/build.sh makes (scripts/test provides them); runs on the host's network, with
its own port, data directory and kubeconfig.
"""

import datetime
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import BUSYBOX, _free_port, _hyperkube_bin, _make_kubectl, docker
from e2e_util import Kubectl, wait_for


class Local:
    def __init__(self, name: str, port: int, data: Path, home: Path):
        self.name, self.port, self.data, self.home = name, port, data, home

    def run(self, command: str, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = [str(_hyperkube_bin()), command, f"--name={self.name}", f"--port={self.port}", f"--data-dir={self.data}", *flags]
        env = {**os.environ, "HOME": str(self.home)}
        env.pop("KUBECONFIG", None)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        print(f"$ {' '.join(argv)}\n{out.stdout}{out.stderr}")
        return out

    def kubelet_id(self) -> str:
        return docker("ps", "-q", "--filter", f"label=io.hyperkube.cluster={self.name}")


def _dev_state() -> tuple:
    """The host's /dev/ptmx and the mounts under /dev, which nothing of ours may change."""
    ptmx = os.stat("/dev/ptmx")
    # mountinfo: mount point, its options, then after "-" the type, source and superblock options.
    mounts = sorted((f[4], f[5], *f[f.index("-") + 1:]) for f in
                    (line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines())
                    if f[4] == "/dev" or f[4].startswith("/dev/"))
    return (ptmx.st_mode, ptmx.st_ino, ptmx.st_rdev, ptmx.st_uid, ptmx.st_gid), mounts


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("up")
    home = base / "home"
    (home / ".kube").mkdir(parents=True)
    # Someone else's context, which up and down must leave alone.
    (home / ".kube" / "config").write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: prod, cluster: {server: 'https://prod.example'}}]\n"
        "users: [{name: prod, user: {token: keep-me}}]\ncontexts: [{name: prod, context: {cluster: prod, user: prod}}]\n"
        "current-context: prod\n")
    cluster = Local(f"hk-e2e-{uuid.uuid4().hex[:6]}", _free_port(), base / "data", home)
    cluster.dev_before = _dev_state()
    # A stopped kubelet container left by an earlier, half-finished `up` is replaced.
    cluster.stale = docker("create", f"--name={cluster.name}-kubelet", f"--label=io.hyperkube.cluster={cluster.name}",
                           "hyperkube:latest", "pause")
    up = cluster.run("up", "--timeout=240s")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        cluster.up_output = up.stdout
        yield cluster
    finally:
        cluster.run("down", "--purge")


@pytest.fixture(scope="module")
def kubectl(local: Local, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return _make_kubectl("1.37", local.home / ".kube" / "config", tmp_path_factory)


def _bystander(tmp_path: Path) -> Local:
    (tmp_path / "home").mkdir()
    return Local(f"hk-e2e-{uuid.uuid4().hex[:6]}", _free_port(), tmp_path / "data", tmp_path / "home")


def _left_nothing(cluster: Local) -> None:
    assert not docker("ps", "-aq", "--filter", f"label=io.hyperkube.cluster={cluster.name}")
    assert not cluster.data.exists(), sorted(cluster.data.rglob("*"))
    assert not (cluster.home / ".kube").exists()


def test_up_without_docker_says_how_to_fix_it_and_leaves_nothing(tmp_path: Path):
    cluster = _bystander(tmp_path)
    out = cluster.run("up", f"--docker-endpoint=unix://{tmp_path}/no-docker.sock")
    assert out.returncode != 0
    assert "does not answer" in out.stderr and "start it" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, "one clear line"
    _left_nothing(cluster)


def test_up_on_a_port_in_use_says_how_to_fix_it_and_leaves_nothing(tmp_path: Path):
    cluster = _bystander(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", cluster.port))
        taken.listen()
        out = cluster.run("up")
    assert out.returncode != 0
    assert f"port {cluster.port} on 127.0.0.1 is in use" in out.stderr and "--port" in out.stderr, out.stderr
    _left_nothing(cluster)


def test_up_with_a_system_pods_port_taken_says_which_and_leaves_nothing(tmp_path: Path):
    cluster = _bystander(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 10250))
        taken.listen()
        out = cluster.run("up")
    assert out.returncode != 0
    assert "10250 (the kubelet)" in out.stderr and "in use" in out.stderr, out.stderr
    _left_nothing(cluster)


def test_up_says_what_it_waits_for_and_writes_a_context_beside_the_others(local: Local, kubectl: Kubectl):
    assert local.kubelet_id() and not local.stale.startswith(local.kubelet_id()), "the stale container was replaced"
    for stage in ("the apiserver to answer", "the node to be Ready", "the system pods to run"):
        assert f"waiting for {stage}" in local.up_output, local.up_output
    config = (local.home / ".kube" / "config").read_text()
    assert "keep-me" in config and "prod.example" in config, config
    assert kubectl("config", "current-context").stdout.strip() == local.name
    nodes = kubectl.json("get", "nodes")["items"]
    assert [c["status"] for n in nodes for c in n["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    pods = {p["metadata"]["name"].rsplit("-", 1)[0]: p["status"]["phase"]
            for p in kubectl.json("get", "pods", "-n", "kube-system")["items"]}
    assert pods == {"k8s-master": "Running", "kube-proxy": "Running", "kube-dns": "Running"}, pods
    # The kubelet container asks for nothing more than it needs.
    inspect = json.loads(docker("inspect", local.kubelet_id()))[0]["HostConfig"]
    assert inspect["Privileged"] is False and not inspect["Devices"], inspect
    assert inspect["RestartPolicy"]["Name"] == "always"
    assert _dev_state() == local.dev_before, "the host's /dev changed while the cluster runs"


def test_a_deployment_is_reached_by_its_service_name_from_another_pod(local: Local, kubectl: Kubectl):
    kubectl("create", "deployment", "web", "--replicas=3", f"--image={BUSYBOX}", "--",
            "sh", "-c", "echo web version ${VERSION:-1} serving; echo hello-through-the-service > /tmp/index.html"
            " && exec httpd -f -p 8080 -h /tmp")
    kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    kubectl("rollout", "status", "deployment/web", "--timeout=120s")
    assert kubectl.json("get", "deployment", "web")["status"]["readyReplicas"] == 3
    cluster_ip = kubectl.json("get", "service", "web")["spec"]["clusterIP"]
    kubectl("run", "client", f"--image={BUSYBOX}", "--restart=Never", "--",
            "sh", "-c", f"until wget -q -O- http://{cluster_ip}/ && wget -q -O- http://web/; do sleep 1; done")
    wait_for("the client to get the page by ClusterIP, then by name through DNS",
             lambda: kubectl.json("get", "pod", "client")["status"].get("phase") == "Succeeded", timeout=120)
    assert kubectl("logs", "client").stdout.count("hello-through-the-service") >= 2


def _web_pods(kubectl: Kubectl) -> list[dict]:
    return kubectl.json("get", "pods", "-l", "app=web")["items"]


def _running_and_ready(pod: dict) -> bool:
    conditions = pod["status"].get("conditions", [])
    return pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp") \
        and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_the_deployment_scales_rolls_out_a_new_version_logs_and_goes(local: Local, kubectl: Kubectl):
    kubectl("scale", "deployment/web", "--replicas=5")
    kubectl("rollout", "status", "deployment/web", "--timeout=120s")
    wait_for("5 web pods running and ready",
             lambda: len([p for p in _web_pods(kubectl) if _running_and_ready(p)]) == 5, timeout=60)

    kubectl("set", "env", "deployment/web", "VERSION=2")
    kubectl("rollout", "status", "deployment/web", "--timeout=120s")

    def rolled_out():
        pods = _web_pods(kubectl)
        env = [{e["name"]: e.get("value") for e in p["spec"]["containers"][0].get("env", [])} for p in pods]
        return len(pods) == 5 and all(_running_and_ready(p) for p in pods) and all(e.get("VERSION") == "2" for e in env)
    wait_for("the 5 pods of the new version, and no old one", rolled_out, timeout=120)
    assert "2" in kubectl("rollout", "history", "deployment/web").stdout
    assert "web version 2 serving" in kubectl("logs", "deployment/web").stdout

    kubectl("delete", "deployment", "web")
    wait_for("the web pods to go", lambda: not _web_pods(kubectl), timeout=120)
    wait_for("their containers to go", lambda: not docker(
        "ps", "-aq", "--filter", "label=io.kubernetes.pod.namespace=default",
        "--filter", "label=io.kubernetes.container.name=busybox"), timeout=60)


VOLUME_POD = """
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  containers:
  - name: reader
    image: %s
    command: [sh, -c, "while true; do echo \\"$(cat /config/greeting) $(cat /secret/password)\\"; sleep 1; done"]
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: secret, mountPath: /secret, readOnly: true}
  volumes:
  - name: config
    configMap: {name: settings}
  - name: secret
    secret: {secretName: credentials}
""" % BUSYBOX


def test_a_pod_reads_its_secret_and_configmap_through_the_kubelets_mounts(local: Local, kubectl: Kubectl):
    kubectl("create", "configmap", "settings", "--from-literal=greeting=hello-from-a-configmap")
    kubectl("create", "secret", "generic", "credentials", "--from-literal=password=s3cret-from-a-secret")
    kubectl("apply", "-f", "-", input=VOLUME_POD)
    wait_for("the reader to print both", lambda: "hello-from-a-configmap s3cret-from-a-secret"
             in kubectl("logs", "reader").stdout, timeout=90)
    # The kubelet, in its container, rewrites the file; the pod sees it through the shared mount.
    kubectl("patch", "configmap", "settings", "-p", '{"data": {"greeting": "changed-in-place"}}')
    wait_for("the reader to see the new value", lambda: "changed-in-place s3cret-from-a-secret"
             in kubectl("logs", "reader").stdout, timeout=90)


def _objects(kubectl: Kubectl) -> dict[str, list[str]]:
    """Names and resourceVersions of what the tests made, to compare across failures."""
    objects = {}
    for kind in ("configmaps", "secrets", "services", "pods", "serviceaccounts", "namespaces"):
        items = kubectl.json("get", kind, "-A")["items"]
        objects[kind] = sorted(f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in items
                               if kind != "pods" or i["metadata"].get("namespace") == "default")
    objects["settings"] = [kubectl.json("get", "configmap", "settings")["metadata"]["resourceVersion"]]
    return objects


def _system_container(name: str) -> str:
    return docker("ps", "-q", "--filter", "label=io.kubernetes.pod.namespace=kube-system",
                  "--filter", f"label=io.kubernetes.container.name={name}")


def test_a_killed_apiserver_container_comes_back_with_every_object(local: Local, kubectl: Kubectl):
    before = _objects(kubectl)
    killed = _system_container("apiserver")
    assert killed, "the apiserver container runs"
    docker("kill", killed)
    wait_for("a new apiserver container", lambda: _system_container("apiserver") not in ("", killed), timeout=120)
    after = wait_for("the apiserver to answer again", lambda: _objects(kubectl), timeout=120)
    assert after == before


def _node_name() -> str:
    return subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip().lower()


def _pod_containers() -> dict[str, str]:
    """Each running pod container of this node, with when it started."""
    ids = docker("ps", "-q", "--filter", f"label=io.hyperkube.node={_node_name()}").split()
    return dict(line.split() for line in docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *ids).splitlines())


def test_restarting_the_kubelet_container_leaves_every_pod_running(local: Local, kubectl: Kubectl):
    before = _pod_containers()
    restarted = time.time()
    docker("restart", "--time=2", local.kubelet_id())

    def heartbeat_after_restart():
        node = kubectl.json("get", "nodes")["items"][0]
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        beat = datetime.datetime.fromisoformat(ready["lastHeartbeatTime"].replace("Z", "+00:00")).timestamp()
        return ready["status"] == "True" and beat >= restarted
    wait_for("the restarted kubelet to report the node Ready", heartbeat_after_restart, timeout=120)
    # The new kubelet has synced every pod at start; give it a few relists to act on what it saw.
    time.sleep(5)
    assert _pod_containers() == before, "the new kubelet adopted the running containers, untouched"


def test_restarting_every_container_of_the_cluster_brings_it_back_by_itself(local: Local, kubectl: Kubectl):
    kubectl("create", "deployment", "survivor", f"--image={BUSYBOX}", "--",
            "sh", "-c", "echo survived > /tmp/index.html && exec httpd -f -p 8080 -h /tmp")
    kubectl("expose", "deployment", "survivor", "--port=80", "--target-port=8080")
    kubectl("rollout", "status", "deployment/survivor", "--timeout=120s")
    survivor = f"http://{kubectl.json('get', 'service', 'survivor')['spec']['clusterIP']}/"
    wait_for("the survivor to answer by ClusterIP", lambda: "survived" in requests.get(survivor, timeout=3).text)
    before = _objects(kubectl)
    ours = [local.kubelet_id(), *docker("ps", "-q", "--filter", f"label=io.hyperkube.node={_node_name()}").split()]
    docker("restart", "--time=2", *ours)

    def ready_node():
        nodes = kubectl.json("get", "nodes")["items"]
        return [c["status"] for n in nodes for c in n["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    wait_for("the node to be Ready again", ready_node, timeout=180)
    # Every pod runs again, but the client that had run to completion before.
    wait_for("the system pods and the reader to run again", lambda: all(
        p["status"].get("phase") == ("Succeeded" if p["metadata"]["name"] == "client" else "Running")
        for p in kubectl.json("get", "pods", "-A")["items"]), timeout=180)
    assert _objects(kubectl) == before
    # Its sandbox restarted under it, the survivor's pod starts again, reachable as before.
    wait_for("the survivor to answer again", lambda: "survived" in requests.get(survivor, timeout=3).text, timeout=120)
    kubectl("delete", "deployment", "survivor")
    kubectl("run", "after-restart", f"--image={BUSYBOX}", "--restart=Never", "--", "echo", "a-new-pod-runs")
    wait_for("a new pod to run to completion",
             lambda: kubectl.json("get", "pod", "after-restart")["status"].get("phase") == "Succeeded", timeout=120)
    assert "a-new-pod-runs" in kubectl("logs", "after-restart").stdout
    kubectl("delete", "pod", "after-restart")


def test_up_again_changes_nothing_and_status_reports(local: Local):
    before = local.kubelet_id()
    again = local.run("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "running already" in again.stdout
    assert local.kubelet_id() == before, "the same kubelet container"
    status = local.run("status")
    assert status.returncode == 0
    assert "apiserver" in status.stdout and "ready" in status.stdout, status.stdout
    assert "pod kube-system/kube-dns" in status.stdout


def test_down_removes_what_up_made_and_keeps_the_data(local: Local):
    down = local.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not docker("ps", "-aq", "--filter", f"label=io.hyperkube.cluster={local.name}")
    assert not docker("ps", "-aq", "--filter", f"label=io.hyperkube.node={_node_name()}")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "KUBE-" not in rules
    assert "hyperkube0" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    mount_points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    ours = [m for m in mount_points if m.startswith(("/var/lib/kubelet", str(local.data)))]
    assert not ours, ours
    assert _dev_state() == local.dev_before, "the host's /dev is not as it was before up"
    config = (local.home / ".kube" / "config").read_text()
    assert local.name not in config and "keep-me" in config, config
    assert (local.data / "data").is_dir(), "the store stays without --purge"
    # Down again, and on a cluster that is gone, is harmless.
    assert local.run("down").returncode == 0
