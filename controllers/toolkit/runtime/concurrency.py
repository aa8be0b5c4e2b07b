"""Bounding how many reconciles a controller runs at once.

The reconcile model: each controller runs at most `HEADWATER_CONCURRENT` reconciles at
once, and never two for the same object. Kopf's own `queueing.worker_limit`
does not express that: it bounds workers per watched resource kind (so a
controller with three kinds would get three times the limit), and with
`@kopf.index` handlers a limit below the number of objects deadlocks the
operator (nolar/kopf#1243). So the runner leaves kopf's queue unbounded and
each controller takes a slot here around every reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Hashable


@dataclasses.dataclass
class _ObjectLock:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    users: int = 0


class ReconcileSlots:
    """At most `limit` reconciles at once, and one at a time per object key."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)
        self._objects: dict[Hashable, _ObjectLock] = {}
        self.running = 0

    @contextlib.asynccontextmanager
    async def slot(self, key: Hashable) -> AsyncIterator[None]:
        """Hold a slot for the object `key` (e.g. `(kind, namespace, name)`)."""
        entry = self._objects.get(key)
        if entry is None:
            entry = self._objects[key] = _ObjectLock()
        entry.users += 1
        try:
            # The per-object lock is taken first, so a second reconcile of the
            # same object waits without holding one of the shared slots.
            async with entry.lock, self._semaphore:
                self.running += 1
                try:
                    yield
                finally:
                    self.running -= 1
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._objects.pop(key, None)
