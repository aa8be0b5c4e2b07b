"""The cluster handle integration tests get, kubectl through it, and polling."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from devcluster.cluster import run_kubectl

T = TypeVar("T")

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


@dataclass
class TestCluster:
    """What integration tests get: a kubeconfig and a kubectl bound to it."""

    __test__ = False  # not a test class, despite the name

    kubeconfig: Path
    kubectl_bin: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubectl_bin, self.kubeconfig, args, input=input, check=check)


def install_crds(cluster: TestCluster) -> None:
    """Install (or update) headwater's CRDs and wait until the API serves them."""
    if not any(CRDS_DIR.glob("*.yaml")):
        return
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.5,
    what: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def kubectl_json(cluster: TestCluster, *args: str) -> dict[str, Any]:
    """`kubectl ... -o json`, parsed; fails the test if kubectl does."""
    result: dict[str, Any] = json.loads(cluster.kubectl(*args, "-o", "json").stdout)
    return result


def get_json(cluster: TestCluster, *args: str) -> dict[str, Any] | None:
    """`kubectl get ... -o json`, or None when the object does not exist."""
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(args)} failed: {result.stderr}")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def apply(cluster: TestCluster, *documents: Mapping[str, Any]) -> None:
    """`kubectl apply` the given objects (client-side, as a user would)."""
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([dict(d) for d in documents]))


def kubeconfig_yaml(server: str, user: Mapping[str, Any], **cluster: Any) -> str:
    """A one-context kubeconfig: `server` (plus cluster fields, e.g. a CA) as `user`."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": server, **cluster}}],
            "users": [{"name": "test", "user": dict(user)}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        }
    )


def token_kubeconfig(cluster: TestCluster, namespace: str, account: str) -> str:
    """A kubeconfig for the test cluster that authenticates as a ServiceAccount's token:
    a "remote cluster" that is this one, reached as another identity (a second control
    plane is too heavy for a test; what the identity may and may not do proves the
    kubeconfig given is the one used)."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    return kubeconfig_yaml(server.pop("server"), {"token": token}, **server)


@contextlib.contextmanager
def extra_namespace(cluster: TestCluster, name: str) -> Iterator[str]:
    """A second namespace for a test that needs two; deleted (without waiting) afterwards."""
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
