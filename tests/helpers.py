"""Helpers integration tests import: the cluster handle and polling."""

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
    result: dict[str, Any] = json.loads(cluster.kubectl(*args, "-o", "json").stdout)
    return result


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


# -- Flux objects and their status, for the controllers' end-to-end tests ------------------


def get_json(cluster: TestCluster, *args: str) -> dict[str, Any] | None:
    """`kubectl get ... -o json`, or None when the object does not exist."""
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(args)} failed: {result.stderr}")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def apply_manifests(cluster: TestCluster, *documents: Mapping[str, Any]) -> None:
    """`kubectl apply` the given objects (client-side, as a user would)."""
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([dict(d) for d in documents]))


def condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The condition of `type_` in an object's (or a status') conditions, if any."""
    if not obj:
        return None
    status = (obj.get("status") or {}) if "metadata" in obj else obj
    for found in status.get("conditions") or []:
        if found.get("type") == type_:
            return dict(found)
    return None


def request_reconcile(cluster: TestCluster, namespace: str, kind: str, name: str) -> str:
    """Set `reconcile.fluxcd.io/requestedAt` (as `flux reconcile` does); returns the token."""
    token = str(time.time_ns())
    cluster.kubectl(
        "annotate",
        "--overwrite",
        kind,
        name,
        "-n",
        namespace,
        f"reconcile.fluxcd.io/requestedAt={token}",
    )
    return token


def git_repository(namespace: str, name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "10m", "url": url, **spec},
    }


def kustomization(
    namespace: str, name: str, source: str, path: str = "./", **spec: Any
) -> dict[str, Any]:
    """A Kustomization of GitRepository `source` (in the same namespace unless spec says)."""
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "10m",
            "sourceRef": {"kind": "GitRepository", "name": source},
            "path": path,
            "prune": True,
            **spec,
        },
    }


def wait_for_kustomization(
    cluster: TestCluster,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 60.0,
    what: str = "",
) -> dict[str, Any]:
    """Poll a Kustomization until `check(obj)` holds; returns the object.

    On timeout the error shows the last status seen, which is what explains it.
    """
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        obj = get_json(cluster, "kustomization", name, "-n", namespace)
        if obj is not None and check(obj):
            return obj
        time.sleep(0.5)
    shown = json.dumps((obj or {}).get("status"), indent=1)[:4000]
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or 'Kustomization'} "
        f"({namespace}/{name}); last status: {shown}"
    )


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    """Ready=True with `lastAppliedRevision` ending in `revision` (a commit id will do)."""

    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        status = obj.get("status") or {}
        return bool(
            ready
            and ready["status"] == "True"
            and str(status.get("lastAppliedRevision") or "").endswith(revision)
            and status.get("observedGeneration") == obj["metadata"]["generation"]
        )

    return check


def failed_on(revision: str) -> Callable[[dict[str, Any]], bool]:
    """Ready=False after attempting `revision` (a commit id will do)."""

    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        status = obj.get("status") or {}
        return bool(
            ready
            and ready["status"] == "False"
            and str(status.get("lastAttemptedRevision") or "").endswith(revision)
        )

    return check


def events_for(
    cluster: TestCluster, namespace: str, kind: str, name: str, reason: str | None = None
) -> list[dict[str, Any]]:
    """The core/v1 Events about an object, oldest first, optionally of one reason."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    if reason:
        selector += f",reason={reason}"
    listing = kubectl_json(cluster, "get", "events", "-n", namespace, "--field-selector", selector)
    items: list[dict[str, Any]] = listing.get("items") or []
    return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


@contextlib.contextmanager
def extra_namespace(cluster: TestCluster, name: str) -> Iterator[str]:
    """A second namespace for a test that needs two; deleted (without waiting) afterwards."""
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
