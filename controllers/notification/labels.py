"""The labels of an event's involved object, for `matchLabels`, cached briefly.

Looked up only when an Alert source has matchLabels. A short cache keeps a
burst of events about one object to one API read; labels changed within the
TTL apply a few seconds late, which is the trade Flux's informer cache makes too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from controllers.notification.event import FluxEvent
from controllers.notification.kinds import UnknownKindError, resolve_kind

log = logging.getLogger(__name__)

DEFAULT_TTL = 10.0
MAX_ENTRIES = 4096

# (apiVersion, kind, namespace, name) -> labels, None when the object is unreadable.
LabelFetch = Callable[[str, str, str, str], Awaitable[Mapping[str, str] | None]]


class LabelCache:
    def __init__(
        self,
        fetch: LabelFetch,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._entries: collections.OrderedDict[
            tuple[str, str, str, str], tuple[float, Mapping[str, str] | None]
        ] = collections.OrderedDict()

    async def labels_of(self, event: FluxEvent) -> Mapping[str, str] | None:
        key = (event.api_version, event.kind, event.namespace, event.name)
        now = self._clock()
        cached = self._entries.get(key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        labels = await self._fetch(*key)
        self._entries[key] = (now, labels)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        return labels


def kubernetes_label_fetch(api: kubernetes.client.ApiClient) -> LabelFetch:
    """Read labels with the custom objects API (every Flux kind is a custom resource)."""
    objects = kubernetes.client.CustomObjectsApi(api)

    async def fetch(
        api_version: str, kind: str, namespace: str, name: str
    ) -> Mapping[str, str] | None:
        try:
            where = resolve_kind(kind, api_version)
        except UnknownKindError as exc:
            log.warning("cannot read labels of %s/%s/%s: %s", kind, namespace, name, exc)
            return None
        try:
            obj: Any = await asyncio.to_thread(
                objects.get_namespaced_custom_object,
                where.group,
                where.version,
                namespace,
                where.plural,
                name,
            )
        except ApiException as exc:
            log.warning(
                "cannot read labels of %s/%s/%s: HTTP %s", kind, namespace, name, exc.status
            )
            return None
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    return fetch
