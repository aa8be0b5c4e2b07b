"""Prometheus metrics and the health endpoints every controller serves.

- `/metrics` on the metrics address: the prometheus-client registry in the
  text exposition format, including Flux's reconcile metrics defined here.
- `/healthz` on the health address: 200 while the process is alive and its
  event loop keeps beating (`heartbeat`); 503 once the loop has stalled.
- `/readyz` on the health address: 200 only once the operator has started
  (kopf's startup handlers done, watches running), 503 before and while
  stopping.

The HTTP servers run on their own thread and event loop. Two reasons: a
stalled controller loop must still get an answer (503) from `/healthz`
rather than a hang, and kopf cancels every task created on its loop while
it shuts down, which would tear connections down under the servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import prometheus_client
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controllers.toolkit.runtime.settings import Address

log = logging.getLogger(__name__)


def exponential_buckets_range(minimum: float, maximum: float, count: int) -> list[float]:
    """`count` buckets growing by a constant factor from `minimum` to `maximum`.

    The same bucket layout as Prometheus' Go client `ExponentialBucketsRange`,
    which Flux uses for its reconcile durations.
    """
    if count < 2 or minimum <= 0 or maximum <= minimum:
        raise ValueError("need count >= 2 and 0 < minimum < maximum")
    factor = math.pow(maximum / minimum, 1 / (count - 1))
    return [minimum * math.pow(factor, i) for i in range(count)]


OBJECT_LABELS = ("kind", "name", "namespace")
CONDITION_STATUSES = ("True", "False", "Unknown", "Deleted")

RECONCILE_DURATION = Histogram(
    "gotk_reconcile_duration_seconds",
    "The duration in seconds of a GitOps Toolkit resource reconciliation.",
    OBJECT_LABELS,
    buckets=exponential_buckets_range(10e-3, 1800, 10),
)

RECONCILE_CONDITION = Gauge(
    "gotk_reconcile_condition",
    "The current condition status of a GitOps Toolkit resource reconciliation.",
    (*OBJECT_LABELS, "type", "status"),
)


SUSPEND_STATUS = Gauge(
    "gotk_suspend_status",
    "The current suspend status of a GitOps Toolkit resource.",
    OBJECT_LABELS,
)

# headwater's own, beside Flux's: what config/monitoring's dashboard shows of drift and alerts.
DRIFT_CORRECTIONS = Counter(
    "headwater_drift_corrections_total",
    "Reconciles that found applied objects edited in the cluster and applied them again.",
    OBJECT_LABELS,
)

VERIFICATIONS = Counter(
    "headwater_apply_verifications_total",
    "Applies by how they verified the cluster: full (a dry-run of every object) or "
    "skipped (nothing changed, and the inventory watch saw no change since the last full one).",
    (*OBJECT_LABELS, "result"),
)

NOTIFICATIONS = Counter(
    "headwater_notifications_total",
    "Alert notifications handed to a Provider: sent, or failed after the retries.",
    ("namespace", "provider", "type", "result"),
)

# The conditions whose state every reconcile records.
RECORDED_CONDITIONS = ("Ready", "Reconciling", "Stalled")


def record_reconcile(
    kind: str, name: str, namespace: str, status: Mapping[str, Any], duration: float
) -> None:
    """Everything one reconcile reports: its duration and its conditions' states.

    Reconciling and Stalled are only present while True (Flux's rule), so an
    absent one reads False.
    """
    RECONCILE_DURATION.labels(kind=kind, name=name, namespace=namespace).observe(duration)
    present = {
        str(c.get("type")): str(c.get("status"))
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    }
    for type_ in RECORDED_CONDITIONS:
        default = "Unknown" if type_ == "Ready" else "False"
        record_condition(kind, name, namespace, type_, present.get(type_, default))


def record_suspended(kind: str, name: str, namespace: str, suspended: bool) -> None:
    SUSPEND_STATUS.labels(kind=kind, name=name, namespace=namespace).set(1 if suspended else 0)


def record_drift_corrected(kind: str, name: str, namespace: str) -> None:
    DRIFT_CORRECTIONS.labels(kind=kind, name=name, namespace=namespace).inc()


def record_verification(kind: str, name: str, namespace: str, *, skipped: bool) -> None:
    VERIFICATIONS.labels(
        kind=kind, name=name, namespace=namespace, result="skipped" if skipped else "full"
    ).inc()


def record_notification(namespace: str, provider: str, type_: str, *, sent: bool) -> None:
    NOTIFICATIONS.labels(
        namespace=namespace, provider=provider, type=type_, result="sent" if sent else "failed"
    ).inc()


def record_deleted(kind: str, name: str, namespace: str) -> None:
    """The object is gone: its condition series read Deleted, as in Flux."""
    for type_ in RECORDED_CONDITIONS:
        record_condition(kind, name, namespace, type_, None, deleted=True)


def record_condition(
    kind: str, name: str, namespace: str, type_: str, status: str | None, *, deleted: bool = False
) -> None:
    """Set the condition gauge as Flux does: 1 for the current status, 0 for the others.

    Pass `deleted=True` when the object is gone; its series then reads
    status="Deleted" 1 until the process restarts, as in Flux.
    """
    current = "Deleted" if deleted else (status or "Unknown")
    for candidate in CONDITION_STATUSES:
        RECONCILE_CONDITION.labels(
            kind=kind, name=name, namespace=namespace, type=type_, status=candidate
        ).set(1 if candidate == current else 0)


@dataclasses.dataclass
class HealthState:
    """What the probes report, shared between the controller loop and the server thread.

    Plain attribute writes and reads of floats and Events are atomic in
    CPython, so no further locking is needed.
    """

    # /healthz fails once the loop has not beaten for this long.
    stale_after: float = 30.0
    last_beat: float = dataclasses.field(default_factory=time.monotonic)
    started: threading.Event = dataclasses.field(default_factory=threading.Event)
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < self.stale_after

    def ready(self) -> bool:
        return self.started.is_set() and not self.stopping.is_set() and self.alive()


async def heartbeat(state: HealthState, interval: float = 1.0) -> None:
    """Beat every `interval` seconds while the loop is responsive; runs until cancelled."""
    while True:
        state.beat()
        await asyncio.sleep(interval)


def _metrics_handler(registry: CollectorRegistry) -> Handler:
    async def metrics(_: web.Request) -> web.StreamResponse:
        body = prometheus_client.generate_latest(registry)
        response = web.Response(body=body)
        # Set verbatim: aiohttp's content_type= rejects the parameters it carries.
        response.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
        return response

    return metrics


def _health_handlers(state: HealthState) -> tuple[Handler, Handler]:
    async def healthz(_: web.Request) -> web.StreamResponse:
        if state.alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="event loop unresponsive\n")

    async def readyz(_: web.Request) -> web.StreamResponse:
        if state.ready():
            return web.Response(text="ok\n")
        reason = "stopping" if state.stopping.is_set() else "not started"
        return web.Response(status=503, text=f"{reason}\n")

    return healthz, readyz


class ObservabilityServer:
    """Serves /metrics and /healthz, /readyz on a background thread.

    `start()` returns once every port is bound (raising if one is not), and
    `stop()` returns once every port is closed.
    """

    def __init__(
        self,
        *,
        metrics_addr: Address,
        health_addr: Address,
        state: HealthState,
        registry: CollectorRegistry = prometheus_client.REGISTRY,
    ) -> None:
        self.metrics_addr = metrics_addr
        self.health_addr = health_addr
        self.state = state
        self.registry = registry
        self.bound: dict[str, tuple[str, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _apps(self) -> Sequence[tuple[tuple[str, ...], Address, web.Application]]:
        healthz, readyz = _health_handlers(self.state)
        metrics = _metrics_handler(self.registry)
        health_routes = [web.get("/healthz", healthz), web.get("/readyz", readyz)]
        metrics_routes = [web.get("/metrics", metrics)]
        # One server when both share an address; port 0 means two OS-picked ports.
        if self.metrics_addr == self.health_addr and self.metrics_addr.port != 0:
            app = web.Application()
            app.add_routes([*metrics_routes, *health_routes])
            return [(("metrics", "health"), self.metrics_addr, app)]
        metrics_app, health_app = web.Application(), web.Application()
        metrics_app.add_routes(metrics_routes)
        health_app.add_routes(health_routes)
        return [
            (("metrics",), self.metrics_addr, metrics_app),
            (("health",), self.health_addr, health_app),
        ]

    async def _serve(self) -> None:
        for roles, address, app in self._apps():
            # No access log: probes every few seconds would drown the real logs.
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, host=address.bind_host, port=address.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            for role in roles:
                self.bound[role] = (str(host), int(port))

    @property
    def metrics_port(self) -> int:
        """The bound metrics port (the OS's pick when configured as 0)."""
        return self.bound["metrics"][1]

    @property
    def health_port(self) -> int:
        return self.bound["health"][1]

    async def _shutdown(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            loop.run_until_complete(self._shutdown())
            loop.close()
            self._started.set()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._thread_main, name="headwater-observability", daemon=True
        )
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise OSError(f"cannot serve metrics/health: {self._error}") from self._error
        log.info(
            "serving metrics and health",
            extra={"metrics_addr": str(self.metrics_addr), "health_addr": str(self.health_addr)},
        )

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("metrics/health server did not stop within %.0fs", timeout)
