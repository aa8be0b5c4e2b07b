from __future__ import annotations

import datetime

import pytest

from controllers.toolkit.runtime import conditions as c

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)
T2 = T0 + datetime.timedelta(minutes=10)


def test_set_condition_adds_one_with_every_field() -> None:
    status = c.set_condition({}, c.READY, c.TRUE, c.SUCCEEDED, "done", generation=3, now=T0)
    assert status["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-01-01T12:00:00Z",
            "reason": "Succeeded",
            "message": "done",
        }
    ]


def test_transition_time_stays_while_status_is_unchanged() -> None:
    first = c.set_condition({}, c.READY, c.FALSE, c.BUILD_FAILED, "a", generation=1, now=T0)
    again = c.set_condition(first, c.READY, c.FALSE, c.ARTIFACT_FAILED, "b", generation=2, now=T1)
    ready = c.get_condition(again, c.READY)
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    # Everything else follows the latest write.
    assert (ready["reason"], ready["message"], ready["observedGeneration"]) == (
        "ArtifactFailed",
        "b",
        2,
    )


def test_transition_time_moves_when_status_flips() -> None:
    status = c.set_condition({}, c.READY, c.FALSE, c.FAILED, "x", generation=1, now=T0)
    status = c.set_condition(status, c.READY, c.TRUE, c.SUCCEEDED, "y", generation=1, now=T1)
    ready = c.get_condition(status, c.READY)
    assert ready is not None and ready["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    status = c.set_condition(status, c.READY, c.UNKNOWN, c.PROGRESSING, "z", generation=1, now=T2)
    ready = c.get_condition(status, c.READY)
    assert ready is not None and ready["lastTransitionTime"] == "2026-01-01T12:10:00Z"


def test_functions_never_mutate_their_input() -> None:
    original = c.set_condition({}, c.READY, c.TRUE, c.SUCCEEDED, "ok", generation=1, now=T0)
    snapshot = repr(original)
    c.set_condition(original, c.READY, c.FALSE, c.FAILED, "no", generation=2, now=T1)
    c.remove_condition(original, c.READY)
    c.mark_stalled(original, c.FAILED, "stuck", generation=2, now=T1)
    c.summarize(original, generation=2, annotations={c.REQUESTED_AT_ANNOTATION: "now"})
    assert repr(original) == snapshot


def test_setting_the_same_values_again_gives_an_equal_status() -> None:
    # What lets a no-op reconcile skip its status write.
    once = c.mark_ready({}, "Applied revision: main@sha1:1", generation=4, now=T0)
    twice = c.mark_ready(once, "Applied revision: main@sha1:1", generation=4, now=T2)
    assert once == twice


def test_ready_comes_first_then_types_in_order() -> None:
    status = c.set_condition({}, "Healthy", c.TRUE, c.SUCCEEDED, "", generation=1, now=T0)
    status = c.set_condition(status, c.RECONCILING, c.TRUE, c.PROGRESSING, "", generation=1)
    status = c.set_condition(status, c.READY, c.UNKNOWN, c.PROGRESSING, "", generation=1)
    status = c.set_condition(status, "ArtifactInStorage", c.TRUE, c.SUCCEEDED, "", generation=1)
    assert c.condition_types(status) == ["Ready", "ArtifactInStorage", "Healthy", "Reconciling"]


def test_set_condition_rejects_other_statuses() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        c.set_condition({}, c.READY, "Yes", c.SUCCEEDED, "", generation=1)  # type: ignore[arg-type]


def test_get_and_remove() -> None:
    status = c.set_condition({}, c.READY, c.TRUE, c.SUCCEEDED, "", generation=1)
    assert c.get_condition(status, c.STALLED) is None
    assert c.condition_status(status, c.READY) == "True"
    assert c.is_true(status, c.READY) and not c.is_false(status, c.READY)
    assert c.remove_condition(status, c.READY)["conditions"] == []
    assert c.remove_condition({}, c.READY) == {}


def test_ready_status_is_unknown_before_any_report() -> None:
    assert c.ready_status(None) == "Unknown"
    assert c.ready_status({"conditions": []}) == "Unknown"
    failed = c.mark_failed({}, c.BUILD_FAILED, "bad", generation=1)
    assert c.ready_status(failed) == "False"


def test_progressing_sets_reconciling_and_ready_unknown_and_drops_stalled() -> None:
    stalled = c.mark_stalled({}, c.BUILD_FAILED, "bad path", generation=1, now=T0)
    status = c.mark_progressing(stalled, generation=2, now=T1)
    assert c.condition_types(status) == ["Ready", "Reconciling"]
    ready = c.get_condition(status, c.READY)
    reconciling = c.get_condition(status, c.RECONCILING)
    assert ready is not None and reconciling is not None
    assert (ready["status"], ready["reason"]) == ("Unknown", "Progressing")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "Progressing")
    assert reconciling["message"] == "Reconciliation in progress"


def test_stalled_sets_ready_false_and_drops_reconciling() -> None:
    progressing = c.mark_progressing({}, generation=1, now=T0)
    status = c.mark_stalled(progressing, c.BUILD_FAILED, "no kustomization", generation=1)
    assert c.condition_types(status) == ["Ready", "Stalled"]
    ready = c.get_condition(status, c.READY)
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "BuildFailed",
        "no kustomization",
    )


