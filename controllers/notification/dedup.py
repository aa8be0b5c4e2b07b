"""Dropping repeats of an event for a while (Flux's rate limit on the intake).

The key is Flux's: a SHA-256 over the involved object's name, namespace and
kind, the message, and the object's `originRevision`, `revision` and `token`
metadata. So the same message about a new revision is new, while the same
failure reported on every retry reaches the providers once per window.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable

from controllers.notification.event import ORIGIN_REVISION, REVISION, TOKEN, FluxEvent

# Keys remembered at most; the oldest go first. Bounds memory under a flood
# of distinct events, at the cost of forwarding a repeat of an evicted one.
MAX_KEYS = 100_000


def event_key(event: FluxEvent) -> str:
    """The hex SHA-256 identifying repeats of `event`."""
    parts = [
        "event",
        "name=" + event.name,
        "namespace=" + event.namespace,
        "kind=" + event.kind,
        "message=" + event.message,
    ]
    # Same order as Flux, so keys agree for the same event.
    for label, key in (
        ("originRevision", ORIGIN_REVISION),
        ("revision", REVISION),
        ("token", TOKEN),
    ):
        value = event.object_metadata(key)
        if value is not None:
            parts.append(f"{label}={value}")
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


class DuplicateFilter:
    """Admits a key once per `window` seconds; a window of 0 admits everything."""

    def __init__(
        self,
        window: float,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._max_keys = max_keys
        self._clock = clock
        # key -> time first admitted, oldest first.
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def admit(self, key: str) -> bool:
        """True the first time `key` is seen in the current window."""
        if self.window <= 0:
            return True
        now = self._clock()
        self._expire(now)
        if key in self._seen:
            return False
        self._seen[key] = now
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        while self._seen:
            key, since = next(iter(self._seen.items()))
            if now - since < self.window:
                return
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
