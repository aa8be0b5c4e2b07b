"""Reading Flux objects back: conditions, events, reconcile requests and waiting on status.

Every helper that names one object takes `(cluster, namespace, kind, name)` in that order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from tests.support.cluster import TestCluster, get_json, kubectl_json

Check = Callable[[dict[str, Any]], bool]


def condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The condition of `type_` in an object's (or a status') conditions, if any."""
    if not obj:
        return None
    status = (obj.get("status") or {}) if "metadata" in obj else obj
    for found in status.get("conditions") or []:
        if found.get("type") == type_:
            return dict(found)
    return None


def get_object(cluster: TestCluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """The object as the API server has it now; fails the test when it does not exist."""
    return kubectl_json(cluster, "get", kind, name, "-n", namespace)


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


def wait_for_object(
    cluster: TestCluster,
    namespace: str,
    kind: str,
    name: str,
    check: Check,
    *,
    timeout: float = 60.0,
    what: str = "",
) -> dict[str, Any]:
    """Poll an object until `check(obj)` holds; returns the object.

    On timeout the error shows the last status seen, which is what explains it.
    """
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        obj = get_json(cluster, kind, name, "-n", namespace)
        if obj is not None and check(obj):
            return obj
        time.sleep(0.5)
    shown = json.dumps((obj or {}).get("status"), indent=1)[:4000]
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or kind} "
        f"({namespace}/{name}); last status: {shown}"
    )


def wait_for_kustomization(
    cluster: TestCluster,
    namespace: str,
    name: str,
    check: Check,
    *,
    timeout: float = 60.0,
    what: str = "",
) -> dict[str, Any]:
    """`wait_for_object` for the kind most tests wait on."""
    return wait_for_object(
        cluster, namespace, "kustomization", name, check, timeout=timeout, what=what
    )


def wait_for_helmrelease(
    cluster: TestCluster,
    namespace: str,
    name: str,
    check: Check,
    *,
    timeout: float = 90.0,
    what: str = "",
) -> dict[str, Any]:
    """`wait_for_object` for HelmReleases; helm installs and upgrades take a while."""
    return wait_for_object(
        cluster, namespace, "helmrelease", name, check, timeout=timeout, what=what
    )


def is_ready(status: str = "True", reason: str | None = None) -> Check:
    """Ready=`status`; for "True" also the current generation observed.

    Like Flux, observedGeneration moves only on success (or a stall); a failure
    that will be retried keeps the last generation it fully handled.
    """

    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        if not ready or ready["status"] != status or (reason and ready["reason"] != reason):
            return False
        return status != "True" or (
            (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        )

    return check


def has_condition(type_: str, status: str, reason: str | None = None) -> Check:
    """Condition `type_` is `status` (and has `reason`, when given); any generation."""

    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, type_)
        return bool(
            found and found["status"] == status and (reason is None or found["reason"] == reason)
        )

    return check


def wait_ready(
    cluster: TestCluster,
    namespace: str,
    kind: str,
    name: str,
    status: str = "True",
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Wait until the object reports Ready=`status` (and `reason`; see `is_ready`)."""
    return wait_for_object(
        cluster,
        namespace,
        kind,
        name,
        is_ready(status, reason),
        timeout=timeout,
        what=f"{kind} {name} Ready={status} {reason or ''}".rstrip(),
    )


def applied(revision: str) -> Check:
    """Ready=True with `lastAppliedRevision` ending in `revision` (a commit id will do)."""

    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return is_ready()(obj) and str(status.get("lastAppliedRevision") or "").endswith(revision)

    return check


def failed_on(revision: str) -> Check:
    """Ready=False after attempting `revision` (a commit id will do)."""

    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return is_ready("False")(obj) and str(status.get("lastAttemptedRevision") or "").endswith(
            revision
        )

    return check


def ready_message(obj: Mapping[str, Any]) -> str:
    """The Ready condition's message, empty when there is none."""
    return str((condition(obj, "Ready") or {}).get("message", ""))


def configmap_data(cluster: TestCluster, namespace: str, name: str) -> dict[str, str] | None:
    """A ConfigMap's data, None while it does not exist."""
    found = get_json(cluster, "configmap", name, "-n", namespace)
    return None if found is None else dict(found.get("data") or {})


def deployment_available(cluster: TestCluster, namespace: str, name: str) -> bool:
    """The Deployment exists and says Available=True (kwok makes its pods ready)."""
    found = get_json(cluster, "deployment", name, "-n", namespace)
    return bool(found) and any(
        c["type"] == "Available" and c["status"] == "True"
        for c in (found or {}).get("status", {}).get("conditions", [])
    )
