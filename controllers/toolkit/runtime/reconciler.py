"""Level-based reconciles on top of kopf's watch streams.

Kopf's change handlers are edge-triggered; Flux's controllers are level-based.
This module bridges the two the way controller-runtime does: kopf's raw
watch events (`@kopf.on.event`, which keeps no state on the object) feed an
in-memory cache and a work queue, and the queue runs a reconcile function
per object:

- when an object is first seen, its spec changes (generation), its
  `reconcile.fluxcd.io/requestedAt` annotation changes, it is being deleted,
  or it lacks our finalizer;
- when something else asks (`request()`), e.g. a source's new artifact;
- after the delay the last reconcile returned (interval or retryInterval).

Events caused only by our own status writes enqueue nothing, so a reconcile
never triggers itself. At most one reconcile per object runs at a time, and
the controller's `ReconcileSlots` bounds how many run at once. Requests that
arrive while an object is being reconciled are folded into one more run.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from controllers.toolkit.runtime import conditions, observability
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.selectors import LabelSelector

log = logging.getLogger(__name__)

Object = dict[str, Any]


@dataclass(frozen=True, order=True)
class ObjectRef:
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        metadata = obj.get("metadata") or {}
        return cls(metadata.get("namespace") or "", metadata["name"])

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Resource:
    """The custom resource a reconciler serves."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


@dataclass(frozen=True)
class Outcome:
    """What a reconcile reports back to the queue."""

    requeue_after: float | None = None


ReconcileFn = Callable[[Object], Awaitable[Outcome]]
# Returns True once the object's resources are cleaned up and the finalizer may go.
FinalizeFn = Callable[[Object], Awaitable[bool]]
# Adds or removes a finalizer on the live object; raises on API errors.
FinalizerPatchFn = Callable[[ObjectRef, list[str]], Awaitable[None]]
# Told of every change seen on the watch: (previous version or None, new version or None).
ObserverFn = Callable[[Object | None, Object | None], None]
# The index keys an object is found under (e.g. the source it points at).
IndexKeyFn = Callable[[Object], Iterable[Hashable]]

# Flux's finalizer, so objects moved between Flux and headwater keep working.
FINALIZER = "finalizers.fluxcd.io"


def enqueue_reason(
    previous: Mapping[str, Any], current: Mapping[str, Any], finalizer: str
) -> str | None:
    """Why this change of an object needs a reconcile, or None if it does not.

    Like controller-runtime's predicates, it looks at what changed between two
    versions, not at the status: Flux moves observedGeneration only on success,
    so "generation != observedGeneration" stays true while an object keeps
    failing, and would turn each of our own status writes into a new run.
    Failures are retried by the Outcome's requeue instead.
    """
    old_meta = previous.get("metadata") or {}
    metadata = current.get("metadata") or {}
    finalizers = metadata.get("finalizers") or []
    if metadata.get("deletionTimestamp"):
        started = not old_meta.get("deletionTimestamp")
        return "deletion" if started and finalizer in finalizers else None
    if finalizer not in finalizers:
        return "finalizer missing"
    if metadata.get("generation") != old_meta.get("generation"):
        return "spec changed"
    requested = conditions.requested_at(metadata.get("annotations"))
    if requested != conditions.requested_at(old_meta.get("annotations")) and (
        conditions.reconcile_requested(current.get("status"), metadata.get("annotations"))
    ):
        return "reconcile requested"
    return None


# Kept out of cached copies: nothing reads them from a cache (drift detection reads
# applied objects' managedFields from its own watch events, the apply engine from
# live objects), and with a few field managers per object they are the biggest
# part of its metadata. Writes are patches, which leave the server's copy alone.
UNCACHED_METADATA = frozenset({"managedFields"})


def cached_copy(obj: Mapping[str, Any]) -> Object:
    """A deep copy of `obj` for a cache, without `UNCACHED_METADATA`."""
    copied: Object = {}
    for key, value in obj.items():
        if key == "metadata" and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in UNCACHED_METADATA}
        copied[key] = copy.deepcopy(value)
    return copied


