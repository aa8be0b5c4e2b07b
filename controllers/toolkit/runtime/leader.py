"""Leader election on a `coordination.k8s.io/v1` Lease, as Flux's controllers do it.

One Lease per controller (`source-controller-leader-election`, ... in the
controllers' namespace), so `headwater run all` and separately deployed
controllers contend for the same Leases and never both reconcile one kind.
Only the holder reconciles: the queues ask `Leadership.leading` before
they run anything, and requeue every cached object when leadership is won.

Timing follows client-go's elector, on which Flux's flags are defined:

- a candidate takes a Lease that has no holder, or whose record it has seen
  unchanged for the record's `leaseDurationSeconds` (measured on the local
  monotonic clock from when the record was last seen to change, so clock
  skew between replicas does not matter);
- the leader renews every retry period; when it could not renew for the
  renew deadline it stops leading (and stops reconciling) at once, which is
  before any candidate may take over, since lease duration > renew deadline;
- on a clean shutdown the leader empties `holderIdentity`, so a standby
  takes over on its next try instead of after the lease duration.

The decisions are pure functions of a record and a clock (`decide`,
`renew_overdue`), so their timing is unit-tested with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import kubernetes.client
from kubernetes.client.rest import ApiException

from controllers.toolkit.runtime.settings import Settings

log = logging.getLogger(__name__)

# A released Lease keeps a short duration, as client-go writes it.
RELEASED_LEASE_SECONDS = 1


@dataclasses.dataclass(frozen=True)
class LeaseTiming:
    """Flux's --leader-election-lease-duration, -renew-deadline and -retry-period, in seconds."""

    lease_duration: float = 35.0
    renew_deadline: float = 30.0
    retry_period: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> LeaseTiming:
        return cls(
            lease_duration=settings.leader_election_lease_duration,
            renew_deadline=settings.leader_election_renew_deadline,
            retry_period=settings.leader_election_retry_period,
        )


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease's spec that election reads and writes."""

    holder: str  # "" when nobody holds it (released)
    lease_duration: float
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None  # for optimistic concurrency; not part of the record

    def same_record(self, other: LeaseRecord | None) -> bool:
        """Whether `other` is this record, whatever resourceVersion it was read at."""
        if other is None:
            return False
        return dataclasses.replace(self, resource_version=None) == dataclasses.replace(
            other, resource_version=None
        )


class Decision(enum.Enum):
    CREATE = "create"  # no Lease yet: create it with us as holder
    RENEW = "renew"  # we hold it: write a new renewTime
    TAKE = "take"  # nobody holds it, or the holder let it expire: become the holder
    WAIT = "wait"  # someone else holds a live Lease


def decide(
    record: LeaseRecord | None, identity: str, observed_at: float | None, now: float
) -> Decision:
    """What a replica named `identity` should do with `record`, seen unchanged since `observed_at`.

    Expiry is judged on the local clock from when this replica last saw the
    record change, never from the record's renewTime, which another
    machine's clock wrote.
    """
    if record is None:
        return Decision.CREATE
    if record.holder == identity:
        return Decision.RENEW
    if not record.holder:
        return Decision.TAKE
    if observed_at is not None and now >= observed_at + record.lease_duration:
        return Decision.TAKE
    return Decision.WAIT


def renew_overdue(last_renewed: float | None, now: float, timing: LeaseTiming) -> bool:
    """A leader that has not renewed for the renew deadline must stop leading."""
    return last_renewed is None or now - last_renewed >= timing.renew_deadline


def lease_name(controller: str, watch_label_selector: str = "") -> str:
    """`<controller>-controller-leader-election`, plus a selector hash for shards.

    Shards with different `--watch-label-selector`s reconcile different
    objects, so like Flux they must not contend for one Lease.
    """
    base = f"{controller}-controller-leader-election"
    selector = watch_label_selector.strip()
    if not selector:
        return base
    return f"{base}-{hashlib.sha256(selector.encode()).hexdigest()[:8]}"


