"""The level-based work queue: when objects are reconciled, and how often."""

from __future__ import annotations

import asyncio
from typing import Any

from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.reconciler import (
    Object,
    ObjectRef,
    Outcome,
    Reconciler,
    Resource,
    WatchCache,
    enqueue_reason,
)
from controllers.toolkit.runtime.selectors import SHARD_KEY, parse_selector

FINALIZER = "finalizers.fluxcd.io"
RESOURCE = Resource("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")


def _obj(name: str = "app", generation: int = 1, **extra: Any) -> Object:
    obj: Object = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "generation": generation,
            "finalizers": [FINALIZER],
        },
        "status": {"observedGeneration": generation},
    }
    obj["metadata"].update(extra.pop("metadata", {}))
    obj.update(extra)
    return obj


class Recorder:
    """A reconcile function that records calls and can be held open."""

    def __init__(self, requeue_after: float | None = None) -> None:
        self.calls: list[Object] = []
        self.finalized: list[Object] = []
        self.finalizer_patches: list[tuple[ObjectRef, list[str]]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.requeue_after = requeue_after
        self.running = 0
        self.max_running = 0

    async def reconcile(self, obj: Object) -> Outcome:
        self.calls.append(obj)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return Outcome(requeue_after=self.requeue_after)

    async def finalize(self, obj: Object) -> bool:
        self.finalized.append(obj)
        return True

    async def patch_finalizers(self, ref: ObjectRef, finalizers: list[str]) -> None:
        self.finalizer_patches.append((ref, finalizers))


def _reconciler(recorder: Recorder, limit: int = 4) -> Reconciler:
    return Reconciler(
        RESOURCE,
        reconcile=recorder.reconcile,
        finalize=recorder.finalize,
        patch_finalizers=recorder.patch_finalizers,
        slots=ReconcileSlots(limit),
        finalizer=FINALIZER,
    )


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_needs_reconcile_names_what_changed() -> None:
    before = _obj()
    assert enqueue_reason(before, _obj(), FINALIZER) is None
    assert enqueue_reason(before, _obj(generation=2), FINALIZER) == "spec changed"
    requested = _obj(metadata={"annotations": {"reconcile.fluxcd.io/requestedAt": "now"}})
    assert enqueue_reason(before, requested, FINALIZER) == "reconcile requested"
    # The same request seen again (e.g. with our status write) is not a new one.
    assert enqueue_reason(requested, requested, FINALIZER) is None
    handled = _obj(metadata={"annotations": {"reconcile.fluxcd.io/requestedAt": "now"}})
    handled["status"]["lastHandledReconcileAt"] = "now"
    assert enqueue_reason(before, handled, FINALIZER) is None
    assert enqueue_reason(before, _obj(metadata={"finalizers": []}), FINALIZER) == (
        "finalizer missing"
    )
    deleting = _obj(metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    assert enqueue_reason(before, deleting, FINALIZER) == "deletion"
    assert enqueue_reason(deleting, deleting, FINALIZER) is None


def test_a_failing_object_is_not_woken_by_its_own_status_writes() -> None:
    # Flux leaves observedGeneration behind while an object fails: that alone
    # must not count as a change, or every status write would start a new run.
    failing = _obj(generation=3, status={"observedGeneration": 2})
    rewritten = _obj(generation=3, status={"observedGeneration": 2, "conditions": []})
    assert enqueue_reason(failing, rewritten, FINALIZER) is None


async def test_first_sight_reconciles_and_status_only_events_do_not() -> None:
    recorder = Recorder()
    reconciler = _reconciler(recorder)
    reconciler.observe("ADDED", _obj())
    await _settle()
    assert len(recorder.calls) == 1
    # Our own status write comes back as a MODIFIED event: it must not loop.
    updated = _obj()
    updated["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    reconciler.observe("MODIFIED", updated)
    await _settle()
    assert len(recorder.calls) == 1
    # A spec change does reconcile.
    reconciler.observe("MODIFIED", _obj(generation=2, status={"observedGeneration": 1}))
    await _settle()
    assert len(recorder.calls) == 2
    assert recorder.calls[-1]["metadata"]["generation"] == 2
    await reconciler.close()


async def test_requests_during_a_run_fold_into_one_more_run_with_the_latest_object() -> None:
    recorder = Recorder()
    recorder.release.clear()
    reconciler = _reconciler(recorder)
    reconciler.observe("ADDED", _obj())
    await _settle()
    assert recorder.running == 1
    for generation in (2, 3, 4):
        reconciler.observe(
            "MODIFIED", _obj(generation=generation, status={"observedGeneration": 1})
        )
    await _settle()
    assert len(recorder.calls) == 1  # never two at once for one object
    recorder.release.set()
    await _settle()
    assert [c["metadata"]["generation"] for c in recorder.calls] == [1, 4]
    await reconciler.close()


async def test_requeue_after_runs_again_and_deletion_stops_it() -> None:
    recorder = Recorder(requeue_after=0.05)
    reconciler = _reconciler(recorder)
    reconciler.observe("ADDED", _obj())
    await asyncio.sleep(0.3)
    assert len(recorder.calls) >= 3
    reconciler.observe("DELETED", _obj())
    await _settle()
    seen = len(recorder.calls)
    await asyncio.sleep(0.2)
    assert len(recorder.calls) == seen
    await reconciler.close()


async def test_concurrency_is_bounded_across_objects() -> None:
    recorder = Recorder()
    recorder.release.clear()
    reconciler = _reconciler(recorder, limit=2)
    for index in range(5):
        reconciler.observe("ADDED", _obj(name=f"app-{index}"))
    await _settle()
    assert recorder.running == 2
    recorder.release.set()
    await _settle()
    assert len(recorder.calls) == 5
    assert recorder.max_running == 2
    await reconciler.close()


async def test_finalizer_is_added_before_the_first_reconcile_and_removed_after_finalize() -> None:
    recorder = Recorder()
    reconciler = _reconciler(recorder)
    reconciler.observe("ADDED", _obj(metadata={"finalizers": ["other"]}))
    await _settle()
    assert recorder.finalizer_patches == [(ObjectRef("ns", "app"), ["other", FINALIZER])]
    assert len(recorder.calls) == 1

    deleting = _obj(
        metadata={"finalizers": ["other", FINALIZER], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    )
    reconciler.observe("MODIFIED", deleting)
    await _settle()
    assert len(recorder.finalized) == 1
    assert recorder.finalizer_patches[-1] == (ObjectRef("ns", "app"), ["other"])
    assert len(recorder.calls) == 1
    await reconciler.close()


# -- leadership and sharding ----------------------------------------------------


def _queue(recorder: Recorder, leadership: Leadership, selector: str = "") -> Reconciler:
    return Reconciler(
        RESOURCE,
        reconcile=recorder.reconcile,
        finalize=recorder.finalize,
        patch_finalizers=recorder.patch_finalizers,
        slots=ReconcileSlots(4),
        finalizer=FINALIZER,
        leadership=leadership,
        selector=parse_selector(selector),
    )


async def test_a_standby_caches_but_never_reconciles_until_it_leads() -> None:
    recorder, leadership = Recorder(), Leadership()
    queue = _queue(recorder, leadership)
    queue.observe("ADDED", _obj("a"))
    queue.observe("ADDED", _obj("b", metadata={"finalizers": []}))
    await _settle()
    assert recorder.calls == [] and recorder.finalizer_patches == []
    assert {o["metadata"]["name"] for o in queue.view()} == {"a", "b"}  # the cache is warm

    leadership.set(True)
    await _settle()
    # Winning the Lease reconciles every cached object, as a fresh start would.
    assert sorted(c["metadata"]["name"] for c in recorder.calls) == ["a", "b"]
    await queue.close()


async def test_losing_leadership_cancels_runs_and_drops_scheduled_ones() -> None:
    recorder, leadership = Recorder(requeue_after=0.05), Leadership(leading=True)
    queue = _queue(recorder, leadership)
    recorder.release.clear()  # hold the reconcile open
    queue.observe("ADDED", _obj("a"))
    await _settle()
    assert recorder.running == 1
    leadership.set(False)
    await _settle()
    assert recorder.running == 0  # cancelled mid-reconcile
    recorder.release.set()
    calls = len(recorder.calls)
    queue.request(ObjectRef("ns", "a"))
    await asyncio.sleep(0.2)
    assert len(recorder.calls) == calls  # neither the requeue nor a new request runs
    await queue.close()


async def test_a_shard_caches_only_objects_matching_its_selector() -> None:
    recorder = Recorder()
    queue = _queue(recorder, Leadership.always(), f"{SHARD_KEY} in (shard1)")
    mine = _obj("mine", metadata={"labels": {SHARD_KEY: "shard1"}})
    theirs = _obj("theirs", metadata={"labels": {SHARD_KEY: "shard2"}})
    queue.observe("ADDED", mine)
    queue.observe("ADDED", theirs)
    queue.observe("ADDED", _obj("unlabelled"))
    await _settle()
    assert [o["metadata"]["name"] for o in queue.view()] == ["mine"]
    assert [c["metadata"]["name"] for c in recorder.calls] == ["mine"]

    # Relabelled to another shard: it leaves this cache, as if deleted.
    moved = _obj("mine", metadata={"labels": {SHARD_KEY: "shard2"}})
    queue.observe("MODIFIED", moved)
    assert queue.view() == []
    await queue.close()


def test_a_plain_watch_cache_filters_too() -> None:
    cache = WatchCache(RESOURCE, parse_selector(f"!{SHARD_KEY}"))
    cache.observe("ADDED", _obj("main"))
    cache.observe("ADDED", _obj("shard", metadata={"labels": {SHARD_KEY: "s1"}}))
    assert [o["metadata"]["name"] for o in cache.view()] == ["main"]