class WatchCache:
    """The latest version of every object of one kind, fed by kopf's watch events.

    Observers hear of every change, which is how objects that depend on
    others (a Kustomization on its source, a repository on its includes)
    get requeued without polling. Declared indexes (Flux's field indexes)
    find those dependents by key instead of a scan over every object; they
    are up to date before observers run.
    """

    # Kopf handler ids must be unique per registry, and `run all` may watch
    # one kind from several controllers (the kustomize controller reads the
    # GitRepositories the source controller reconciles).
    _ids = itertools.count(1)

    def __init__(self, resource: Resource, selector: LabelSelector | None = None) -> None:
        self.resource = resource
        # Flux's --watch-label-selector: objects that do not match are not
        # ours, so the cache holds none of them (see `observe`).
        self.selector = selector if selector is not None and not selector.empty else None
        self.handler_id = f"watch-{resource.plural}-{next(WatchCache._ids)}"
        self._objects: dict[ObjectRef, Object] = {}
        self._observers: list[ObserverFn] = []
        self._index_keys: dict[str, IndexKeyFn] = {}
        # index name -> key -> the refs of the objects under that key
        self._indexes: dict[str, dict[Hashable, set[ObjectRef]]] = {}
        # index name -> ref -> the keys the object is under now
        self._indexed_keys: dict[str, dict[ObjectRef, frozenset[Hashable]]] = {}

    def register(self, registry: kopf.OperatorRegistry) -> None:
        resource = self.resource

        @kopf.on.event(
            resource.group,
            resource.version,
            resource.plural,
            registry=registry,
            id=self.handler_id,
        )
        async def observe_event(event: kopf.RawEvent, **_: Any) -> None:
            self.observe(event["type"], event["object"])

    def add_observer(self, observer: ObserverFn) -> None:
        self._observers.append(observer)

    def add_index(self, name: str, key_fn: IndexKeyFn) -> None:
        """Keep objects findable by the keys `key_fn` gives them (see `indexed`)."""
        if name in self._index_keys:
            raise ValueError(f"index {name!r} is already declared")
        self._index_keys[name] = key_fn
        self._indexes[name] = {}
        self._indexed_keys[name] = {}
        for ref, obj in self._objects.items():
            self._reindex(name, ref, obj)

    def indexed(self, name: str, key: Hashable) -> list[Object]:
        """The cached objects under `key` in index `name`, read-only like `view`."""
        if name not in self._indexes:
            raise KeyError(f"no index {name!r} is declared")
        refs = self._indexes[name].get(key) or ()
        return [self._objects[ref] for ref in sorted(refs, key=str) if ref in self._objects]

    def _reindex(self, name: str, ref: ObjectRef, obj: Object | None) -> None:
        keys = frozenset(self._index_keys[name](obj)) if obj is not None else frozenset()
        index, indexed = self._indexes[name], self._indexed_keys[name]
        old = indexed.get(ref, frozenset())
        if keys == old:
            return
        for key in old - keys:
            members = index.get(key)
            if members is not None:
                members.discard(ref)
                if not members:
                    del index[key]
        for key in keys - old:
            index.setdefault(key, set()).add(ref)
        if keys:
            indexed[ref] = keys
        else:
            indexed.pop(ref, None)

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        ref = ObjectRef.of(obj)
        previous = self._objects.get(ref)
        current: Object | None = None
        # An object that stops matching the selector (its shard label changed)
        # leaves the cache as if deleted: another instance owns it now.
        outside = self.selector is not None and not self.selector.matches_object(obj)
        if outside and previous is None:
            return
        if event_type == "DELETED" or outside:
            self._objects.pop(ref, None)
        else:
            current = self._objects[ref] = cached_copy(obj)
        for name in self._index_keys:
            self._reindex(name, ref, current)
        for observer in self._observers:
            observer(previous, current)

    def contains(self, ref: ObjectRef) -> bool:
        return ref in self._objects

    def get(self, ref: ObjectRef) -> Object | None:
        obj = self._objects.get(ref)
        return copy.deepcopy(obj) if obj is not None else None

    def peek(self, ref: ObjectRef) -> Object | None:
        """The cached object itself, for a read-only look: never modify it (see `view`)."""
        return self._objects.get(ref)

    def view(self) -> list[Object]:
        """The cached objects themselves, for read-only scans: never modify them.

        Observers scan every object on each change (who depends on this one?);
        copying them all there made that quadratic in the number of objects.
        """
        return list(self._objects.values())

    def update(self, ref: ObjectRef, change: Callable[[Object], None]) -> None:
        """Apply our own write to the cached copy before the watch brings it back."""
        cached = self._objects.get(ref)
        if cached is not None:
            change(cached)
            for name in self._index_keys:
                self._reindex(name, ref, cached)


