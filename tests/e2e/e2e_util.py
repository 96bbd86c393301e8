"""Helpers shared by the end-to-end tests: running kubectl, talking HTTP to the
apiserver, parsing kubectl's tables and checking upstream-shaped Status errors.

Fixtures live in conftest.py; this module holds plain functions and classes so
that test files can import them (`from e2e_util import ...`).
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import requests

# Every subprocess and HTTP call gets a timeout; these are the defaults.
KUBECTL_TIMEOUT = 60.0
HTTP_TIMEOUT = 15.0
WATCH_TIMEOUT = 15.0


def unique(prefix: str) -> str:
    """A DNS-1123 label that no other test uses: `prefix-<8 hex>`."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------
# kubectl


class KubectlError(AssertionError):
    pass


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n"
            f"exit code: {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


class Kubectl:
    """One kubectl binary bound to the test cluster's kubeconfig.

    `kubectl("get", "pods")` runs it and raises KubectlError (with the command,
    exit code, stdout and stderr) if it fails, unless check=False.
    """

    def __init__(self, binary: Path, version: str, kubeconfig: Path, cache_dir: Path):
        self.binary = Path(binary)
        self.version = version  # "1.37" or "1.20"
        self.kubeconfig = Path(kubeconfig)
        self.cache_dir = Path(cache_dir)

    def __repr__(self) -> str:
        return f"Kubectl({self.version}, {self.binary})"

    def argv(self, *args: Any) -> list[str]:
        return [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache_dir}",
            *[str(a) for a in args],
        ]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        # Nothing from the developer's own kubectl setup may leak in.
        for key in ("KUBECONFIG", "KUBE_EDITOR", "EDITOR", "KUBECTL_EXTERNAL_DIFF"):
            env.pop(key, None)
        env["HOME"] = str(self.cache_dir)  # kubectl writes nothing to the real ~/.kube
        if extra:
            env.update(extra)
        return env

    def __call__(
        self,
        *args: Any,
        input: str | None = None,
        timeout: float = KUBECTL_TIMEOUT,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> Result:
        argv = self.argv(*args)
        try:
            proc = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env(env),
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise KubectlError(
                f"$ {' '.join(argv)}\ntimed out after {timeout}s\n"
                f"--- stdout ---\n{_text(e.stdout)}\n--- stderr ---\n{_text(e.stderr)}"
            ) from None
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise KubectlError(result.describe())
        return result

    def fails(self, *args: Any, **kwargs: Any) -> Result:
        """Runs kubectl and asserts that it exits non-zero."""
        result = self(*args, check=False, **kwargs)
        assert result.returncode != 0, "expected kubectl to fail:\n" + result.describe()
        return result

    def json(self, *args: Any, **kwargs: Any) -> Any:
        """Runs `kubectl ARGS -o json` and parses stdout."""
        result = self(*args, "-o", "json", **kwargs)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as e:
            raise KubectlError(f"stdout is not JSON ({e}):\n{result.describe()}") from None

    def popen(self, *args: Any, env: dict[str, str] | None = None) -> "Background":
        return Background(self.argv(*args), self.env(env))


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data


class Background:
    """A long-running kubectl (e.g. `get -w`) whose stdout is read line by line
    on a thread. Always use it as a context manager: it is killed (by PID) and
    reaped on exit."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv = argv
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._out_thread = threading.Thread(target=self._pump_stdout, daemon=True)
        self._err_thread = threading.Thread(target=self._pump_stderr, daemon=True)
        self._out_thread.start()
        self._err_thread.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_for_line(self, predicate, timeout: float = WATCH_TIMEOUT, what: str = "") -> str:
        """Reads stdout until a line satisfies predicate; fails after timeout
        or if kubectl exits first. Lines read are kept in self.lines."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what or 'a matching line'}\n" + self.describe()
                )
            try:
                line = self._queue.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)  # keep reporting EOF
                self.proc.wait(timeout=5)
                raise AssertionError(
                    f"kubectl exited ({self.proc.returncode}) before printing {what or 'a matching line'}\n"
                    + self.describe()
                )
            self.lines.append(line)
            if predicate(line):
                return line

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n--- stdout so far ---\n"
            + "\n".join(self.lines)
            + "\n--- stderr so far ---\n"
            + "".join(self._stderr)
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL to this child's PID only
        try:
            self.proc.wait(timeout=10)
        finally:
            self._out_thread.join(timeout=5)
            self._err_thread.join(timeout=5)

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# kubectl's human-readable tables


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Splits kubectl's tabwriter output into (header, rows). Columns are cut
    at the offsets where the header's names start (tabwriter aligns every
    line to them), so empty cells come out as "". Header names are runs of
    words separated by single spaces (e.g. "NOMINATED NODE")."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    assert lines, f"no table in output:\n{text}"
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    header = [name for _, name in spans]
    starts = [start for start, _ in spans]
    rows = []
    for line in lines[1:]:
        cells = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            cells.append(line[start:end].strip())
        rows.append(cells)
    return header, rows


