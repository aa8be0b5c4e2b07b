"""The reconcile frame: every exit path summarizes, patches once and reports."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import prometheus_client
import pytest
from kubernetes.client.rest import ApiException

from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.events import Event, EventRecorder, OrderedDelivery
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import Resource
from tests.support.fakes import ListSink, RecordingWriter

RESOURCE = Resource("example.toolkit.fluxcd.io", "v1", "widgets", "Widget")


def _frame(
    live: Mapping[str, Any] | None = None, **options: Any
) -> tuple[ReconcileFrame, RecordingWriter, ListSink]:
    writer = RecordingWriter(live or {})
    sink = ListSink()
    frame = ReconcileFrame(
        RESOURCE, cast(ObjectWriter, writer), EventRecorder("test", [sink]), **options
    )
    return frame, writer, sink


def _obj(name: str = "w", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": RESOURCE.api_version,
        "kind": RESOURCE.kind,
        "metadata": {"name": name, "namespace": "unit", "generation": 2},
        "spec": spec,
    }


def _sample(name: str, labels: dict[str, str]) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


async def test_success_is_summarized_patched_once_and_requeued() -> None:
    frame, writer, sink = _frame()

    async def steps(run: ReconcileRun) -> None:
        await run.progressing("working", revision="main@sha1:1")
        run.ready("done")
        run.notify("Normal", "ReconciliationSucceeded", "done", {"revision": "main@sha1:1"})
        run.requeue_after = 60.0

    outcome = await frame.run(_obj(), steps)
    assert outcome.requeue_after == 60.0
    assert len(writer.patches) == 2  # Progressing, then the summary
    assert cond.is_true(writer.live, cond.READY)
    assert writer.live["observedGeneration"] == 2
    assert writer.live["lastAttemptedRevision"] == "main@sha1:1"
    assert cond.get_condition(writer.live, cond.RECONCILING) is None
    assert [(e.reason, e.metadata) for e in sink.events] == [
        ("ReconciliationSucceeded", {"revision": "main@sha1:1"})
    ]


async def test_a_noop_reconcile_writes_nothing() -> None:
    ready = cond.summarize(cond.mark_ready({}, "done", generation=2), generation=2)
    frame, writer, _ = _frame(ready)

    async def steps(run: ReconcileRun) -> None:
        await run.progressing("working")
        run.ready("done")

    obj = dict(_obj(), status=ready)
    await frame.run(obj, steps)
    assert writer.patches == []


async def test_a_step_error_becomes_ready_false_with_its_reason_and_a_warning() -> None:
    frame, writer, sink = _frame()

    async def steps(run: ReconcileRun) -> None:
        run.retry_after = 42.0
        run.event_metadata["revision"] = "main@sha1:2"
        raise ReconcileError("BuildFailed", "kustomize build failed: bad patch")

    outcome = await frame.run(_obj(), steps)
    assert outcome.requeue_after == 42.0
    ready = cond.get_condition(writer.live, cond.READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    assert [(e.type, e.reason, e.metadata) for e in sink.events] == [
        ("Warning", "BuildFailed", {"revision": "main@sha1:2"})
    ]


async def test_a_stalled_error_is_not_retried() -> None:
    frame, writer, _ = _frame()

    async def steps(run: ReconcileRun) -> None:
        raise ReconcileError("InvalidSpec", "spec.path: must be relative", stalled=True)

    outcome = await frame.run(_obj(), steps)
    assert outcome.requeue_after is None
    assert cond.is_true(writer.live, cond.STALLED)
    assert cond.is_false(writer.live, cond.READY)


async def test_an_api_refusal_names_the_object_and_the_verb() -> None:
    frame, writer, sink = _frame()
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = (
        '{"kind":"Status","message":"secrets \\"vars\\" is forbidden: User '
        '\\"system:serviceaccount:unit:deployer\\" cannot get resource \\"secrets\\" '
        'in API group \\"\\" in the namespace \\"unit\\"","reason":"Forbidden","code":403}'
    )

    async def steps(run: ReconcileRun) -> None:
        run.retry_after = 7.0
        await run.progressing("Fetching manifests")
        raise refused

    outcome = await frame.run(_obj(), steps)
    assert outcome.requeue_after == 7.0
    ready = cond.get_condition(writer.live, cond.READY)
    assert ready is not None and ready["status"] == "False"
    assert ready["reason"] == cond.RECONCILIATION_FAILED
    assert 'secrets "vars" is forbidden' in ready["message"]
    assert 'cannot get resource "secrets"' in ready["message"]
    assert "403" in ready["message"]
    assert [e.type for e in sink.events] == ["Warning"]


async def test_a_bug_is_reported_not_swallowed() -> None:
    frame, writer, sink = _frame()

    async def steps(run: ReconcileRun) -> None:
        raise KeyError("status")

    await frame.run(_obj(), steps)
    ready = cond.get_condition(writer.live, cond.READY)
    assert ready is not None and "KeyError" in ready["message"]
    assert len(sink.events) == 1


async def test_failure_events_on_change_are_not_repeated() -> None:
    frame, writer, sink = _frame(failure_events="on_change")

    async def steps(run: ReconcileRun) -> None:
        raise ReconcileError("TokenNotFound", "secret 'unit/token' not found")

    await frame.run(_obj(), steps)
    await frame.run(dict(_obj(), status=writer.live), steps)
    assert [e.reason for e in sink.events] == ["TokenNotFound"]


async def test_a_suspended_object_is_left_alone() -> None:
    frame, writer, sink = _frame()
    ran = False

    async def steps(run: ReconcileRun) -> None:
        nonlocal ran
        ran = True

    outcome = await frame.run(_obj(name="paused", suspend=True), steps)
    assert outcome.requeue_after is None
    assert not ran and writer.patches == [] and sink.events == []
    labels = {"kind": "Widget", "name": "paused", "namespace": "unit"}
    assert _sample("gotk_suspend_status", labels) == 1


async def test_every_reconcile_records_its_duration_and_conditions() -> None:
    frame, _, _ = _frame()
    labels = {"kind": "Widget", "name": "measured", "namespace": "unit"}
    before = _sample("gotk_reconcile_duration_seconds_count", labels) or 0

    async def steps(run: ReconcileRun) -> None:
        run.ready("done")

    await frame.run(_obj(name="measured"), steps)
    assert _sample("gotk_reconcile_duration_seconds_count", labels) == before + 1
    ready_true = {**labels, "type": "Ready", "status": "True"}
    stalled_false = {**labels, "type": "Stalled", "status": "False"}
    assert _sample("gotk_reconcile_condition", ready_true) == 1
    assert _sample("gotk_reconcile_condition", stalled_false) == 1
    assert _sample("gotk_suspend_status", labels) == 0


@pytest.mark.parametrize("stalled", [False, True])
async def test_status_the_steps_built_before_failing_is_kept(stalled: bool) -> None:
    frame, writer, _ = _frame()

    async def steps(run: ReconcileRun) -> None:
        run.status["inventory"] = {"entries": [{"id": "unit_cm__ConfigMap", "v": "v1"}]}
        raise ReconcileError("HealthCheckFailed", "timeout", stalled=stalled)

    await frame.run(_obj(), steps)
    assert writer.live["inventory"]["entries"][0]["id"] == "unit_cm__ConfigMap"


async def test_a_quick_reconcile_with_a_delayed_progress_report_writes_once() -> None:
    frame, writer, _ = _frame()

    async def steps(run: ReconcileRun) -> None:
        await run.progressing("working", revision="main@sha1:1", delay=5.0)
        run.ready("done")

    await frame.run(_obj(), steps)
    await asyncio.sleep(0)  # a put-off write that was not dropped would start now
    assert len(writer.patches) == 1  # the outcome alone
    assert cond.is_true(writer.live, cond.READY)
    assert writer.live["lastAttemptedRevision"] == "main@sha1:1"
    assert cond.get_condition(writer.live, cond.RECONCILING) is None


async def test_a_slow_reconcile_still_reports_progress_before_its_outcome() -> None:
    frame, writer, _ = _frame()
    seen: list[dict[str, Any]] = []

    async def steps(run: ReconcileRun) -> None:
        await run.progressing("working", revision="main@sha1:1", delay=0.05)
        await asyncio.sleep(0.3)
        seen.append(dict(writer.live))
        run.ready("done")

    await frame.run(_obj(), steps)
    [during] = seen
    assert cond.is_true(during, cond.RECONCILING)
    assert cond.get_condition(during, cond.READY)["status"] == "Unknown"  # type: ignore[index]
    assert len(writer.patches) == 2
    assert cond.is_true(writer.live, cond.READY)
    assert cond.get_condition(writer.live, cond.RECONCILING) is None


async def test_a_failed_event_delivery_never_loses_the_status() -> None:
    writer = RecordingWriter({})

    async def broken(event: Event) -> None:
        raise ConnectionError("notification controller unreachable")

    recorder = EventRecorder("test", [OrderedDelivery(broken, name="broken")])
    frame = ReconcileFrame(RESOURCE, cast(ObjectWriter, writer), recorder)

    async def steps(run: ReconcileRun) -> None:
        await run.progressing("working", revision="main@sha1:1", delay=5.0)
        await recorder.normal(run.obj, "Progressing", "ConfigMap/unit/a configured")
        run.ready("done")
        run.notify("Normal", "ReconciliationSucceeded", "done")
        run.requeue_after = 60.0

    outcome = await frame.run(_obj(), steps)
    await recorder.drain()
    assert outcome.requeue_after == 60.0
    assert cond.is_true(writer.live, cond.READY)