def new_identity() -> str:
    """Hostname (the pod name in a cluster) plus a random part, as controller-runtime does."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaseConflict(Exception):
    """Someone else wrote the Lease first (HTTP 409)."""


class LeaseStore(Protocol):
    """Blocking reads and writes of one Lease; the elector calls them on a worker thread."""

    def get(self, namespace: str, name: str) -> LeaseRecord | None: ...

    def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord: ...

    def update(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord: ...


class KubeLeaseStore:
    """Leases through the Kubernetes API (coordination.k8s.io/v1)."""

    def __init__(self, api: kubernetes.client.ApiClient, request_timeout: float) -> None:
        self._leases = kubernetes.client.CoordinationV1Api(api)
        self._timeout = request_timeout

    def get(self, namespace: str, name: str) -> LeaseRecord | None:
        try:
            lease = self._leases.read_namespaced_lease(
                name, namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _record_of(lease)

    def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": _spec_of(record)}
        try:
            lease = self._leases.create_namespaced_lease(
                namespace, body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(name) from None
            raise
        return _record_of(lease)

    def update(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        body = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": record.resource_version,
            },
            "spec": _spec_of(record),
        }
        try:
            lease = self._leases.replace_namespaced_lease(
                name, namespace, body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(name) from None
            raise
        return _record_of(lease)


def _micro_time(value: datetime | None) -> str | None:
    # MicroTime: RFC 3339 with microseconds, in UTC.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def _spec_of(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": max(1, round(record.lease_duration)),
        "acquireTime": _micro_time(record.acquire_time),
        "renewTime": _micro_time(record.renew_time),
        "leaseTransitions": record.transitions,
    }


def _record_of(lease: Any) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        holder=(spec.holder_identity if spec else None) or "",
        lease_duration=float((spec.lease_duration_seconds if spec else None) or 0),
        acquire_time=spec.acquire_time if spec else None,
        renew_time=spec.renew_time if spec else None,
        transitions=int((spec.lease_transitions if spec else None) or 0),
        resource_version=lease.metadata.resource_version,
    )


LeadershipListener = Callable[[bool], None]


class Leadership:
    """Whether this process leads one controller now; queues and background work ask it."""

    def __init__(self, *, leading: bool = False, name: str = "") -> None:
        self.name = name
        self._leading = leading
        self._listeners: list[LeadershipListener] = []
        self._waiters: list[tuple[bool, asyncio.Future[None]]] = []

    @classmethod
    def always(cls) -> Leadership:
        """Leadership of a process without election: it leads from the start and never stops."""
        return cls(leading=True)

    @property
    def leading(self) -> bool:
        return self._leading

    def subscribe(self, listener: LeadershipListener) -> None:
        """Call `listener(leading)` on the event loop each time leadership changes."""
        self._listeners.append(listener)

    def set(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        for listener in list(self._listeners):
            listener(leading)
        waiting, self._waiters = self._waiters, []
        for wanted, future in waiting:
            if wanted == leading and not future.done():
                future.set_result(None)
            elif not future.done():
                self._waiters.append((wanted, future))

    async def wait_for(self, leading: bool) -> None:
        """Return once `leading` is the state (at once if it is already)."""
        if self._leading == leading:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((leading, future))
        await future


async def while_leading(
    leadership: Leadership, work: Callable[[], Awaitable[None]], name: str
) -> None:
    """Run `work` whenever `leadership` leads; cancel it when leadership is lost."""
    while True:
        await leadership.wait_for(True)
        task = asyncio.create_task(_awaitable(work), name=name)
        try:
            await leadership.wait_for(False)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _awaitable(work: Callable[[], Awaitable[None]]) -> None:
    await work()


class LeaderElector:
    """Acquires, renews and releases one Lease and reports it on a `Leadership`."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        leadership: Leadership,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.leadership = leadership
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._observed: LeaseRecord | None = None
        self._observed_at: float | None = None
        self._last_renewed: float | None = None
        self._reported_holder: str | None = None
        self._pending: asyncio.Future[bool] | None = None

    @property
    def _where(self) -> dict[str, str]:
        return {"lease": f"{self.namespace}/{self.name}", "identity": self.identity}

    async def run(self) -> None:
        """Try every retry period, forever (until cancelled)."""
        log.info("leader election: candidate", extra=self._where)
        while True:
            await self.step()
            await self._sleep(self.next_try_in())

    def next_try_in(self) -> float:
        """The retry period, cut short so a leader checks its renew deadline on time."""
        wait = self.timing.retry_period
        if self.leadership.leading and self._last_renewed is not None:
            left = self._last_renewed + self.timing.renew_deadline - self._clock()
            wait = min(wait, max(left, 0.0))
        return wait

    async def step(self) -> None:
        """One try: acquire or renew, and step down when renewing is overdue."""
        started = self._clock()
        held = await self._try_acquire_or_renew()
        if held:
            # From when the try started: a candidate may have seen the write as
            # early as that, and its lease-duration count starts there.
            self._last_renewed = started
            if not self.leadership.leading:
                log.info("leader election: became leader", extra=self._where)
                self.leadership.set(True)
            return
        if not self.leadership.leading:
            return
        if self._held_by_other():
            self._step_down("lost leadership: another replica holds the Lease")
        elif renew_overdue(self._last_renewed, self._clock(), self.timing):
            self._step_down("lost leadership: could not renew the Lease within the renew deadline")

    def _held_by_other(self) -> bool:
        observed = self._observed
        return observed is not None and observed.holder not in ("", self.identity)

    def _step_down(self, why: str) -> None:
        log.warning("leader election: %s", why, extra=self._where)
        self._last_renewed = None
        self.leadership.set(False)

    async def _try_acquire_or_renew(self) -> bool:
        # One API call at a time: a call that outlived its budget keeps its
        # thread, and the next try waits for it rather than racing it.
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._attempt))
        budget: float | None = None
        if self.leadership.leading and self._last_renewed is not None:
            # Renewing must not hang past the deadline: stop waiting for the API then.
            left = self._last_renewed + self.timing.renew_deadline - self._clock()
            budget = max(0.1, left)
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending), budget)
        except (TimeoutError, LeaseConflict):
            return False
        except Exception as exc:
            # An API outage or a missing namespace: keep trying; never crash the process.
            log.warning("leader election: cannot reach the Lease: %s", exc, extra=self._where)
            return False

    def _observe(self, record: LeaseRecord | None) -> None:
        if record is None or not record.same_record(self._observed):
            self._observed_at = self._clock()
        self._observed = record
        holder = record.holder if record else ""
        if holder != self._reported_holder and holder and holder != self.identity:
            log.info("leader election: the Lease is held by %s", holder, extra=self._where)
        self._reported_holder = holder

    def _attempt(self) -> bool:
        """Blocking: read the Lease and write it if this replica should hold it."""
        record = self.store.get(self.namespace, self.name)
        self._observe(record)
        decision = decide(record, self.identity, self._observed_at, self._clock())
        if decision is Decision.WAIT:
            return False
        now = self._wall_clock()
        duration = self.timing.lease_duration
        if decision is Decision.CREATE:
            mine = LeaseRecord(self.identity, duration, now, now, 0)
            self._observe(self.store.create(self.namespace, self.name, mine))
            return True
        assert record is not None
        if decision is Decision.RENEW:
            mine = dataclasses.replace(record, lease_duration=duration, renew_time=now)
        else:
            mine = dataclasses.replace(
                record,
                holder=self.identity,
                lease_duration=duration,
                acquire_time=now,
                renew_time=now,
                transitions=record.transitions + 1,
            )
        self._observe(self.store.update(self.namespace, self.name, mine))
        return True

    async def release(self) -> None:
        """Give the Lease up (clean shutdown), so a standby need not wait for it to expire."""
        if not self.leadership.leading:
            return
        # Stop leading first: nothing may reconcile once the Lease is free.
        self.leadership.set(False)
        if self._pending is not None and not self._pending.done():
            # A renewal still in flight would race the release's write.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._pending), self.timing.retry_period)
        try:
            await asyncio.wait_for(asyncio.to_thread(self._release), self.timing.renew_deadline)
            log.info("leader election: released the Lease", extra=self._where)
        except Exception as exc:
            log.warning("leader election: could not release the Lease: %s", exc, extra=self._where)

    def _release(self) -> None:
        record = self.store.get(self.namespace, self.name)
        if record is None or record.holder != self.identity:
            return
        now = self._wall_clock()
        released = dataclasses.replace(
            record, holder="", lease_duration=RELEASED_LEASE_SECONDS, renew_time=now
        )
        self.store.update(self.namespace, self.name, released)


def election_enabled(settings: Settings, in_cluster: bool) -> bool:
    """On in a cluster and off out of one, unless `--enable-leader-election` says otherwise."""
    if settings.enable_leader_election is None:
        return in_cluster
    return settings.enable_leader_election
