"""The event intake over real HTTP on loopback: answers for good, bad and repeated events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controllers.notification.dedup import DuplicateFilter
from controllers.notification.event import FluxEvent
from controllers.notification.intake import MAX_BODY, make_app
from controllers.toolkit.runtime.http import HttpServer
from tests.unit.notification.events import wire_event


class Collector:
    def __init__(self, capacity: int = 100) -> None:
        self.events: list[FluxEvent] = []
        self.capacity = capacity

    def submit(self, event: FluxEvent) -> bool:
        if len(self.events) >= self.capacity:
            return False
        self.events.append(event)
        return True


@pytest.fixture
async def intake() -> AsyncIterator[tuple[str, Collector]]:
    collector = Collector(capacity=3)
    server = HttpServer(make_app(collector, DuplicateFilter(300.0)), "127.0.0.1", 0)
    await server.start()
    try:
        yield server.url, collector
    finally:
        await server.stop()


async def post(
    url: str, body: bytes | Any, content_type: str | None = "application/json", method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            url,
            data=data,
            headers=headers,
            skip_auto_headers=() if content_type else ("Content-Type",),
        ) as response,
    ):
        text = await response.text()
        return response.status, (json.loads(text) if text.startswith("{") else {"text": text})


async def test_an_event_is_accepted_cleaned_and_queued(intake: tuple[str, Collector]) -> None:
    url, collector = intake
    status, answer = await post(url, wire_event())
    assert (status, answer["message"]) == (202, "accepted")
    [event] = collector.events
    assert event.kind == "GitRepository"
    assert "source.toolkit.fluxcd.io/digest" not in event.metadata


async def test_a_repeat_is_answered_429_and_not_queued(intake: tuple[str, Collector]) -> None:
    url, collector = intake
    assert (await post(url, wire_event()))[0] == 202
    assert (await post(url, wire_event()))[0] == 429
    assert (await post(url, wire_event(message="another")))[0] == 202
    assert len(collector.events) == 2


async def test_malformed_events_get_400_naming_the_field(intake: tuple[str, Collector]) -> None:
    url, collector = intake
    status, answer = await post(url, b"{not json")
    assert status == 400
    assert "not valid JSON" in answer["message"]
    body = wire_event()
    del body["involvedObject"]["kind"]
    status, answer = await post(url, body)
    assert (status, answer["message"]) == (400, "invalid event: involvedObject.kind: required")
    status, answer = await post(url, wire_event(severity="fatal"))
    assert status == 400
    assert "severity" in answer["message"]
    assert collector.events == []


async def test_size_type_and_method_are_checked(intake: tuple[str, Collector]) -> None:
    url, collector = intake
    huge = wire_event(message="x" * (MAX_BODY + 1))
    assert (await post(url, huge))[0] == 413
    assert (await post(url, wire_event(), content_type="text/plain"))[0] == 415
    assert (await post(url, wire_event(), content_type=None))[0] == 202  # no type: taken as JSON
    assert (await post(url, b"", method="GET"))[0] == 405
    assert (await post(url + "other", wire_event()))[0] == 404
    assert len(collector.events) == 1


async def test_a_full_dispatcher_is_answered_503(intake: tuple[str, Collector]) -> None:
    url, _ = intake
    statuses = [(await post(url, wire_event(message=str(n))))[0] for n in range(4)]
    assert statuses == [202, 202, 202, 503]
