"""Asking a Receiver's resources to reconcile now: `reconcile.fluxcd.io/requestedAt`.

Each target gets a JSON merge patch of that one annotation (nothing else of
the object is touched), with the current time in RFC 3339 with nanoseconds,
as `flux reconcile` writes it. `name: '*'` targets every object of the kind
in the namespace that carries the `matchLabels`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from controllers.notification.kinds import resolve_kind
from controllers.notification.receiver import WILDCARD, ResourceRef
from controllers.toolkit.runtime.conditions import REQUESTED_AT_ANNOTATION


class TargetError(Exception):
    pass


def rfc3339_nano(ns: int | None = None) -> str:
    """Go's RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    value = time.time_ns() if ns is None else ns
    seconds, nanos = divmod(value, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def annotation_patch(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: value}}}


class TargetAnnotator:
    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(api)

    async def request(self, ref: ResourceRef, default_namespace: str, value: str) -> list[str]:
        """Annotate the objects `ref` names; their `namespace/name`s. TargetError on failure."""
        namespace = ref.namespace or default_namespace
        where = resolve_kind(ref.kind, ref.api_version)
        if ref.name == WILDCARD:
            try:
                listed: Any = await asyncio.to_thread(
                    self._objects.list_namespaced_custom_object,
                    where.group,
                    where.version,
                    namespace,
                    where.plural,
                    label_selector=label_selector(ref.match_labels or {}),
                )
            except ApiException as exc:
                raise TargetError(
                    f"listing {ref.kind} in '{namespace}' failed: HTTP {exc.status} {exc.reason}"
                ) from None
            names = [str(item["metadata"]["name"]) for item in listed.get("items") or []]
        else:
            names = [ref.name]
        done = []
        for name in names:
            try:
                await asyncio.to_thread(
                    self._objects.patch_namespaced_custom_object,
                    where.group,
                    where.version,
                    namespace,
                    where.plural,
                    name,
                    annotation_patch(value),
                )
            except ApiException as exc:
                what = "not found" if exc.status == 404 else f"HTTP {exc.status} {exc.reason}"
                raise TargetError(
                    f"annotating {ref.kind} '{namespace}/{name}' failed: {what}"
                ) from None
            done.append(f"{namespace}/{name}")
        return done
