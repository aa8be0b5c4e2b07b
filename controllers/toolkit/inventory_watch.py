"""Watch the objects a controller applied, to heal changes made outside git.

One watch per kind that appears in any inventory, filtered on the server by
the owner label, so the cost is proportional to what we manage, not to the
cluster. Watches run on threads with the kubernetes client (its watch
handles chunked streams and bookmarks) and hand events to the event loop.

Only changes someone else made matter: a deletion always does; a
modification does when the newest managed-fields entry belongs to another
field manager (our own applies come back as events too, and must not wake
the reconcile that just made them).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import kubernetes.dynamic
import kubernetes.watch
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

# Server-side watch timeout: the thread wakes this often to check for stop.
WATCH_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class WatchedKind:
    api_version: str
    kind: str


@dataclass(frozen=True)
class ForeignChange:
    """An applied object changed or deleted by someone else."""

    event_type: str  # MODIFIED | DELETED
    obj: Mapping[str, Any]
    manager: str | None  # the field manager that made the change, when known


OnChange = Callable[[ForeignChange], None]


def last_manager(obj: Mapping[str, Any], ours: str | None = None) -> str | None:
    """The field manager of the newest change to the object's spec or metadata.

    Status writes (the controller manager updating a rollout's progress) are
    not drift, so entries for the status subresource are left out. Times have
    one-second resolution: when another manager's entry ties with `ours`, the
    other one is taken, since an edit right after our apply must not pass for it.
    """
    entries = [
        entry
        for entry in (obj.get("metadata") or {}).get("managedFields") or []
        if entry.get("subresource") != "status"
    ]
    if not entries:
        return None
    # Writes through the scale subresource (kubectl scale) are recorded without a
    # time; such an entry is the newest change, not the oldest. Our next apply
    # takes its fields back, and the entry goes with them.
    timeless = [entry for entry in entries if not entry.get("time")]
    if timeless:
        newest = timeless
    else:
        latest = max(str(entry["time"]) for entry in entries)
        newest = [entry for entry in entries if str(entry["time"]) == latest]
    others = [entry for entry in newest if entry.get("manager") != ours]
    manager = (others or newest)[-1].get("manager")
    return str(manager) if manager else None


def is_foreign(event_type: str, obj: Mapping[str, Any], field_manager: str) -> bool:
    if event_type == "DELETED":
        # Objects being pruned by us also end in DELETED; the reconcile that
        # follows finds nothing to do, so a spurious wake-up is harmless.
        return True
    if event_type != "MODIFIED":
        return False
    return last_manager(obj, field_manager) not in (field_manager, None)


class InventoryWatcher:
    """Starts one label-filtered watch per kind on demand; stops them all on close."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        label_selector: str,
        field_manager: str,
        on_change: OnChange,
    ) -> None:
        self._dynamic = kubernetes.dynamic.DynamicClient(api)
        self._label_selector = label_selector
        self._field_manager = field_manager
        self._on_change = on_change
        self._threads: dict[WatchedKind, threading.Thread] = {}
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def ensure(self, kinds: set[WatchedKind]) -> None:
        """Watch every kind in `kinds` (kinds already watched are left alone)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        with self._lock:
            for kind in kinds - self._threads.keys():
                log.debug(
                    "watching %s %s for changes made outside git", kind.api_version, kind.kind
                )
                thread = threading.Thread(
                    target=self._watch,
                    args=(kind,),
                    name=f"watch {kind.api_version} {kind.kind}",
                    daemon=True,
                )
                self._threads[kind] = thread
                thread.start()

    def watched(self) -> set[WatchedKind]:
        with self._lock:
            return set(self._threads)

    def close(self) -> None:
        self._stop.set()

    def _deliver(self, change: ForeignChange) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_change, change)

    def _watch(self, kind: WatchedKind) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                resource = self._dynamic.resources.get(api_version=kind.api_version, kind=kind.kind)
                listing = resource.get(label_selector=self._label_selector)
                version = listing.metadata.resourceVersion
                # Edits made before this (re)list never arrive as events: report
                # the objects whose newest change is someone else's now.
                for item in listing.items:
                    raw = item.to_dict()
                    if is_foreign("MODIFIED", raw, self._field_manager):
                        self._deliver(
                            ForeignChange("MODIFIED", raw, last_manager(raw, self._field_manager))
                        )
                watcher = kubernetes.watch.Watch()
                for event in self._dynamic.watch(
                    resource,
                    label_selector=self._label_selector,
                    resource_version=version,
                    timeout=WATCH_TIMEOUT_SECONDS,
                    watcher=watcher,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        watcher.stop()
                        return
                    event_type = str(event.get("type"))
                    raw = event.get("raw_object") or {}
                    if is_foreign(event_type, raw, self._field_manager):
                        self._deliver(
                            ForeignChange(event_type, raw, last_manager(raw, self._field_manager))
                        )
                backoff = 1.0
            except ApiException as exc:
                # 410 Gone: our resourceVersion is too old; list again at once.
                if exc.status != 410:
                    log.warning("watch of %s failed: %s", kind.kind, exc.reason)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # the watch must survive API hiccups
                log.warning("watch of %s failed: %s", kind.kind, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