@dataclass
class _Entry:
    """Queue state of one object."""

    due: float | None = None  # monotonic time of the next run, None when not scheduled
    running: bool = False
    again: bool = False  # asked for while running: run once more straight after
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Reconciler:
    """Runs `reconcile` (and `finalize` on deletion) for every object of one kind."""

    def __init__(
        self,
        resource: Resource,
        *,
        reconcile: ReconcileFn,
        finalize: FinalizeFn,
        patch_finalizers: FinalizerPatchFn,
        slots: ReconcileSlots,
        finalizer: str = FINALIZER,
        leadership: Leadership | None = None,
        selector: LabelSelector | None = None,
    ) -> None:
        self.resource = resource
        self._reconcile = reconcile
        self._finalize = finalize
        self._patch_finalizers = patch_finalizers
        self._slots = slots
        self._finalizer = finalizer
        self.cache = WatchCache(resource, selector)
        self.cache.add_observer(self._enqueue_if_needed)
        self._entries: dict[ObjectRef, _Entry] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # Only the leader reconciles. A standby keeps its cache fed by the
        # watch, so webhooks served from it see every object and a takeover
        # starts reconciling at once, without a fresh list.
        self.leadership = leadership or Leadership.always()
        self.leadership.subscribe(self._leadership_changed)

    # -- what handlers call --------------------------------------------------------

    def register(self, registry: kopf.OperatorRegistry) -> None:
        self.cache.register(registry)

        @kopf.on.cleanup(registry=registry, id=f"stop-{self.cache.handler_id}")
        async def stop_queue(**_: Any) -> None:
            await self.close()

    def add_observer(self, observer: ObserverFn) -> None:
        """Call `observer` on every change, e.g. to requeue objects that depend on this one."""
        self.cache.add_observer(observer)

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """Record a watch event; enqueues the object if this version needs a reconcile."""
        self.cache.observe(event_type, obj)

    def _enqueue_if_needed(self, previous: Object | None, current: Object | None) -> None:
        if current is None:
            if previous is not None:
                ref = ObjectRef.of(previous)
                self._forget(ref)
                observability.record_deleted(self.resource.kind, ref.name, ref.namespace)
            return
        reason = (
            "first seen" if previous is None else enqueue_reason(previous, current, self._finalizer)
        )
        if reason:
            ref = ObjectRef.of(current)
            log.debug("enqueue %s %s: %s", self.resource.kind, ref, reason)
            self.request(ref)

    def get(self, ref: ObjectRef) -> Object | None:
        """The latest version of an object seen on the watch."""
        return self.cache.get(ref)

    def peek(self, ref: ObjectRef) -> Object | None:
        """The latest version, uncopied, for a read-only look (see WatchCache.peek)."""
        return self.cache.peek(ref)

    def view(self) -> list[Object]:
        """Read-only, uncopied objects (see WatchCache.view)."""
        return self.cache.view()

    def add_index(self, name: str, key_fn: IndexKeyFn) -> None:
        """Declare an index on the queue's cache (see WatchCache.add_index)."""
        self.cache.add_index(name, key_fn)

    def indexed(self, name: str, key: Hashable) -> list[Object]:
        """Read-only objects under `key` (see WatchCache.indexed)."""
        return self.cache.indexed(name, key)

    def request(self, ref: ObjectRef, after: float = 0.0) -> None:
        """Reconcile `ref` in `after` seconds (earlier requests win); a no-op unless leading."""
        if self._closed or not self.leadership.leading:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        entry = self._entries.setdefault(ref, _Entry())
        if entry.running and after <= 0:
            entry.again = True
            return
        due = time.monotonic() + max(after, 0.0)
        if entry.due is not None and entry.due <= due:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        entry.due = due
        entry.timer = loop.call_at(loop.time() + max(after, 0.0), self._start, ref)

    async def close(self) -> None:
        self._closed = True
        for entry in self._entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- leadership ----------------------------------------------------------------

    def _leadership_changed(self, leading: bool) -> None:
        if self._closed:
            return
        if leading:
            # As controller-runtime does on start: every object gets a reconcile,
            # which also rebuilds whatever the last leader had and we do not.
            log.info("leading: reconciling every %s", self.resource.kind)
            for obj in self.cache.view():
                self.request(ObjectRef.of(obj))
            return
        log.info("not leading: stopped reconciling %s", self.resource.kind)
        self._stop_all()

    def _stop_all(self) -> None:
        """Drop every scheduled run and cancel the running ones (leadership is gone)."""
        for entry in self._entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
            entry.due, entry.timer, entry.again = None, None, False
        for task in list(self._tasks):
            task.cancel()
        self._entries = {ref: e for ref, e in self._entries.items() if e.running}

    # -- the queue -----------------------------------------------------------------

    def _forget(self, ref: ObjectRef) -> None:
        entry = self._entries.get(ref)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        if not entry.running:
            del self._entries[ref]
        else:
            entry.due, entry.again = None, False

    def _start(self, ref: ObjectRef) -> None:
        entry = self._entries.get(ref)
        if entry is None or self._closed or not self.leadership.leading:
            return
        entry.due, entry.timer = None, None
        if entry.running:
            entry.again = True
            return
        entry.running = True
        task = asyncio.get_running_loop().create_task(
            self._run(ref), name=f"reconcile {self.resource.kind} {ref}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, ref: ObjectRef) -> None:
        requeue_after: float | None = None
        try:
            async with self._slots.slot((self.resource.kind, ref)):
                requeue_after = await self._run_once(ref)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A reconcile function reports its own failures in status; reaching
            # here is a bug or an API outage, so retry with a fixed backoff.
            log.exception("reconcile of %s %s crashed", self.resource.kind, ref)
            requeue_after = 30.0
        finally:
            entry = self._entries.get(ref)
            if entry is not None:
                entry.running = False
                again, entry.again = entry.again, False
                if not self.cache.contains(ref) and entry.due is None:
                    del self._entries[ref]
                elif again:
                    self.request(ref)
                elif requeue_after is not None:
                    self.request(ref, requeue_after)

    async def _run_once(self, ref: ObjectRef) -> float | None:
        obj = self.get(ref)
        if obj is None:
            return None
        metadata = obj["metadata"]
        finalizers: list[str] = list(metadata.get("finalizers") or [])
        if metadata.get("deletionTimestamp"):
            if self._finalizer not in finalizers:
                return None
            if await self._finalize(obj):
                await self._patch_finalizers(ref, [f for f in finalizers if f != self._finalizer])
                return None
            return 5.0
        if self._finalizer not in finalizers:
            # Finalizer first, as Flux does, so nothing we create can be orphaned.
            added = [*finalizers, self._finalizer]
            await self._patch_finalizers(ref, added)
            self.cache.update(
                ref, lambda cached: cached["metadata"].__setitem__("finalizers", added)
            )
        outcome = await self._reconcile(obj)
        return outcome.requeue_after
