from __future__ import annotations

import datetime

import kubernetes.client

from controllers.toolkit.runtime.events import (
    MAX_MESSAGE_LENGTH,
    EventRecorder,
    KubernetesEventSink,
    ObjectReference,
    controller_name,
)

BODY = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "GitRepository",
    "metadata": {"name": "podinfo", "namespace": "apps", "uid": "u-1", "resourceVersion": "42"},
}
MOMENT = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def recorder() -> EventRecorder:
    return EventRecorder("source-controller", [], instance="pod-1")


def sink() -> KubernetesEventSink:
    # Building the body needs no server: the client is never called here.
    return KubernetesEventSink(kubernetes.client.ApiClient())


def test_reference_keeps_every_identifying_field() -> None:
    ref = ObjectReference.from_body(BODY)
    assert ref.to_api() == {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "name": "podinfo",
        "namespace": "apps",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert ref.group == "source.toolkit.fluxcd.io"
    assert ObjectReference.from_body({"apiVersion": "v1", "kind": "Node"}).group == ""


def test_metadata_keys_get_the_object_group() -> None:
    event = recorder().event(
        BODY, "Normal", "NewArtifact", "stored", {"revision": "main@sha1:1", "a.io/x": "y"}
    )
    assert event.qualified_metadata() == {
        "source.toolkit.fluxcd.io/revision": "main@sha1:1",
        "a.io/x": "y",
    }


def test_event_body_has_the_core_v1_shape() -> None:
    event = recorder().event(
        BODY, "Warning", "GitOperationFailed", "clone failed", {"revision": "r"}, now=MOMENT
    )
    body = sink().body(event, "podinfo.abc")
    assert body["metadata"] == {
        "name": "podinfo.abc",
        "namespace": "apps",
        "annotations": {"source.toolkit.fluxcd.io/revision": "r"},
    }
    assert body["involvedObject"]["uid"] == "u-1"
    assert body["type"] == "Warning"
    assert body["reason"] == "GitOperationFailed"
    assert body["message"] == "clone failed"
    assert body["source"] == {"component": "source-controller"}
    assert body["reportingComponent"] == "source-controller"
    assert body["reportingInstance"] == "pod-1"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-01-02T03:04:05Z"
    assert body["count"] == 1


def test_cluster_scoped_objects_get_events_in_default() -> None:
    node = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "uid": "u"}}
    event = recorder().event(node, "Normal", "R", "m", now=MOMENT)
    assert sink().body(event, "x.1")["metadata"]["namespace"] == "default"


def test_long_messages_are_truncated() -> None:
    event = recorder().event(BODY, "Normal", "R", "x" * 5000, now=MOMENT)
    message = sink().body(event, "n")["message"]
    assert len(message) == MAX_MESSAGE_LENGTH
    assert message.endswith("...")


def test_repeats_share_an_aggregation_key_and_differences_do_not() -> None:
    rec = recorder()
    first = rec.event(BODY, "Normal", "R", "same", {"revision": "1"}, now=MOMENT)
    later = rec.event(BODY, "Normal", "R", "same", {"revision": "1"})
    assert KubernetesEventSink.aggregation_key(first) == KubernetesEventSink.aggregation_key(later)
    for other in (
        rec.event(BODY, "Warning", "R", "same", {"revision": "1"}),
        rec.event(BODY, "Normal", "Other", "same", {"revision": "1"}),
        rec.event(BODY, "Normal", "R", "different", {"revision": "1"}),
        rec.event(BODY, "Normal", "R", "same", {"revision": "2"}),
    ):
        assert KubernetesEventSink.aggregation_key(other) != KubernetesEventSink.aggregation_key(
            first
        )


def test_controller_names_are_flux_style() -> None:
    assert controller_name("source") == "source-controller"
    assert controller_name("helm-controller") == "helm-controller"


def test_event_annotations_of_the_object_travel_in_the_metadata() -> None:
    recorder = EventRecorder("kustomize-controller", [])
    body = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": "app",
            "namespace": "apps",
            "annotations": {"event.toolkit.fluxcd.io/team": "payments", "other/note": "x"},
        },
    }
    event = recorder.event(body, "Normal", "Progressing", "applied", {"revision": "main@sha1:1"})
    assert event.metadata == {"event.toolkit.fluxcd.io/team": "payments", "revision": "main@sha1:1"}
    # Already qualified keys keep their own group; ours get the object's.
    assert event.qualified_metadata() == {
        "event.toolkit.fluxcd.io/team": "payments",
        "kustomize.toolkit.fluxcd.io/revision": "main@sha1:1",
    }