def table_rows_by_name(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    header, rows = parse_table(text)
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        out[row[0]] = dict(zip(header, row))
    return header, out


def squash(text: str) -> str:
    """Collapses all whitespace runs to one space (kubectl wraps long text)."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------
# Raw HTTP against the apiserver


class Api:
    """requests against the apiserver's base URL, with a timeout on every call."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # never go through an HTTP proxy to loopback

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    # -- conveniences that assert success --

    def create(self, path: str, obj: dict) -> dict:
        r = self.post(path, json=obj)
        assert r.status_code == 201, f"POST {path} -> {r.status_code}: {r.text}"
        return r.json()

    def read(self, path: str) -> dict:
        r = self.get(path)
        assert r.status_code == 200, f"GET {path} -> {r.status_code}: {r.text}"
        return r.json()

    def exists(self, path: str) -> bool:
        r = self.get(path)
        if r.status_code == 404:
            return False
        assert r.status_code == 200, f"GET {path} -> {r.status_code}: {r.text}"
        return True

    def snapshot(self, list_path: str) -> list[tuple[str, str, str]]:
        """(namespace, name, resourceVersion) of every item of a list: two equal
        snapshots mean nothing in that collection was created, changed or deleted."""
        body = self.read(list_path)
        return sorted(
            (
                item["metadata"].get("namespace", ""),
                item["metadata"]["name"],
                item["metadata"]["resourceVersion"],
            )
            for item in body.get("items") or []
        )


def assert_status(resp: requests.Response, code: int, reason: str) -> dict:
    """Asserts an upstream-shaped error: HTTP `code`, a JSON metav1.Status body
    with kind Status, apiVersion v1, status Failure, the same code and `reason`,
    and a message. Returns the parsed body."""
    where = f"{resp.request.method} {resp.request.url}"
    assert resp.status_code == code, f"{where}: expected HTTP {code}, got {resp.status_code}: {resp.text[:2000]}"
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/json", f"{where}: Content-Type {ctype!r}: {resp.text[:2000]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"{where}: error body is not JSON: {resp.text[:2000]}") from None
    assert body.get("kind") == "Status", body
    assert body.get("apiVersion") == "v1", body
    assert body.get("status") == "Failure", body
    assert body.get("code") == code, body
    assert body.get("reason") == reason, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def causes(status: dict) -> list[dict]:
    return list((status.get("details") or {}).get("causes") or [])


# ---------------------------------------------------------------------------
# Objects


def configmap(name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def deployment(
    name: str,
    replicas: int = 1,
    containers: Sequence[tuple[str, str]] = (("nginx", "nginx:1.25"),),
    labels: dict[str, str] | None = None,
) -> dict:
    """An apps/v1 Deployment selecting app=<name>; containers are (name, image)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": c, "image": i} for c, i in containers]},
            },
        },
    }


def service(name: str, port: int = 80, selector: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": selector or {"app": name},
            "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def ns_path(namespace: str, resource: str, name: str | None = None, group: str = "") -> str:
    """REST path of a namespaced resource: core (group "") or e.g. "apps/v1"."""
    prefix = "/api/v1" if not group else f"/apis/{group}"
    path = f"{prefix}/namespaces/{namespace}/{resource}"
    return f"{path}/{name}" if name else path


def ensure_default_service_account(api: "Api", namespace: str) -> None:
    """Creates the namespace's `default` ServiceAccount, as upstream's
    serviceaccount controller (controller-manager) would. Upstream's
    ServiceAccount admission plugin refuses pods in a namespace without it
    (403), before validation runs; no controller-manager runs in these tests.
    A server that has no serviceaccounts resource is left alone."""
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
    r = api.post(ns_path(namespace, "serviceaccounts"), json=body)
    assert r.status_code in (201, 404, 409), f"creating ServiceAccount default: {r.status_code} {r.text}"


def container_by_name(pod_spec: dict, name: str) -> dict:
    for c in pod_spec.get("containers") or []:
        if c.get("name") == name:
            return c
    raise AssertionError(f"no container {name!r} in {pod_spec.get('containers')}")


def names(items: Iterable[dict]) -> list[str]:
    return sorted(i["metadata"]["name"] for i in items)


# ---------------------------------------------------------------------------
# standing in for kubelets and waiting


def wait_for(what: str, check, timeout: float = 30.0, every: float = 0.2):
    """Calls `check()` until it returns something truthy, and returns that; a `check` that
    raises is retried too. Fails naming `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # noqa: BLE001 - a failed poll is retried until the deadline
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def register_node(api: Api, name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110") -> dict:
    """Creates a Ready node with this allocatable, as a kubelet would register it."""
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    node = api.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                      "labels": {"kubernetes.io/hostname": name}}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"capacity": resources, "allocatable": resources, "conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node",
        "lastHeartbeatTime": now, "lastTransitionTime": now}]}
    r = api.patch(f"/api/v1/nodes/{name}/status", json={"status": status},
                  headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    return node


def mark_pod(api: Api, namespace: str, name: str, phase: str = "Running", ready: bool = True) -> dict:
    """Sets a pod's phase and Ready condition through the status subresource, as its
    kubelet would."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    flag = "True" if ready else "False"
    status = {"phase": phase, "startTime": now, "podIP": "10.244.0.10", "conditions": [
        {"type": t, "status": flag, "lastTransitionTime": now} for t in ("Ready", "ContainersReady")]}
    r = api.patch(f"/api/v1/namespaces/{namespace}/pods/{name}/status", json={"status": status},
                  headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    return r.json()
