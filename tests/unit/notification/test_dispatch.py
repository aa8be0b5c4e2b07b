"""The dispatcher: deliveries, retries, failure events, and isolation of slow providers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from controllers.notification.dispatch import (
    Dispatcher,
    DispatchLimits,
    RetryPolicy,
    provider_takes,
)
from controllers.notification.event import FluxEvent
from controllers.notification.index import NotificationIndex
from controllers.notification.providers.config import resolve_provider
from controllers.toolkit.runtime.events import Event, EventRecorder
from tests.support.chatservers import SlackServer, WebhookServer
from tests.support.cluster import wait_for
from tests.unit.notification.events import REVISION, flux_event

NAMESPACE = "apps"


class MemorySink:
    """Keeps recorded events, as the Kubernetes sink would write them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)


def alert(name: str, provider: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}"},
        "spec": {
            "providerRef": {"name": provider},
            "eventSources": [{"kind": "GitRepository", "name": "*"}],
            **spec,
        },
    }


def provider(name: str, type_: str, address: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Provider",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}"},
        "spec": {"type": type_, "address": address, **spec},
    }


class Harness:
    def __init__(self, secrets: Mapping[tuple[str, str], Mapping[str, bytes]] | None = None):
        self.index = NotificationIndex()
        self.sink = MemorySink()
        self.sleeps: list[float] = []
        self.secrets = dict(secrets or {})

        async def read_secret(namespace: str, name: str) -> Mapping[str, bytes] | None:
            return self.secrets.get((namespace, name))

        async def resolve(obj: Mapping[str, Any]) -> Any:
            return await resolve_provider(obj, read_secret)

        async def no_labels(event: FluxEvent) -> Mapping[str, str] | None:
            return {}

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.dispatcher = Dispatcher(
            self.index,
            no_labels,
            resolve,
            EventRecorder("notification-controller", [self.sink]),
            retry=RetryPolicy(retries=4, min_delay=2.0, max_delay=30.0),
            limits=DispatchLimits(workers=2, queue_size=4, per_provider=1),
            sleep=sleep,
        )

    def add(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            target = self.index.alerts if obj["kind"] == "Alert" else self.index.providers
            target.observe("ADDED", obj)

    def warnings(self, reason: str) -> list[Event]:
        return [e for e in self.sink.events if e.reason == reason]


async def test_a_matching_event_reaches_the_provider(slack_server: SlackServer) -> None:
    harness = Harness()
    harness.add(provider("slack", "slack", slack_server.webhook_url), alert("all", "slack"))
    deliveries = await harness.dispatcher.handle(flux_event())
    await harness.dispatcher.drain()
    assert len(deliveries) == 1
    [request] = slack_server.requests()
    fields = request.json()["attachments"][0]["fields"]
    assert {"title": "revision", "value": REVISION, "short": False} in fields
    assert harness.sink.events == []


async def test_retries_back_off_then_a_warning_names_the_provider_and_error() -> None:
    with WebhookServer() as server:
        server.fail(503)
        harness = Harness(
            {(NAMESPACE, "hook-secret"): {"address": f"{server.url}/t0ps3cret-path".encode()}}
        )
        harness.add(
            provider("down", "generic", "", secretRef={"name": "hook-secret"}),
            alert("all", "down"),
        )
        await harness.dispatcher.handle(flux_event())
        await harness.dispatcher.drain()
        assert len(server.requests()) == 5  # the first try and 4 retries
    assert harness.sleeps == [2.0, 4.0, 8.0, 16.0]
    [failed] = harness.warnings("NotificationDispatchFailed")
    assert failed.type == "Warning"
    assert failed.involved_object.kind == "Alert"
    assert failed.involved_object.name == "all"
    assert "GitRepository/apps/podinfo" in failed.message
    assert "'apps/down'" in failed.message
    assert "HTTP 503" in failed.message
    assert "t0ps3cret" not in failed.message


async def test_a_429_is_retried_after_what_retry_after_says_at_most_a_minute(
    slack_server: SlackServer,
) -> None:
    slack_server.fail(429, retry_after="7")
    harness = Harness()
    harness.add(provider("slack", "slack", slack_server.webhook_url), alert("all", "slack"))
    await harness.dispatcher.handle(flux_event())
    await harness.dispatcher.drain()
    assert [r.status for r in slack_server.requests()] == [429] * 5
    assert harness.sleeps == [7.0, 7.0, 7.0, 7.0]
    [failed] = harness.warnings("NotificationDispatchFailed")
    assert "HTTP 429" in failed.message

    with WebhookServer() as server:
        server.fail(429, retry_after="3600")
        harness = Harness()
        harness.add(provider("hook", "generic", server.url), alert("all", "hook"))
        await harness.dispatcher.handle(flux_event())
        await harness.dispatcher.drain()
    assert harness.sleeps == [60.0] * 4  # bounded, whatever the server asks
    slack_server.recover()


async def test_a_refusal_is_not_retried() -> None:
    with WebhookServer() as server:
        server.fail(400)
        harness = Harness()
        harness.add(provider("bad", "generic", server.url), alert("all", "bad"))
        await harness.dispatcher.handle(flux_event())
        await harness.dispatcher.drain()
        assert len(server.requests()) == 1
    assert harness.sleeps == []
    assert len(harness.warnings("NotificationDispatchFailed")) == 1


async def test_a_recovering_provider_gets_the_notification_without_a_warning() -> None:
    with WebhookServer() as server:
        server.fail(500, times=2)
        harness = Harness()
        harness.add(provider("flaky", "generic", server.url), alert("all", "flaky"))
        await harness.dispatcher.handle(flux_event())
        await harness.dispatcher.drain()
        assert [r.status for r in server.requests()] == [500, 500, 200]
    assert harness.sleeps == [2.0, 4.0]
    assert harness.sink.events == []


async def test_a_hanging_provider_does_not_hold_up_another(slack_server: SlackServer) -> None:
    with WebhookServer() as slow:
        slow.hang()
        harness = Harness()
        harness.add(
            provider("slow", "generic", slow.url, timeout="30s"),
            provider("slack", "slack", slack_server.webhook_url),
            alert("to-slow", "slow"),
            alert("to-slack", "slack"),
        )
        await harness.dispatcher.start()
        try:
            for n in range(3):
                assert harness.dispatcher.submit(flux_event(message=f"event {n}"))
            # Slack gets all three while the slow provider holds its one slot.
            await asyncio.to_thread(
                slack_server.wait_for, lambda r: True, count=3, timeout=20, what="slack messages"
            )
            # Its one request is in flight (recorded when it arrives, which a
            # loaded machine may delay past Slack's three): never a second.
            await asyncio.to_thread(
                wait_for, lambda: slow.requests(), timeout=10, what="the slow request"
            )
            assert len(slow.requests()) == 1
        finally:
            await harness.dispatcher.close()
            slow.recover()


async def test_a_full_queue_refuses_events_instead_of_blocking() -> None:
    harness = Harness()
    await harness.dispatcher.start()
    try:
        # Workers are busy with nothing; fill past the bound without yielding.
        accepted = [harness.dispatcher.submit(flux_event(message=str(n))) for n in range(10)]
        assert accepted.count(True) == 4
        assert accepted[4:] == [False] * 6
    finally:
        await harness.dispatcher.close()


async def test_missing_provider_and_bad_secrets_are_reported_on_the_alert() -> None:
    harness = Harness()
    harness.add(
        alert("orphan", "nowhere"),
        provider("nosecret", "slack", "", secretRef={"name": "absent"}),
        alert("broken", "nosecret"),
    )
    assert await harness.dispatcher.handle(flux_event()) == []
    messages = sorted(e.message for e in harness.warnings("NotificationDispatchFailed"))
    assert "secret 'apps/absent' (spec.secretRef) not found" in messages[0]
    assert "provider 'apps/nowhere' (spec.providerRef) not found" in messages[1]


async def test_suspended_providers_and_non_matching_alerts_get_nothing(
    slack_server: SlackServer,
) -> None:
    harness = Harness()
    harness.add(
        provider("paused", "slack", slack_server.webhook_url, suspend=True),
        alert("paused", "paused"),
        provider("slack", "slack", slack_server.webhook_url),
        alert("errors-only", "slack", eventSeverity="error"),
    )
    assert await harness.dispatcher.handle(flux_event()) == []
    assert harness.sink.events == []


async def test_bad_patterns_and_metadata_conflicts_warn_on_the_alert(
    slack_server: SlackServer,
) -> None:
    harness = Harness()
    harness.add(
        provider("slack", "slack", slack_server.webhook_url),
        alert(
            "odd",
            "slack",
            inclusionList=["[", "stored"],
            eventMetadata={"revision": "overridden-by-controller"},
        ),
    )
    [delivery] = await harness.dispatcher.handle(flux_event())
    await harness.dispatcher.drain()
    assert delivery.event.metadata["revision"] == REVISION
    assert len(harness.warnings("InvalidConfig")) == 1
    assert len(harness.warnings("MetadataAppendFailed")) == 1


def test_commit_status_routing_follows_flux() -> None:
    update = flux_event(
        metadata={
            "source.toolkit.fluxcd.io/commit_status": "update",
            "source.toolkit.fluxcd.io/revision": REVISION,
        }
    )
    plain = flux_event()
    failed = flux_event(severity="error")
    assert provider_takes("github", update)
    assert not provider_takes("github", plain)
    assert provider_takes("github", failed)
    assert provider_takes("generic", update)
    assert not provider_takes("slack", update)
    assert provider_takes("slack", plain)
