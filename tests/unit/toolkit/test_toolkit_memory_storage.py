from __future__ import annotations

import kopf

from controllers.toolkit.runtime.memory_storage import MemoryDiffBaseStorage, MemoryProgressStorage


def body(uid: str) -> kopf.Body:
    raw: kopf.RawBody = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "uid": uid, "annotations": {}},
        "data": {"k": "v"},  # type: ignore[typeddict-unknown-key]
    }
    return kopf.Body(raw)


def test_progress_is_kept_per_object_and_never_written_to_the_patch() -> None:
    storage = MemoryProgressStorage()
    patch = kopf.Patch()
    record: kopf.ProgressRecord = {"started": "2026-01-01T00:00:00", "retries": 1}
    storage.store(key=kopf.HandlerId("h"), record=record, body=body("u1"), patch=patch)
    storage.touch(body=body("u1"), patch=patch, value="2026-01-01T00:00:01")
    assert storage.fetch(key=kopf.HandlerId("h"), body=body("u1")) == record
    assert storage.fetch(key=kopf.HandlerId("h"), body=body("u2")) is None
    storage.purge(key=kopf.HandlerId("h"), body=body("u1"), patch=patch)
    assert storage.fetch(key=kopf.HandlerId("h"), body=body("u1")) is None
    assert not patch


def test_fetched_records_are_copies() -> None:
    storage = MemoryProgressStorage()
    record: kopf.ProgressRecord = {"retries": 1}
    storage.store(key=kopf.HandlerId("h"), record=record, body=body("u"), patch=kopf.Patch())
    record["retries"] = 5
    fetched = storage.fetch(key=kopf.HandlerId("h"), body=body("u"))
    assert fetched == {"retries": 1}


def test_diff_base_is_kept_in_memory_only() -> None:
    storage = MemoryDiffBaseStorage()
    patch = kopf.Patch()
    assert storage.fetch(body=body("u1")) is None
    essence = storage.build(body=body("u1"))
    storage.store(body=body("u1"), patch=patch, essence=essence)
    assert storage.fetch(body=body("u1")) == essence
    assert storage.fetch(body=body("u2")) is None
    assert not patch