def test_summarize_after_success_leaves_only_ready_and_observes_the_generation() -> None:
    status = c.mark_progressing({"observedGeneration": 1}, generation=2, now=T0)
    status = c.mark_ready(status, "Applied revision: main@sha1:abc", generation=2, now=T1)
    status = c.summarize(status, generation=2)
    assert c.condition_types(status) == ["Ready"]
    assert status["observedGeneration"] == 2
    ready = c.get_condition(status, c.READY)
    assert ready is not None and ready["reason"] == "ReconciliationSucceeded"


def test_summarize_after_failure_keeps_generation_and_retries() -> None:
    status = c.mark_progressing({"observedGeneration": 1}, generation=2, now=T0)
    status = c.mark_failed(status, c.HEALTH_CHECK_FAILED, "timeout", generation=2, now=T1)
    status = c.summarize(status, generation=2)
    assert status["observedGeneration"] == 1
    reconciling = c.get_condition(status, c.RECONCILING)
    assert reconciling is not None
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ProgressingWithRetry")
    # Only the reason changed; the condition did not flip.
    assert reconciling["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_summarize_after_stall_observes_the_generation_without_reconciling() -> None:
    status = c.mark_progressing({}, generation=5, now=T0)
    status = c.mark_stalled(status, c.BUILD_FAILED, "invalid", generation=5, now=T1)
    status = c.summarize(status, generation=5)
    assert c.condition_types(status) == ["Ready", "Stalled"]
    assert status["observedGeneration"] == 5


def test_summarize_drops_reconciling_and_stalled_unless_true() -> None:
    status = c.set_condition({}, c.RECONCILING, c.FALSE, c.SUCCEEDED, "", generation=1)
    status = c.set_condition(status, c.STALLED, c.UNKNOWN, c.FAILED, "", generation=1)
    status = c.summarize(status, generation=1)
    assert c.condition_types(status) == []


def test_summarize_records_the_handled_request() -> None:
    annotations = {c.REQUESTED_AT_ANNOTATION: "2026-01-01T12:00:00.123Z"}
    status = c.summarize({}, generation=1, annotations=annotations)
    assert status["lastHandledReconcileAt"] == "2026-01-01T12:00:00.123Z"
    assert (
        c.summarize({"lastHandledReconcileAt": "old"}, generation=1)["lastHandledReconcileAt"]
        == "old"
    )


def test_observed_generation_defaults_to_minus_one() -> None:
    assert c.observed_generation(None) == -1
    assert c.observed_generation({"observedGeneration": 7}) == 7


def test_requested_at_handling() -> None:
    assert c.requested_at(None) is None
    assert c.requested_at({c.REQUESTED_AT_ANNOTATION: ""}) is None
    annotations = {c.REQUESTED_AT_ANNOTATION: "1700000000"}
    assert c.requested_at(annotations) == "1700000000"
    assert c.reconcile_requested({}, annotations)
    handled = c.record_reconcile_request({}, annotations)
    assert handled == {"lastHandledReconcileAt": "1700000000"}
    assert not c.reconcile_requested(handled, annotations)
    # Any different value is a new request, even one that sorts "earlier".
    assert c.reconcile_requested(handled, {c.REQUESTED_AT_ANNOTATION: "1"})
    assert not c.reconcile_requested(handled, {})


def test_new_work_is_an_unhandled_request_an_unreported_generation_or_a_new_revision() -> None:
    ready = c.mark_ready({}, "Applied", generation=3)
    done = {**ready, "lastHandledReconcileAt": "a", "lastAttemptedRevision": "main@sha1:1"}
    assert not c.has_new_work(done, generation=3, annotations={c.REQUESTED_AT_ANNOTATION: "a"})
    assert c.has_new_work(done, generation=4, annotations=None)
    assert c.has_new_work(done, generation=3, annotations={c.REQUESTED_AT_ANNOTATION: "b"})
    assert c.has_new_work({}, generation=1, annotations=None)
    assert not c.has_new_work(done, generation=3, annotations=None, revision="main@sha1:1")
    assert c.has_new_work(done, generation=3, annotations=None, revision="main@sha1:2")


def test_a_retry_of_failed_work_is_not_new_work() -> None:
    # observedGeneration lags on failure; Ready's own generation does not.
    failed = c.mark_failed({"observedGeneration": 2}, "BuildFailed", "no", generation=3)
    assert not c.has_new_work(failed, generation=3, annotations=None)


def test_format_time_is_utc_at_second_precision() -> None:
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    moment = datetime.datetime(2026, 3, 4, 14, 5, 6, 789000, tzinfo=plus_two)
    assert c.format_time(moment) == "2026-03-04T12:05:06Z"
    assert c.format_time(datetime.datetime(2026, 3, 4, 5, 6, 7)) == "2026-03-04T05:06:07Z"


def test_reason_constants_match_flux() -> None:
    assert [
        c.SUCCEEDED,
        c.FAILED,
        c.PROGRESSING,
        c.PROGRESSING_WITH_RETRY,
        c.DEPENDENCY_NOT_READY,
        c.ARTIFACT_FAILED,
        c.BUILD_FAILED,
        c.HEALTH_CHECK_FAILED,
        c.HEALTH_CHECK_CANCELED,
        c.PRUNE_FAILED,
        c.RECONCILIATION_SUCCEEDED,
        c.RECONCILIATION_FAILED,
    ] == [
        "Succeeded",
        "Failed",
        "Progressing",
        "ProgressingWithRetry",
        "DependencyNotReady",
        "ArtifactFailed",
        "BuildFailed",
        "HealthCheckFailed",
        "HealthCheckCanceled",
        "PruneFailed",
        "ReconciliationSucceeded",
        "ReconciliationFailed",
    ]
