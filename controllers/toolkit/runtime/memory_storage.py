"""Kopf state kept in process memory instead of on users' objects.

Kopf's defaults write `kopf.zalando.org/*` annotations (handler progress and
the last-handled configuration) onto every object it handles. headwater
forbids that: the object's Flux status is the only state. These storages
satisfy kopf's storage interfaces without writing anything to the object.

What that costs, and why it is acceptable for headwater:
- After a restart kopf remembers nothing, so change handlers see every
  object as new. Headwater's reconciles are level-based and idempotent
  (they compare spec and status), so running once more is harmless.
- Kopf retries a failed change handler by writing a "touch" field to make
  the API server send a new watch event; here that write does not happen,
  so such a retry waits for the object's next event. Controllers requeue
  with timers/daemons (`interval`, `retryInterval`), not kopf's retries.
- Entries are dropped when kopf purges a handler's progress; diff bases of
  deleted objects stay until the process ends (a small dict per object).
"""

from __future__ import annotations

import copy

import kopf


def _uid(body: kopf.Body) -> str:
    metadata = body.get("metadata") or {}
    # Objects always have a uid; the name is a fallback for hand-made bodies.
    return str(metadata.get("uid") or f"{metadata.get('namespace')}/{metadata.get('name')}")


class MemoryProgressStorage(kopf.ProgressStorage):
    """Handler progress per object uid, in memory only."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[str, dict[str, kopf.ProgressRecord]] = {}

    def fetch(self, *, key: kopf.HandlerId, body: kopf.Body) -> kopf.ProgressRecord | None:
        record = self._records.get(_uid(body), {}).get(key)
        return copy.deepcopy(record) if record is not None else None

    def store(
        self,
        *,
        key: kopf.HandlerId,
        record: kopf.ProgressRecord,
        body: kopf.Body,
        patch: kopf.Patch,
    ) -> None:
        self._records.setdefault(_uid(body), {})[key] = copy.deepcopy(record)

    def purge(self, *, key: kopf.HandlerId, body: kopf.Body, patch: kopf.Patch) -> None:
        uid = _uid(body)
        records = self._records.get(uid)
        if records is not None:
            records.pop(key, None)
            if not records:
                del self._records[uid]

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        # Deliberately nothing: writing a touch field is exactly what we avoid.
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return super().clear(essence=essence)


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """The last-handled essence per object uid, in memory only."""

    def __init__(self) -> None:
        super().__init__()
        self._essences: dict[str, kopf.BodyEssence] = {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        essence = self._essences.get(_uid(body))
        return copy.deepcopy(essence) if essence is not None else None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._essences[_uid(body)] = copy.deepcopy(essence)
