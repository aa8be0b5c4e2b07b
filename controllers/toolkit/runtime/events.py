"""Recording events about the objects a controller reconciles.

A controller builds one `EventRecorder` (with `make_recorder`) and calls
`recorder.normal(...)` / `recorder.warning(...)` with the object's body.
The recorder turns that into an `Event` and hands it to each of its sinks:
`KubernetesEventSink`, which writes core/v1 Events, and `HttpEventSink`,
which POSTs Flux's event JSON to the notification controller (the event
contract in docs/architecture.md). `make_recorder` decides the sinks, so callers do not change.

Never put secret values in a message or in metadata: they are stored in
the cluster's Events, shown by `kubectl describe`, and forwarded to chat
providers. The recorder cannot tell a secret from any other text, so this
is the caller's duty: name the Secret and the key, never the value.

Recording is best effort, as in client-go: a failure to record is logged
and never fails the reconcile that emitted it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import aiohttp
import kubernetes.client
from kubernetes.client.exceptions import ApiException

from controllers.toolkit.runtime.settings import Settings

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
# Object annotations with this prefix travel with every event about the object.
EVENT_ANNOTATION_PREFIX = "event.toolkit.fluxcd.io/"
NORMAL: EventType = "Normal"
WARNING: EventType = "Warning"

# The API server rejects longer messages from the events.k8s.io API; keep
# core/v1 Events within the same bound so both views agree.
MAX_MESSAGE_LENGTH = 1024
# Same bound as client-go's event correlator cache.
MAX_AGGREGATED_KEYS = 4096


@dataclasses.dataclass(frozen=True)
class ObjectReference:
    """The object an event is about (core/v1 ObjectReference fields)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    resource_version: str

    @property
    def group(self) -> str:
        """The API group, empty for the core group."""
        return self.api_version.rpartition("/")[0]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObjectReference:
        metadata = body.get("metadata") or {}
        return cls(
            api_version=str(body.get("apiVersion") or ""),
            kind=str(body.get("kind") or ""),
            name=str(metadata.get("name") or ""),
            namespace=str(metadata.get("namespace") or ""),
            uid=str(metadata.get("uid") or ""),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )

    def to_api(self) -> dict[str, str]:
        ref = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "resourceVersion": self.resource_version,
        }
        return {key: value for key, value in ref.items() if value}


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing that happened to an object, before any sink formats it.

    `metadata` keys are short (`revision`, `digest`, ...); sinks qualify
    them with the object's API group as Flux does
    (`source.toolkit.fluxcd.io/revision`).
    """

    involved_object: ObjectReference
    type: EventType
    reason: str
    message: str
    metadata: Mapping[str, str]
    timestamp: datetime.datetime
    reporting_controller: str
    reporting_instance: str

    def qualified_metadata(self) -> dict[str, str]:
        """Metadata keys prefixed with the object's group, unless already qualified."""
        group = self.involved_object.group
        result: dict[str, str] = {}
        for key, value in self.metadata.items():
            qualified = key if "/" in key or not group else f"{group}/{key}"
            result[qualified] = str(value)
        return result


class EventSink(Protocol):
    """Somewhere events go. `emit` must not raise for delivery failures."""

    async def emit(self, event: Event) -> None: ...


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truncate(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 3] + "..."


def _event_name(ref: ObjectReference) -> str:
    # client-go names events `<object>.<hex nanoseconds now>`; keep the total
    # within the 253-character limit for object names.
    suffix = f".{time.time_ns():x}"
    return ref.name[: 253 - len(suffix)] + suffix


@dataclasses.dataclass
class _Aggregate:
    name: str
    namespace: str
    count: int


@dataclasses.dataclass
class _KeyLock:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    users: int = 0


