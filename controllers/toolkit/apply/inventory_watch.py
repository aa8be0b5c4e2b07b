"""Watch the objects a controller applied, to heal changes made outside git.

One watch per kind that appears in any inventory, filtered on the server by
the owner label, so the cost is proportional to what we manage, not to the
cluster. Watches run on threads with the kubernetes client (its watch
handles chunked streams and bookmarks) and hand events to the event loop.

Only changes someone else made matter: a deletion does unless we announced
it (prune), and a modification does when the newest managed-fields entry
belongs to another field manager (our own applies and prunes come back as
events too, and must not wake the reconcile that just made them).

With an `owner_of`, the watcher also keeps a `ChangeLedger`: per kind, whether
its watch is connected and since which (re)list, and per owner, how many of
its objects changed in any way but status (our own writes included). A
`WatchToken` taken before a full verification lets a later reconcile ask
whether anything could have drifted since (`InventoryWatcher.broken`): if
every kind stayed connected on the same list and no object of the owner
changed, the answer is no, and its dry-run can be skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import kubernetes.dynamic
import kubernetes.watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from controllers.toolkit.apply.inventory import ObjectId

log = logging.getLogger(__name__)

# Server-side watch timeout: the thread wakes this often to check for stop.
WATCH_TIMEOUT_SECONDS = 60
# How long an announced deletion is remembered: longer than any prune's wait for
# its DELETED event, short enough that skipped deletions do not pile up.
EXPECTED_DELETION_SECONDS = 600.0


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
# (namespace, name) of the object that applied it (e.g. a Kustomization).
Owner = tuple[str, str]
OwnerOf = Callable[[Mapping[str, Any]], Owner | None]


def fingerprint(obj: Mapping[str, Any]) -> bytes:
    """A digest of what an object says, but its status and server bookkeeping.

    Two versions with the same fingerprint differ only in status (a rollout's
    progress), resourceVersion, or status-subresource managedFields entries and
    managedFields times: nothing an apply would change back.
    """
    view = {key: value for key, value in obj.items() if key != "status"}
    meta = dict(view.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta["managedFields"] = [
        {key: value for key, value in entry.items() if key != "time"}
        for entry in meta.get("managedFields") or ()
        if isinstance(entry, Mapping) and entry.get("subresource") != "status"
    ]
    view["metadata"] = meta
    text = json.dumps(view, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True)
class WatchToken:
    """What the watches had seen when a full verification began."""

    # Each kind's connection (its list count) at the time; kinds not connected are absent.
    epochs: Mapping[WatchedKind, int]
    # How many changes to the owner's objects had been seen.
    changes: int


@dataclass
class _KindState:
    epoch: int = 0  # lists done: each one starts a new, gap-free connection
    connected: bool = False
    heard_at: float = 0.0  # the last event or normal end of a watch request


class ChangeLedger:
    """What the watches saw, to tell whether a verified owner's objects can have changed.

    Written on watch threads, read on the event loop; one lock. Memory: one
    16-byte fingerprint per watched object, one counter per owner.
    """

    def __init__(
        self,
        owner_of: OwnerOf,
        *,
        silence_limit: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owner_of = owner_of
        self._silence_limit = silence_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[WatchedKind, _KindState] = {}
        self._seen: dict[WatchedKind, dict[tuple[str, str], tuple[Owner | None, bytes]]] = {}
        self._changes: dict[Owner, int] = {}

    # -- the watch threads -----------------------------------------------------------

    def listed(self, kind: WatchedKind, items: Iterable[Mapping[str, Any]]) -> None:
        """A (re)list: what the kind holds now, and a new connection that has missed nothing."""
        seen = {}
        for obj in items:
            seen[_key(obj)] = (self._owner_of(obj), fingerprint(obj))
        with self._lock:
            state = self._kinds.setdefault(kind, _KindState())
            state.epoch += 1
            state.connected = True
            state.heard_at = self._clock()
            self._seen[kind] = seen

    def record(self, kind: WatchedKind, event_type: str, obj: Mapping[str, Any]) -> None:
        """One watch event: counts a change for each owner whose object it changed."""
        with self._lock:
            state = self._kinds.setdefault(kind, _KindState())
            state.heard_at = self._clock()
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only a sign of life
        key = _key(obj)
        owner = self._owner_of(obj)
        digest = fingerprint(obj) if event_type != "DELETED" else b""
        with self._lock:
            seen = self._seen.setdefault(kind, {})
            before = seen.pop(key, None)
            if event_type != "DELETED":
                seen[key] = (owner, digest)
            if before is not None and before == (owner, digest):
                return  # status or bookkeeping only
            # A relabelled object changes for the owner it left as for the one it joined.
            owners = {owner, before[0] if before is not None else None}
            for changed in owners:
                if changed is not None:
                    self._changes[changed] = self._changes.get(changed, 0) + 1

    def heard(self, kind: WatchedKind) -> None:
        with self._lock:
            self._kinds.setdefault(kind, _KindState()).heard_at = self._clock()

    def disconnected(self, kind: WatchedKind) -> None:
        with self._lock:
            self._kinds.setdefault(kind, _KindState()).connected = False

    # -- the reconciles ----------------------------------------------------------------

    def token(self, owner: Owner) -> WatchToken:
        with self._lock:
            epochs = {kind: state.epoch for kind, state in self._kinds.items() if state.connected}
            return WatchToken(epochs, self._changes.get(owner, 0))

    def broken(self, token: WatchToken, owner: Owner, kinds: Iterable[WatchedKind]) -> str | None:
        """Why `token` no longer proves the owner's objects unchanged; None when it does."""
        now = self._clock()
        with self._lock:
            for kind in sorted(set(kinds), key=lambda k: (k.api_version, k.kind)):
                name = f"{kind.api_version} {kind.kind}"
                state = self._kinds.get(kind)
                if state is None or not state.connected:
                    return f"the watch of {name} is not running"
                if kind not in token.epochs:
                    return f"the watch of {name} was not running at the last full verification"
                if state.epoch != token.epochs[kind]:
                    return f"the watch of {name} restarted since the last full verification"
                if now - state.heard_at > self._silence_limit:
                    return f"the watch of {name} has been silent for {now - state.heard_at:.0f}s"
            if self._changes.get(owner, 0) != token.changes:
                return "an applied object changed since the last full verification"
        return None

    def __len__(self) -> int:
        with self._lock:
            return sum(len(seen) for seen in self._seen.values())


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


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


