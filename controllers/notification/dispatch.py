"""From an accepted event to every matching Alert's Provider, without blocking anyone.

The intake only enqueues (`submit`); a small pool of workers matches each
event against the Alerts in memory and starts one delivery task per
matching Alert. A delivery sends to its Provider with the Provider's
timeout and retries with exponential backoff (Flux: 4 retries, 2s to 30s, or
the server's Retry-After, at most 60s);
after the last failure it records a Warning `NotificationDispatchFailed` on
the Alert, naming the provider and the error with every secret value masked.

Bounds, so a slow or dead provider never holds up the others or the intake:
the event queue has a fixed size (a full queue refuses new events), each
Provider has its own concurrency limit (waiting between retries holds no
slot), and each Provider has a cap on deliveries waiting for it, beyond
which new ones are dropped with the same Warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers.notification.event import (
    COMMIT,
    COMMIT_STATUS,
    COMMIT_STATUS_UPDATE,
    ERROR,
    EVENT_GROUP,
    FluxEvent,
)
from controllers.notification.index import NotificationIndex
from controllers.notification.matching import (
    AlertMatch,
    AlertSpec,
    LabelLookup,
    combine_metadata,
    matching_alerts,
)
from controllers.notification.providers import (
    COMMIT_STATUS_TYPES,
    GENERIC_TYPES,
    DeliveryError,
    ProviderConfig,
    ProviderConfigError,
    Sender,
    build_sender,
)
from controllers.notification.providers.base import mask
from controllers.toolkit.runtime import observability
from controllers.toolkit.runtime.events import EventRecorder
from controllers.toolkit.runtime.reconciler import ObjectRef

log = logging.getLogger(__name__)

DISPATCH_FAILED = "NotificationDispatchFailed"
INVALID_CONFIG = "InvalidConfig"
METADATA_APPEND_FAILED = "MetadataAppendFailed"

Object = dict[str, Any]
ProviderResolver = Callable[[Mapping[str, Any]], Awaitable[ProviderConfig]]
SenderFactory = Callable[[ProviderConfig], Sender]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` more attempts after the first, waiting min_delay * 2^n, at most max_delay.

    A server that says when to come back (`Retry-After` on a 429 or 503) is
    waited for instead, as go-retryablehttp (Flux's client) does, but never
    longer than `max_retry_after`: every wait is bounded.
    """

    retries: int = 4
    min_delay: float = 2.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return float(min(self.max_retry_after, max(0.0, retry_after)))
        return float(min(self.max_delay, self.min_delay * (2**attempt)))


@dataclass(frozen=True)
class DispatchLimits:
    workers: int = 4
    queue_size: int = 1024
    per_provider: int = 2
    pending_per_provider: int = 256


@dataclass
class _Lane:
    """What one Provider is doing: its send slots and the deliveries waiting for it."""

    slots: asyncio.Semaphore
    pending: int = 0


@dataclass(frozen=True)
class Delivery:
    """One notification for one Alert, ready to send."""

    alert: Mapping[str, Any]
    event: FluxEvent  # with the Alert's metadata merged in
    config: ProviderConfig
    sender: Sender = field(repr=False)


def is_commit_status_update(event: FluxEvent) -> bool:
    return event.object_metadata(COMMIT_STATUS) == COMMIT_STATUS_UPDATE


def has_commit_key(event: FluxEvent) -> bool:
    return bool(event.metadata.get(f"{EVENT_GROUP}/{COMMIT}"))


def provider_takes(provider_type: str, event: FluxEvent) -> bool:
    """Flux's routing of commit-status events.

    Commit status updates go only to commit status and generic providers;
    commit status providers take only commit status updates, events naming
    a commit, and errors (emitters never mark failures as updates).
    """
    update = is_commit_status_update(event)
    if provider_type in COMMIT_STATUS_TYPES:
        return update or has_commit_key(event) or event.severity == ERROR
    return provider_type in GENERIC_TYPES or not update


