"""The health wait of a Kustomization, seen from outside while `reconcile` waits.

The controller writes its status at the start and at the end of a reconcile,
so the conditions alone do not show a health wait moving. While waiting, the
CLI reads the objects the controller waits on itself (`spec.healthChecks`,
else with `spec.wait` the inventory) and reads their health with the same
kstatus rules (controllers/toolkit/apply/health.py). The first look reports
only what is not Current yet; later looks report each change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controllers.toolkit.apply import health
from controllers.toolkit.apply.inventory import Inventory, InventoryError, ObjectId

# (apiVersion, kind, namespace, name) -> the live object, or None when it does not exist.
Reader = Callable[[str, str, str, str], Mapping[str, Any] | None]
Target = tuple[str, ObjectId]


def targets(obj: Mapping[str, Any]) -> list[Target]:
    """(apiVersion, id) of what the Kustomization's health wait covers; [] when none."""
    spec = obj.get("spec") or {}
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    checks = spec.get("healthChecks") or []
    if checks:
        found = []
        for ref in checks:
            if isinstance(ref, Mapping) and ref.get("kind") and ref.get("name"):
                api_version = str(ref.get("apiVersion") or "")
                group = api_version.rpartition("/")[0]
                ns = str(ref.get("namespace") or namespace)
                found.append((api_version, ObjectId(group, str(ref["kind"]), ns, str(ref["name"]))))
        return found
    if spec.get("wait") is not True:
        return []
    try:
        inventory = Inventory.from_status((obj.get("status") or {}).get("inventory"))
    except InventoryError:
        return []
    return [(entry.api_version, entry.id) for entry in inventory]


class HealthProgress:
    """Remembers each target's last status; `look()` returns what is new to report."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._seen: dict[ObjectId, health.ObjectStatus] = {}
        self._first = True

    def look(self, obj: Mapping[str, Any]) -> list[tuple[ObjectId, health.ObjectStatus]]:
        news = []
        for api_version, object_id in targets(obj):
            live = self._read(api_version, object_id.kind, object_id.namespace, object_id.name)
            status = (
                health.compute_status(live)
                if live is not None
                else health.ObjectStatus(health.Status.NOT_FOUND, "not in the cluster yet")
            )
            before = self._seen.get(object_id)
            self._seen[object_id] = status
            if before == status:
                continue
            if before is None and self._first and status.status is health.Status.CURRENT:
                continue
            news.append((object_id, status))
        self._first = False
        return news