class KubernetesEventSink:
    """Writes core/v1 Events, folding exact repeats into one object.

    A repeat (same object, type, reason, message and metadata) bumps the
    existing Event's `count` and `lastTimestamp`, which `kubectl get events`
    and `kubectl describe` show as "x3 over 5m", instead of creating one
    object per occurrence. The cache is per process, like client-go's: after
    a restart, or once the API server has expired the Event, a new one starts.
    """

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = kubernetes.client.CoreV1Api(api_client)
        self._aggregates: collections.OrderedDict[tuple[Any, ...], _Aggregate] = (
            collections.OrderedDict()
        )
        self._locks: dict[tuple[Any, ...], _KeyLock] = {}

    @staticmethod
    def event_namespace(ref: ObjectReference) -> str:
        # Events about cluster-scoped objects live in `default`, as kubectl expects.
        return ref.namespace or "default"

    @staticmethod
    def aggregation_key(event: Event) -> tuple[Any, ...]:
        ref = event.involved_object
        return (
            event.reporting_controller,
            ref.api_version,
            ref.kind,
            ref.namespace,
            ref.name,
            ref.uid,
            event.type,
            event.reason,
            _truncate(event.message),
            tuple(sorted(event.qualified_metadata().items())),
        )

    def body(self, event: Event, name: str) -> dict[str, Any]:
        """The core/v1 Event for the first occurrence of `event`."""
        ref = event.involved_object
        annotations = event.qualified_metadata()
        metadata: dict[str, Any] = {"name": name, "namespace": self.event_namespace(ref)}
        if annotations:
            metadata["annotations"] = annotations
        stamp = _timestamp(event.timestamp)
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": metadata,
            "involvedObject": ref.to_api(),
            "type": event.type,
            "reason": event.reason,
            "message": _truncate(event.message),
            "source": {"component": event.reporting_controller},
            "reportingComponent": event.reporting_controller,
            "reportingInstance": event.reporting_instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }

    async def emit(self, event: Event) -> None:
        key = self.aggregation_key(event)
        # One writer per key: two concurrent repeats must not both create.
        # Locks are dropped when idle, so the map does not grow with every key.
        slot = self._locks.get(key)
        if slot is None:
            slot = self._locks[key] = _KeyLock()
        slot.users += 1
        try:
            async with slot.lock:
                await self._emit_locked(key, event)
        except Exception as exc:
            ref = event.involved_object
            # Best effort, as in client-go: e.g. a namespace being deleted
            # refuses new Events, which is no fault of ours. An API refusal is
            # one line; anything else keeps its traceback for the bug report.
            refused = isinstance(exc, ApiException)
            log.warning(
                "recording event failed: %s",
                f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else exc,
                exc_info=not refused,
                extra={
                    "k8s_ref": {"kind": ref.kind, "namespace": ref.namespace, "name": ref.name},
                    "reason": event.reason,
                },
            )
        finally:
            slot.users -= 1
            if slot.users == 0:
                self._locks.pop(key, None)

    async def _emit_locked(self, key: tuple[Any, ...], event: Event) -> None:
        aggregate = self._aggregates.get(key)
        if aggregate is not None:
            if await self._bump(aggregate, event):
                self._aggregates.move_to_end(key)
                return
            self._aggregates.pop(key, None)
        name = _event_name(event.involved_object)
        namespace = self.event_namespace(event.involved_object)
        await asyncio.to_thread(
            self._api.create_namespaced_event, namespace, self.body(event, name)
        )
        self._aggregates[key] = _Aggregate(name=name, namespace=namespace, count=1)
        while len(self._aggregates) > MAX_AGGREGATED_KEYS:
            self._aggregates.popitem(last=False)

    async def _bump(self, aggregate: _Aggregate, event: Event) -> bool:
        """Count one more occurrence; False when the Event is gone and must be recreated."""
        count = aggregate.count + 1
        # A JSON patch list: the client sends it as application/json-patch+json.
        patch = [
            {"op": "replace", "path": "/count", "value": count},
            {"op": "replace", "path": "/lastTimestamp", "value": _timestamp(event.timestamp)},
        ]
        try:
            await asyncio.to_thread(
                self._api.patch_namespaced_event, aggregate.name, aggregate.namespace, patch
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        aggregate.count = count
        return True


# Flux's emitter gives the notification controller this long per event.
HTTP_SINK_TIMEOUT = 5.0
# Flux's event severities, from the Kubernetes event type.
_SEVERITY: dict[str, str] = {NORMAL: "info", WARNING: "error"}


# Posts waiting for the notification controller at once; more are dropped (and logged).
HTTP_SINK_MAX_IN_FLIGHT = 256


class HttpEventSink:
    """POSTs each event as Flux's event JSON to the notification controller.

    Best effort, like Flux's emitter: one attempt bounded by `timeout`, no
    retry (the Kubernetes Event is the durable record), and a failure is
    logged without the body. Only Normal and Warning events are posted: Flux
    never forwards its Trace events, and this sink drops any other type.

    `emit` never waits for the notification controller: the POST runs as a
    task of its own, so a reconcile that records an event is not held up by
    an intake that is down or stalls (each would otherwise cost it up to
    `timeout` per event). At most `max_in_flight` posts wait at once; beyond
    that an event is dropped with a log line, so a dead intake cannot make
    memory grow. `drain` waits for the posts under way.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = HTTP_SINK_TIMEOUT,
        max_in_flight: int = HTTP_SINK_MAX_IN_FLIGHT,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.dropped = 0
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @staticmethod
    def payload(event: Event) -> dict[str, Any] | None:
        """The JSON body Flux's notification controller expects, None when not posted."""
        severity = _SEVERITY.get(event.type)
        if severity is None:
            return None
        ref = event.involved_object
        body: dict[str, Any] = {
            "involvedObject": ref.to_api(),
            "severity": severity,
            "timestamp": _timestamp(event.timestamp),
            "message": event.message,
            "reason": event.reason,
            "reportingController": event.reporting_controller,
            "reportingInstance": event.reporting_instance,
        }
        metadata = event.qualified_metadata()
        if metadata:
            body["metadata"] = metadata
        return body

    async def send(self, event: Event) -> None:
        """Post `event` and wait for the answer (bounded by `timeout`); never raises.

        For a caller that orders the posts itself (`OrderedDelivery`); `emit`
        posts without waiting.
        """
        body = self.payload(event)
        if body is not None:
            await self._post(event, body)

    async def emit(self, event: Event) -> None:
        body = self.payload(event)
        if body is None:
            return
        if len(self._in_flight) >= self.max_in_flight:
            self.dropped += 1
            log.warning(
                "posting event dropped: %d posts already wait for the notification controller",
                len(self._in_flight),
                extra={"k8s_ref": _ref_fields(event.involved_object), "reason": event.reason},
            )
            return
        task = asyncio.create_task(self._post(event, body), name="post event")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def drain(self) -> None:
        """Wait until every post under way has ended."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _post(self, event: Event, body: dict[str, Any]) -> None:
        ref = event.involved_object
        try:
            # A session per event: events are rare, and a session tied to
            # no loop cannot outlive the one it was made on.
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, json=body) as response,
            ):
                # 429 is the notification controller dropping a duplicate: not an error.
                if response.status >= 400 and response.status != 429:
                    text = (await response.content.read(512)).decode("utf-8", "replace")
                    log.warning(
                        "posting event failed: HTTP %s: %s",
                        response.status,
                        text.strip(),
                        extra={"k8s_ref": _ref_fields(ref), "reason": event.reason},
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning(
                "posting event failed: %s",
                str(exc) or type(exc).__name__,
                extra={"k8s_ref": _ref_fields(ref), "reason": event.reason},
            )
        except Exception:
            log.exception("posting event crashed", extra={"k8s_ref": _ref_fields(ref)})


def _ref_fields(ref: ObjectReference) -> dict[str, str]:
    return {"kind": ref.kind, "namespace": ref.namespace, "name": ref.name}


# As client-go's event broadcaster (maxQueuedEvents): events waiting for one sink
# at once; beyond that an event is dropped, with a log line.
MAX_QUEUED_EVENTS = 1000
# Objects whose events are delivered to one sink at the same time.
MAX_DELIVERING_OBJECTS = 16

Deliver = Callable[[Event], Awaitable[None]]


def _object_key(ref: ObjectReference) -> tuple[str, str, str, str]:
    return (ref.api_version, ref.kind, ref.namespace, ref.name)


class OrderedDelivery:
    """Hands events to a sink off the recording caller's path, in order per object.

    What client-go's broadcaster (and so Flux's recorder) does for Kubernetes
    Events and for the notification controller's webhook: `emit` only queues
    the event, so a reconcile does not wait one API round trip per event it
    records. Events about one object reach the sink in the order they were
    recorded (one is delivered once the one before it is done); different
    objects' events are delivered side by side, at most `max_objects` at once.
    At most `max_queued` events wait; beyond that an event is dropped and
    logged, so a sink that is down cannot make memory grow. `deliver` must not
    raise (a failure is logged here if it does). `drain` waits for every
    queued event.
    """

    def __init__(
        self,
        deliver: Deliver,
        *,
        name: str,
        max_queued: int = MAX_QUEUED_EVENTS,
        max_objects: int = MAX_DELIVERING_OBJECTS,
    ) -> None:
        if max_queued < 1 or max_objects < 1:
            raise ValueError("max_queued and max_objects must be at least 1")
        self.name = name
        self.max_queued = max_queued
        self.queued = 0
        self.dropped = 0
        self._deliver = deliver
        self._objects = asyncio.Semaphore(max_objects)
        self._queues: dict[tuple[str, str, str, str], collections.deque[Event]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def emit(self, event: Event) -> None:
        if self.queued >= self.max_queued:
            self.dropped += 1
            log.warning(
                "recording event dropped: %d events already wait for %s",
                self.queued,
                self.name,
                extra={"k8s_ref": _ref_fields(event.involved_object), "reason": event.reason},
            )
            return
        key = _object_key(event.involved_object)
        self.queued += 1
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(event)  # the object's delivery task is running: it takes this too
            return
        self._queues[key] = collections.deque([event])
        task = asyncio.create_task(self._drain_object(key), name=f"deliver events: {self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_object(self, key: tuple[str, str, str, str]) -> None:
        queue = self._queues[key]
        try:
            async with self._objects:
                while queue:
                    event = queue[0]
                    try:
                        await self._deliver(event)
                    except Exception:
                        log.exception(
                            "recording event failed",
                            extra={"sink": self.name, "reason": event.reason},
                        )
                    finally:
                        queue.popleft()
                        self.queued -= 1
        finally:
            self.queued -= len(queue)
            self._queues.pop(key, None)

    async def drain(self) -> None:
        """Wait until every queued event is delivered (or failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class EventRecorder:
    """Builds events for one controller and hands them to every sink."""

    def __init__(
        self,
        controller: str,
        sinks: list[EventSink],
        *,
        instance: str | None = None,
    ) -> None:
        self.controller = controller
        self.instance = (instance or socket.gethostname())[:128]
        self.sinks = sinks

    def event(
        self,
        body: Mapping[str, Any],
        type_: EventType,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        now: datetime.datetime | None = None,
    ) -> Event:
        """The Event for `body`, as it would be recorded.

        As Flux's emitter does, the object's `event.toolkit.fluxcd.io/*`
        annotations are carried in the metadata (e.g. a team or environment
        for alerts to show); the caller's metadata wins on a clash.
        """
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        carried = {
            key: str(value)
            for key, value in annotations.items()
            if key.startswith(EVENT_ANNOTATION_PREFIX)
        }
        return Event(
            involved_object=ObjectReference.from_body(body),
            type=type_,
            reason=reason,
            message=message,
            metadata={**carried, **(metadata or {})},
            timestamp=now or datetime.datetime.now(datetime.UTC),
            reporting_controller=self.controller,
            reporting_instance=self.instance,
        )

    async def record(
        self,
        body: Mapping[str, Any],
        type_: EventType,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Event:
        """Record an event about the object `body`. Never put secret values in it."""
        event = self.event(body, type_, reason, message, metadata)
        for sink in self.sinks:
            try:
                await sink.emit(event)
            except Exception:
                log.exception("event sink failed", extra={"sink": type(sink).__name__})
        return event

    async def drain(self) -> None:
        """Wait for the events sinks still deliver (those that queue: `OrderedDelivery`)."""
        for sink in self.sinks:
            drain = getattr(sink, "drain", None)
            if drain is not None:
                await drain()

    async def normal(
        self,
        body: Mapping[str, Any],
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Event:
        return await self.record(body, NORMAL, reason, message, metadata)

    async def warning(
        self,
        body: Mapping[str, Any],
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Event:
        return await self.record(body, WARNING, reason, message, metadata)


def controller_name(controller: str) -> str:
    """The reporting name of a controller package, Flux-style: `source-controller`."""
    return controller if controller.endswith("-controller") else f"{controller}-controller"


def make_recorder(
    controller: str,
    api_client: kubernetes.client.ApiClient,
    settings: Settings,
    *,
    queued: bool = False,
) -> EventRecorder:
    """The recorder a controller should use; the one place that decides the sinks.

    Every controller but the notification controller also posts its events
    to `settings.events_url`. The notification controller records only
    Kubernetes Events, as Flux's does: posting its own dispatch failures
    back to itself could loop.

    `queued`: recording only queues the event, and each sink delivers it in
    the background, in order per object (`OrderedDelivery`, as client-go's
    broadcaster does), so a reconcile waits for no event; `drain()` the
    recorder at shutdown. Otherwise the Kubernetes Event is written before
    `record` returns, and the post to the notification controller is started.
    """
    name = controller_name(controller)
    events = KubernetesEventSink(api_client)
    post = HttpEventSink(settings.events_url) if name != "notification-controller" else None
    sinks: list[EventSink]
    if queued:
        sinks = [OrderedDelivery(events.emit, name="Kubernetes Events")]
        if post is not None:
            sinks.append(OrderedDelivery(post.send, name="the notification controller"))
    else:
        sinks = [events] if post is None else [events, post]
    return EventRecorder(name, sinks)
