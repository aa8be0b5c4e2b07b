"""Queued event delivery: off the reconcile's path, in order per object, bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes.client

from controllers.toolkit.runtime.events import (
    Event,
    EventRecorder,
    OrderedDelivery,
    make_recorder,
)
from controllers.toolkit.runtime.settings import Settings
from tests.support.chatservers import WebhookServer


def body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "apps", "uid": f"u-{name}"},
    }


class SlowSink:
    """Delivers each event after a delay of its own, recording the order it finished in."""

    def __init__(self, delays: dict[str, float]) -> None:
        self.delays = delays
        self.delivered: list[tuple[str, str]] = []

    async def deliver(self, event: Event) -> None:
        await asyncio.sleep(self.delays.get(event.message, 0.0))
        self.delivered.append((event.involved_object.name, event.message))


async def test_events_about_one_object_arrive_in_the_order_recorded() -> None:
    # The first event is the slowest to deliver: nothing about that object overtakes it,
    # while another object's event is not held up behind it.
    sink = SlowSink({"first": 0.2})
    delivery = OrderedDelivery(sink.deliver, name="test")
    recorder = EventRecorder("kustomize-controller", [delivery])
    await recorder.normal(body("a"), "Progressing", "first")
    await recorder.normal(body("a"), "ReconciliationSucceeded", "second")
    await recorder.normal(body("b"), "ReconciliationSucceeded", "other")
    assert sink.delivered == []  # recording waited for no delivery
    await recorder.drain()
    assert sink.delivered == [("b", "other"), ("a", "first"), ("a", "second")]
    assert delivery.queued == 0


async def test_a_failing_delivery_is_logged_and_the_next_event_still_goes() -> None:
    delivered: list[str] = []

    async def deliver(event: Event) -> None:
        if event.message == "boom":
            raise RuntimeError("sink broke")
        delivered.append(event.message)

    recorder = EventRecorder("kustomize-controller", [OrderedDelivery(deliver, name="test")])
    await recorder.warning(body("a"), "Failed", "boom")
    await recorder.normal(body("a"), "ReconciliationSucceeded", "after")
    await recorder.drain()
    assert delivered == ["after"]


async def test_queued_events_are_bounded_and_the_rest_dropped() -> None:
    gate = asyncio.Event()
    delivered: list[str] = []

    async def deliver(event: Event) -> None:
        await gate.wait()
        delivered.append(event.message)

    delivery = OrderedDelivery(deliver, name="test", max_queued=3, max_objects=1)
    recorder = EventRecorder("kustomize-controller", [delivery])
    for index in range(5):
        await recorder.normal(body(f"k{index % 2}"), "Progressing", str(index))
    assert (delivery.queued, delivery.dropped) == (3, 2)
    gate.set()
    await recorder.drain()
    assert sorted(delivered) == ["0", "1", "2"]
    assert delivery.queued == 0


async def test_a_queued_recorder_posts_in_order_to_the_notification_controller(
    webhook_server: WebhookServer,
) -> None:
    api = kubernetes.client.ApiClient()
    try:
        recorder = make_recorder(
            "kustomize", api, Settings(events_url=webhook_server.url + "/"), queued=True
        )
        # Kubernetes Events go to an API server that is not there: only the posts matter.
        recorder.sinks = recorder.sinks[1:]
        for index in range(12):
            await recorder.normal(body("app"), "Progressing", f"event {index}")
        await recorder.drain()
    finally:
        api.close()
    messages = [request.json()["message"] for request in webhook_server.requests()]
    assert messages == [f"event {index}" for index in range(12)]


def test_a_queued_recorder_delivers_to_the_same_places() -> None:
    api = kubernetes.client.ApiClient()
    try:
        queued = make_recorder("kustomize", api, Settings(), queued=True).sinks
        assert [type(sink) for sink in queued] == [OrderedDelivery, OrderedDelivery]
        own = make_recorder("notification", api, Settings(), queued=True).sinks
        assert [type(sink) for sink in own] == [OrderedDelivery]
    finally:
        api.close()
