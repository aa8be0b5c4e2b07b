"""Alerts and Providers held in memory, fed by kopf's watch events.

Provider and Alert (v1beta3) have no status, so nothing is ever written to
them: the controller only needs their latest versions when an event
arrives, which a watch keeps current without a list call per event.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kopf

Object = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

GROUP = "notification.toolkit.fluxcd.io"
VERSION = "v1beta3"


class ObjectIndex:
    """The latest version of every object of one kind."""

    def __init__(self, plural: str) -> None:
        self.plural = plural
        self._objects: dict[Key, Object] = {}

    def register(self, registry: kopf.OperatorRegistry) -> None:
        @kopf.on.event(
            GROUP, VERSION, self.plural, registry=registry, id=f"notification-index-{self.plural}"
        )
        async def observe(event: kopf.RawEvent, **_: Any) -> None:
            self.observe(event["type"], event["object"])

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        if event_type == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = copy.deepcopy(dict(obj))

    def get(self, namespace: str, name: str) -> Object | None:
        """The object (shared, do not mutate), or None."""
        return self._objects.get((namespace, name))

    def objects(self) -> list[Object]:
        return list(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)


class NotificationIndex:
    """The Alerts and Providers of the cluster."""

    def __init__(self) -> None:
        self.alerts = ObjectIndex("alerts")
        self.providers = ObjectIndex("providers")

    def register(self, registry: kopf.OperatorRegistry) -> None:
        self.alerts.register(registry)
        self.providers.register(registry)