class ExpectedDeletions:
    """Objects we are deleting ourselves: each one's DELETED event is not drift.

    Announced before the delete is sent, since the event can arrive before the
    delete call returns. Filled on the event loop, read on watch threads.
    """

    def __init__(
        self,
        ttl: float = EXPECTED_DELETION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._until: dict[ObjectId, float] = {}
        self._lock = threading.Lock()

    def expect(self, ids: Iterable[ObjectId]) -> None:
        now = self._clock()
        with self._lock:
            for object_id in [i for i, until in self._until.items() if until <= now]:
                del self._until[object_id]
            for object_id in ids:
                self._until[object_id] = now + self._ttl

    def take(self, object_id: ObjectId) -> bool:
        """Whether this deletion was announced (and still fresh); forgets it either way."""
        with self._lock:
            until = self._until.pop(object_id, None)
        return until is not None and until > self._clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._until)


def is_foreign(event_type: str, obj: Mapping[str, Any], field_manager: str) -> bool:
    if event_type == "DELETED":
        # Announced deletions are filtered out before this (ExpectedDeletions).
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
        watch_timeout: int = WATCH_TIMEOUT_SECONDS,
        owner_of: OwnerOf | None = None,
    ) -> None:
        self._dynamic = kubernetes.dynamic.DynamicClient(api)
        self._watch_timeout = watch_timeout
        self._label_selector = label_selector
        self._field_manager = field_manager
        self._on_change = on_change
        self._threads: dict[WatchedKind, threading.Thread] = {}
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._expected = ExpectedDeletions()
        # A watch request ends every `watch_timeout`: twice that without a word is a hang.
        self.ledger = (
            ChangeLedger(owner_of, silence_limit=2.0 * watch_timeout + 10.0)
            if owner_of is not None
            else None
        )

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

    def expect_deletions(self, ids: Iterable[ObjectId]) -> None:
        """We are about to delete these objects: their deletion is not someone else's change."""
        self._expected.expect(ids)

    def close(self) -> None:
        self._stop.set()

    def token(self, owner: Owner) -> WatchToken | None:
        """What the watches have seen so far (None without a ledger): take it before a
        full verification, give it to `broken` later."""
        return self.ledger.token(owner) if self.ledger is not None else None

    def broken(self, token: WatchToken, owner: Owner, kinds: Iterable[WatchedKind]) -> str | None:
        """Why the watches cannot vouch that nothing of `owner` in `kinds` changed since
        `token`; None when they can (every kind watched without a gap, no change seen)."""
        if self.ledger is None:
            return "the inventory watch keeps no ledger"
        return self.ledger.broken(token, owner, kinds)

    def _deliver(self, change: ForeignChange) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_change, change)

    def _report(self, event_type: str, raw: Mapping[str, Any]) -> None:
        if event_type == "DELETED" and self._expected.take(ObjectId.of(raw)):
            return
        if is_foreign(event_type, raw, self._field_manager):
            self._deliver(ForeignChange(event_type, raw, last_manager(raw, self._field_manager)))

    def _list(self, kind: WatchedKind, resource: Any) -> str:
        """List the kind; report what someone else changed before; return the list's version."""
        listing = resource.get(label_selector=self._label_selector)
        items = [item.to_dict() for item in listing.items]
        if self.ledger is not None:
            self.ledger.listed(kind, items)
        # Edits made before this list never arrive as events.
        for item in items:
            self._report("MODIFIED", item)
        return str(listing.metadata.resourceVersion)

    def _watch(self, kind: WatchedKind) -> None:
        backoff = 1.0
        version: str | None = None  # None: list first (at start, and when it expired)
        failing = False
        while not self._stop.is_set():
            try:
                resource = self._dynamic.resources.get(api_version=kind.api_version, kind=kind.kind)
                if version is None:
                    version = self._list(kind, resource)
                watcher = kubernetes.watch.Watch()
                for event in self._dynamic.watch(
                    resource,
                    label_selector=self._label_selector,
                    resource_version=version,
                    timeout=self._watch_timeout,
                    watcher=watcher,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        watcher.stop()
                        return
                    raw = event.get("raw_object") or {}
                    # Tracked here: the client's Watch does not for the dynamic
                    # client's untyped events, and resuming from the listing's
                    # version would replay (and re-report) every event since.
                    version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
                    if self.ledger is not None:
                        # Before the report: the reconcile it wakes must see the change.
                        self.ledger.record(kind, str(event.get("type")), raw)
                    self._report(str(event.get("type")), raw)
                # The watch timed out: carry on from the newest version it saw
                # (bookmarks included) rather than listing everything again.
                if self.ledger is not None:
                    self.ledger.heard(kind)
                backoff, failing = 1.0, False
                continue
            except ApiException as exc:
                version = None
                if self.ledger is not None:
                    self.ledger.disconnected(kind)
                # 410 Gone: our resourceVersion is too old; list again at once.
                if exc.status == 410:
                    continue
                problem = str(exc.reason)
            except ResourceNotFoundError:
                version = None
                if self.ledger is not None:
                    self.ledger.disconnected(kind)
                problem = "the kind is not served (its CRD may be gone)"
            except Exception as exc:  # the watch must survive API hiccups
                version = None
                if self.ledger is not None:
                    self.ledger.disconnected(kind)
                problem = str(exc)
            # One warning per run of failures: a kind whose CRD was deleted
            # fails until it comes back, and would fill the log.
            log.log(
                logging.DEBUG if failing else logging.WARNING,
                "watch of %s %s failed, retrying in %.0fs: %s",
                kind.api_version,
                kind.kind,
                backoff,
                problem,
            )
            failing = True
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
