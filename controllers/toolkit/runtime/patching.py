"""Writes to our own custom resources: status and finalizers.

A status write happens only when the computed status differs from the live
one (a no-op reconcile writes nothing to the API server), and it
is a JSON merge patch of exactly what changed, with explicit nulls for
fields that went away. Finalizer edits carry the resourceVersion they were
computed from, so a concurrent edit makes them fail rather than clobber it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kubernetes.client
from kubernetes.client.rest import ApiException

from controllers.toolkit.runtime.reconciler import ObjectRef, Resource

log = logging.getLogger(__name__)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch turning `old` into `new` (empty when equal)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        previous = old.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            nested = merge_patch(previous, value)
            if nested:
                patch[key] = nested
        elif key not in old or previous != value:
            patch[key] = value
    return patch


class StatusPatcher:
    """Status writes for one object during one reconcile, Flux's serial patcher.

    It remembers what it last wrote (starting from the status as read), so each
    write is the merge patch from there, and writing an unchanged status is free.
    Writes never overlap: each waits for the one under way.
    """

    def __init__(self, writer: ObjectWriter, ref: ObjectRef, live: Mapping[str, Any]) -> None:
        self._writer = writer
        self.ref = ref
        self._written: Mapping[str, Any] = dict(live)
        self._lock = asyncio.Lock()
        # A write put off by `patch_later`, and whether it has begun (then it is let finish).
        self._later: asyncio.Task[None] | None = None
        self._later_writing = False

    async def patch(self, status: Mapping[str, Any]) -> bool:
        """Write `status` if it differs from what was last written; True when it did.

        A write put off by `patch_later` that has not begun is dropped: this
        one says more. One that has begun is waited for.
        """
        self.discard_later()
        async with self._lock:
            return await self._write(status)

    def patch_later(self, status: Mapping[str, Any], delay: float) -> None:
        """Write `status` in `delay` seconds, unless another write comes first.

        For a status that only says work is under way: a reconcile that ends
        within `delay` writes its outcome alone, one round trip (and one watch
        event for every watcher) less; a longer one still shows it is working.
        """
        self.discard_later()
        snapshot = dict(status)
        self._later = asyncio.create_task(self._write_later(snapshot, delay), name="status later")

    def discard_later(self) -> None:
        """Drop the write `patch_later` put off, unless it has begun."""
        later, self._later = self._later, None
        if later is not None and not self._later_writing:
            later.cancel()

    async def _write_later(self, status: Mapping[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if self._later is not asyncio.current_task():
                return  # superseded while it waited for the lock
            self._later_writing = True
            try:
                await self._write(status)
            except Exception as exc:
                # Only a progress report: the reconcile's own write follows.
                log.warning("status write of %s failed: %s", self.ref, exc)
            finally:
                self._later_writing = False
                self._later = None

    async def _write(self, status: Mapping[str, Any]) -> bool:
        written = await self._writer.patch_status(self.ref, self._written, status)
        if written:
            self._written = dict(status)
        return written


class ObjectWriter:
    """Status and finalizer writes for one custom resource kind."""

    def __init__(self, api: kubernetes.client.ApiClient, resource: Resource) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self._resource = resource

    async def patch_status(
        self, ref: ObjectRef, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> bool:
        """Write `new` over `old` if they differ; True when something was written."""
        patch = merge_patch(old, new)
        if not patch:
            return False
        resource = self._resource
        try:
            await asyncio.to_thread(
                self._objects.patch_namespaced_custom_object_status,
                resource.group,
                resource.version,
                ref.namespace,
                resource.plural,
                ref.name,
                {"status": patch},
            )
        except ApiException as exc:
            # Deleted while we worked: nothing left to report on.
            if exc.status == 404:
                return False
            raise
        return True

    async def set_finalizers(
        self, ref: ObjectRef, finalizers: list[str], resource_version: str | None = None
    ) -> None:
        metadata: dict[str, Any] = {"finalizers": finalizers}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        resource = self._resource
        try:
            await asyncio.to_thread(
                self._objects.patch_namespaced_custom_object,
                resource.group,
                resource.version,
                ref.namespace,
                resource.plural,
                ref.name,
                {"metadata": metadata},
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