class Dispatcher:
    def __init__(
        self,
        index: NotificationIndex,
        labels_of: LabelLookup,
        resolve_provider: ProviderResolver,
        recorder: EventRecorder,
        *,
        build: SenderFactory = build_sender,
        retry: RetryPolicy | None = None,
        limits: DispatchLimits | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.index = index
        self.retry = retry or RetryPolicy()
        self.limits = limits or DispatchLimits()
        self._labels_of = labels_of
        self._resolve = resolve_provider
        self._recorder = recorder
        self._build = build
        self._sleep = sleep
        self._queue: asyncio.Queue[FluxEvent] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._lanes: dict[str, _Lane] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.limits.queue_size)
        self._workers = [
            asyncio.create_task(self._work(), name=f"notification dispatch {n}")
            for n in range(self.limits.workers)
        ]

    async def close(self) -> None:
        tasks = [*self._workers, *self._deliveries]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers = []

    def submit(self, event: FluxEvent) -> bool:
        """Queue `event` for matching; False when the queue is full (or not started)."""
        if self._queue is None:
            return False
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued event is matched and every delivery has ended."""
        if self._queue is not None:
            await self._queue.join()
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            try:
                await self.handle(event)
            except Exception:
                log.exception("dispatching event about %s failed", event.describe())
            finally:
                self._queue.task_done()

    # -- matching ----------------------------------------------------------------------

    async def _labels(self, event: FluxEvent) -> Mapping[str, str] | None:
        try:
            return await self._labels_of(event)
        except Exception:
            log.exception("reading labels of %s failed", event.describe())
            return None

    async def handle(self, event: FluxEvent) -> list[Delivery]:
        """Match `event` and start a delivery for each Alert that takes it."""
        bodies = {
            (str(obj["metadata"].get("namespace")), str(obj["metadata"].get("name"))): obj
            for obj in self.index.alerts.view()
        }
        specs = [AlertSpec.from_object(obj) for obj in bodies.values()]
        matches = await matching_alerts(specs, event, self._labels)
        if not matches:
            log.debug("no alert takes the event about %s", event.describe())
            return []
        deliveries = []
        for match in matches:
            alert_body = bodies[(match.alert.namespace, match.alert.name)]
            delivery = await self._prepare(match, alert_body, event)
            if delivery is not None:
                self._start(delivery)
                deliveries.append(delivery)
        return deliveries

    async def _prepare(
        self, match: AlertMatch, alert_body: Mapping[str, Any], event: FluxEvent
    ) -> Delivery | None:
        alert = match.alert
        for problem in match.config_errors:
            await self._recorder.warning(
                alert_body, INVALID_CONFIG, f"failed to compile regular expression {problem}"
            )
        provider = self.index.providers.peek(ObjectRef(alert.namespace, alert.provider_name))
        if provider is None:
            await self._failed(
                alert_body,
                f"failed to send notification for {event.describe()}: provider "
                f"'{alert.namespace}/{alert.provider_name}' (spec.providerRef) not found",
            )
            return None
        spec = provider.get("spec") or {}
        if spec.get("suspend"):
            return None
        if not provider_takes(str(spec.get("type") or ""), event):
            return None
        combined = combine_metadata(event, alert)
        if combined.conflicts:
            keys = ", ".join(
                f"{key} ({'; '.join(sources)})"
                for key, sources in sorted(combined.conflicts.items())
            )
            await self._recorder.warning(
                alert_body,
                METADATA_APPEND_FAILED,
                f"metadata key conflicts detected, higher precedence wins: {keys}",
            )
        notification = event.with_metadata(combined.metadata)
        try:
            config = await self._resolve(provider)
            sender = self._build(config)
        except ProviderConfigError as exc:
            name = f"{alert.namespace}/{alert.provider_name}"
            await self._failed(
                alert_body,
                f"failed to send notification for {event.describe()} to provider "
                f"'{name}': {exc.message}",
            )
            return None
        return Delivery(alert=alert_body, event=notification, config=config, sender=sender)

    # -- delivery ----------------------------------------------------------------------

    def _start(self, delivery: Delivery) -> None:
        key = delivery.config.key
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(asyncio.Semaphore(self.limits.per_provider))
        if lane.pending >= self.limits.pending_per_provider:
            task = asyncio.create_task(
                self._failed(
                    delivery.alert,
                    f"failed to send notification for {delivery.event.describe()} to provider "
                    f"'{key}': {lane.pending} notifications are already waiting for it; dropped",
                )
            )
        else:
            lane.pending += 1
            task = asyncio.create_task(self._deliver(delivery, lane), name=f"notify {key}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, delivery: Delivery, lane: _Lane) -> None:
        config = delivery.config
        try:
            error = await self._attempts(delivery, lane)
            observability.record_notification(
                config.namespace, config.name, config.type, sent=error is None
            )
            if error is None:
                log.info(
                    "notification sent",
                    extra={
                        "provider": config.key,
                        "type": config.type,
                        "object": delivery.event.describe(),
                    },
                )
                return
            message = mask(
                f"failed to send notification for {delivery.event.describe()} to provider "
                f"'{config.key}' ({config.type}): {error}",
                config.secret_values(),
            )
            await self._failed(delivery.alert, message)
        finally:
            lane.pending -= 1
            if lane.pending == 0 and self._lanes.get(config.key) is lane:
                del self._lanes[config.key]

    async def _attempts(self, delivery: Delivery, lane: _Lane) -> str | None:
        """None once sent; else the last error, after the retries it deserved."""
        config = delivery.config
        # A sender makes at most two requests, each bounded by the Provider's timeout.
        deadline = 2 * config.timeout + 1
        error = "no attempt made"
        for attempt in range(self.retry.retries + 1):
            retryable = True
            retry_after: float | None = None
            try:
                async with lane.slots:
                    await asyncio.wait_for(delivery.sender.send(delivery.event), deadline)
                return None
            except DeliveryError as exc:
                error, retryable, retry_after = exc.message, exc.retryable, exc.retry_after
            except TimeoutError:
                error = f"timed out after {config.timeout:g}s"
            except Exception as exc:
                log.exception("sending to provider %s crashed", config.key)
                error = f"unexpected {type(exc).__name__}"
            if not retryable or attempt == self.retry.retries:
                break
            log.info(
                "notification failed, retrying",
                extra={
                    "provider": config.key,
                    "attempt": attempt + 1,
                    "error": mask(error, config.secret_values()),
                },
            )
            await self._sleep(self.retry.delay(attempt, retry_after))
        return error

    async def _failed(self, alert: Mapping[str, Any], message: str) -> None:
        metadata = alert.get("metadata") or {}
        log.warning(
            message,
            extra={
                "k8s_ref": {
                    "kind": "Alert",
                    "namespace": metadata.get("namespace"),
                    "name": metadata.get("name"),
                }
            },
        )
        await self._recorder.warning(alert, DISPATCH_FAILED, message)
