"""Live updates: watches on the API, fanned out to every open page over server-sent events.

One thread per watched kind (the Flux kinds the pages show, and core Events
about Flux objects) runs a LIST then a WATCH from its resourceVersion, as the
dashboard's own identity, and starts again after a timeout, a 410 Gone or an
error (with backoff). Each change is reduced to "kind X changed" and handed
to the `Broadcaster` on the event loop; each open page holds one SSE stream
and, on a change, fetches its live region again as its own user. So the
stream carries no object data: a user learns nothing from it that their page
would not show them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes.client
import kubernetes.watch
from kubernetes.client.exceptions import ApiException

from controllers.commands.common import Session
from controllers.commands.events import is_flux_event
from controllers.commands.kinds import FluxKind

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 240
MAX_BACKOFF_SECONDS = 30.0
QUEUE_SIZE = 8


class Broadcaster:
    """Fan-out of change notices to subscribers (one asyncio.Queue per open page)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str]] = set()
        self.published = 0

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._queues.discard(queue)

    def publish(self, what: str) -> None:
        self.published += 1
        for queue in list(self._queues):
            # A page that has not read its last notices needs no more: one refresh covers all.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(what)

    @property
    def subscribers(self) -> int:
        return len(self._queues)


class Watcher:
    """Watch threads feeding a Broadcaster on `loop`."""

    def __init__(
        self,
        session: Session,
        kinds: tuple[FluxKind, ...],
        broadcaster: Broadcaster,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.session = session
        self.kinds = kinds
        self.broadcaster = broadcaster
        self.loop = loop
        self._stop = threading.Event()
        self._watches: list[kubernetes.watch.Watch] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for kind in self.kinds:
            self._spawn(kind.kind, self._custom_lister(kind), lambda _obj: True)
        self._spawn("Event", self._event_lister(), _about_flux)

    def stop(self) -> None:
        self._stop.set()
        for watch in self._watches:
            watch.stop()

    def _notify(self, what: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self.loop.call_soon_threadsafe(self.broadcaster.publish, what)

    def _custom_lister(self, kind: FluxKind) -> Callable[..., Any]:
        custom = self.session.custom
        if self.session.all_namespaces:
            return lambda **kw: custom.list_cluster_custom_object(
                kind.group, kind.version, kind.plural, **kw
            )
        namespace = self.session.namespace
        return lambda **kw: custom.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, **kw
        )

    def _event_lister(self) -> Callable[..., Any]:
        core = kubernetes.client.CoreV1Api(self.session.api)
        if self.session.all_namespaces:
            lister: Callable[..., Any] = core.list_event_for_all_namespaces
            return lister
        namespace = self.session.namespace
        return lambda **kw: core.list_namespaced_event(namespace, **kw)

    def _spawn(self, what: str, lister: Callable[..., Any], wanted: Callable[[Any], bool]) -> None:
        thread = threading.Thread(
            target=self._run, args=(what, lister, wanted), name=f"watch-{what}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _run(self, what: str, lister: Callable[..., Any], wanted: Callable[[Any], bool]) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            self._watches.append(watch)
            try:
                first = lister(limit=1)
                version = _resource_version(first)
                for event in watch.stream(
                    lister, resource_version=version, timeout_seconds=WATCH_TIMEOUT_SECONDS
                ):
                    if self._stop.is_set():
                        return
                    if event.get("type") == "ERROR":
                        break
                    if wanted(event.get("object")):
                        self._notify(what)
                backoff = 1.0
            except ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status != 410:
                    log.warning("watch of %s: %s (%s)", what, exc.reason, exc.status)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception as exc:  # a broken stream: start again, never die
                if self._stop.is_set():
                    return
                log.warning("watch of %s: %s", what, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                with contextlib.suppress(ValueError):
                    self._watches.remove(watch)
            time.sleep(0.05)


def _resource_version(listing: Any) -> str | None:
    if isinstance(listing, dict):
        return (listing.get("metadata") or {}).get("resourceVersion")
    metadata = getattr(listing, "metadata", None)
    return getattr(metadata, "resource_version", None)


def _about_flux(obj: Any) -> bool:
    if obj is None:
        return False
    if not isinstance(obj, dict):
        involved = getattr(obj, "involved_object", None)
        api_version = str(getattr(involved, "api_version", "") or "")
        return api_version.partition("/")[0].endswith(".toolkit.fluxcd.io")
    return is_flux_event(obj)
