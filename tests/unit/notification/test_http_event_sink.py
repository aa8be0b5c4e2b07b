"""The toolkit's HTTP event sink: Flux's event JSON to the intake, best effort."""

from __future__ import annotations

import datetime
import time

import kubernetes.client

from controllers.notification.event import parse_event
from controllers.toolkit.runtime.events import (
    Event,
    EventRecorder,
    HttpEventSink,
    KubernetesEventSink,
    make_recorder,
)
from controllers.toolkit.runtime.settings import Settings
from tests.support.chatservers import WebhookServer

BODY = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "GitRepository",
    "metadata": {"name": "app", "namespace": "apps", "uid": "u-1", "resourceVersion": "7"},
}


def recorded(type_: str = "Normal") -> Event:
    recorder = EventRecorder("source-controller", [], instance="pod-1")
    return recorder.event(
        BODY,
        type_,  # type: ignore[arg-type]
        "NewArtifact",
        "stored artifact for revision 'main@sha1:abc'",
        {"revision": "main@sha1:abc"},
        now=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    )


def test_the_payload_is_fluxs_event_and_the_intake_accepts_it() -> None:
    payload = HttpEventSink.payload(recorded())
    assert payload == {
        "involvedObject": {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "name": "app",
            "namespace": "apps",
            "uid": "u-1",
            "resourceVersion": "7",
        },
        "severity": "info",
        "timestamp": "2026-01-02T03:04:05Z",
        "message": "stored artifact for revision 'main@sha1:abc'",
        "reason": "NewArtifact",
        "reportingController": "source-controller",
        "reportingInstance": "pod-1",
        "metadata": {"source.toolkit.fluxcd.io/revision": "main@sha1:abc"},
    }
    assert parse_event(payload).object_metadata("revision") == "main@sha1:abc"
    warning = HttpEventSink.payload(recorded("Warning"))
    assert warning is not None
    assert warning["severity"] == "error"
    assert HttpEventSink.payload(recorded("Trace")) is None


async def test_events_are_posted(webhook_server: WebhookServer) -> None:
    sink = HttpEventSink(webhook_server.url + "/")
    await sink.emit(recorded())
    await sink.drain()
    [request] = webhook_server.requests()
    assert request.headers["Content-Type"] == "application/json"
    assert request.json()["reason"] == "NewArtifact"
    await sink.emit(recorded("Trace"))
    await sink.drain()
    assert len(webhook_server.requests()) == 1


async def test_a_failing_or_slow_intake_never_raises(webhook_server: WebhookServer) -> None:
    sink = HttpEventSink(webhook_server.url + "/", timeout=0.3)
    webhook_server.fail(500)
    await sink.emit(recorded())
    await sink.drain()
    webhook_server.recover()
    webhook_server.hang()
    await sink.emit(recorded())
    await sink.drain()
    webhook_server.recover()
    down = HttpEventSink("http://127.0.0.1:9/")  # nothing listens there
    await down.emit(recorded())
    await down.drain()


async def test_a_stalled_intake_holds_up_no_emitter_and_in_flight_posts_are_bounded(
    webhook_server: WebhookServer,
) -> None:
    sink = HttpEventSink(webhook_server.url + "/", timeout=5, max_in_flight=3)
    webhook_server.hang()
    started = time.monotonic()
    for _ in range(5):
        await sink.emit(recorded())
    # Five events recorded in far less than one post's timeout: nobody waited.
    assert time.monotonic() - started < 1
    assert sink.in_flight == 3
    assert sink.dropped == 2
    webhook_server.recover()
    await sink.drain()
    assert sink.in_flight == 0


def test_every_controller_but_notification_posts_its_events() -> None:
    api = kubernetes.client.ApiClient()
    settings = Settings(events_url="http://127.0.0.1:9091/")
    try:
        sinks = make_recorder("source", api, settings).sinks
        assert [type(s) for s in sinks] == [KubernetesEventSink, HttpEventSink]
        assert isinstance(sinks[1], HttpEventSink)
        assert sinks[1].url == "http://127.0.0.1:9091/"
        own = make_recorder("notification", api, settings).sinks
        assert [type(s) for s in own] == [KubernetesEventSink]
    finally:
        api.close()
