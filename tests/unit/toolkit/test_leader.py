"""Lease timing: who leads when, measured on a fake clock against an in-memory Lease."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from controllers.toolkit.runtime.leader import (
    Decision,
    LeaderElector,
    Leadership,
    LeaseConflict,
    LeaseRecord,
    LeaseTiming,
    decide,
    election_enabled,
    lease_name,
    renew_overdue,
    while_leading,
)
from controllers.toolkit.runtime.settings import Settings

TIMING = LeaseTiming(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    """Monotonic seconds and a wall clock that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now)


class MemoryLeases:
    """One Lease with the API server's optimistic concurrency; `down` makes it unreachable."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False
        self.writes: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("connection refused")

    def get(self, namespace: str, name: str) -> LeaseRecord | None:
        self._check()
        return self.record

    def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is not None:
            raise LeaseConflict(name)
        return self._store(record)

    def update(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is None or record.resource_version != self.record.resource_version:
            raise LeaseConflict(name)
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = dataclasses.replace(record, resource_version=str(self.version))
        self.writes.append(record.holder)
        return self.record


def _elector(store: MemoryLeases, clock: Clock, identity: str) -> LeaderElector:
    return LeaderElector(
        store,
        namespace="headwater-system",
        name="source-controller-leader-election",
        identity=identity,
        timing=TIMING,
        leadership=Leadership(),
        clock=clock,
        wall_clock=clock.wall,
    )


async def _tick(clock: Clock, seconds: float, *electors: LeaderElector) -> None:
    """Let `seconds` pass in retry-period steps, each elector trying once per step."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + TIMING.retry_period)
        for elector in electors:
            await elector.step()


def test_decisions() -> None:
    live = LeaseRecord("b", 15.0)
    assert decide(None, "a", None, 0.0) is Decision.CREATE
    assert decide(LeaseRecord("a", 15.0), "a", 0.0, 100.0) is Decision.RENEW
    assert decide(LeaseRecord("", 1.0), "a", 0.0, 0.0) is Decision.TAKE
    assert decide(live, "a", 100.0, 114.9) is Decision.WAIT
    assert decide(live, "a", 100.0, 115.0) is Decision.TAKE
    assert renew_overdue(100.0, 109.9, TIMING) is False
    assert renew_overdue(100.0, 110.0, TIMING) is True


def test_expiry_uses_the_local_clock_not_the_renew_time() -> None:
    # The holder's clock runs an hour behind: its renewTime looks long expired,
    # but the record is still changing, so it is live.
    skewed = LeaseRecord("b", 15.0, renew_time=datetime(2000, 1, 1, tzinfo=UTC))
    assert decide(skewed, "a", observed_at=100.0, now=101.0) is Decision.WAIT


def test_lease_names_follow_flux_and_shards_get_their_own() -> None:
    assert lease_name("source") == "source-controller-leader-election"
    shard = lease_name("kustomize", "sharding.fluxcd.io/key in (shard1)")
    other = lease_name("kustomize", "sharding.fluxcd.io/key in (shard2)")
    assert shard.startswith("kustomize-controller-leader-election-")
    assert shard != other
    assert len(shard) <= 63


def test_election_is_on_in_a_cluster_and_off_outside_unless_set() -> None:
    assert election_enabled(Settings(), in_cluster=True) is True
    assert election_enabled(Settings(), in_cluster=False) is False
    assert election_enabled(Settings(enable_leader_election=True), in_cluster=False) is True
    assert election_enabled(Settings(enable_leader_election=False), in_cluster=True) is False


async def test_one_leader_and_a_standby_takes_over_after_the_lease_duration() -> None:
    clock, store = Clock(), MemoryLeases()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    await a.step()
    await b.step()
    assert a.leadership.leading and not b.leadership.leading
    await _tick(clock, 60, a, b)
    assert a.leadership.leading and not b.leadership.leading
    assert store.record is not None and store.record.holder == "a"

    # a dies (kill -9): it no longer renews. b waits out the lease duration,
    # counted from when it last saw the record change, and not much longer.
    died = clock.now
    while not b.leadership.leading:
        await _tick(clock, TIMING.retry_period, b)
    assert TIMING.lease_duration <= clock.now - died <= TIMING.lease_duration + TIMING.retry_period
    assert store.record is not None and store.record.holder == "b"
    assert store.record.transitions == 1


async def test_a_leader_that_cannot_renew_steps_down_before_anyone_may_take_over() -> None:
    clock, store = Clock(), MemoryLeases()
    a = _elector(store, clock, "a")
    await a.step()
    renewed = clock.now
    store.down = True
    stepped_down_at = None
    while stepped_down_at is None:
        clock.now += a.next_try_in()
        await a.step()
        if not a.leadership.leading:
            stepped_down_at = clock.now
    # It gives up at the renew deadline, which is before the lease expires.
    assert stepped_down_at - renewed == pytest.approx(TIMING.renew_deadline)
    assert stepped_down_at - renewed < TIMING.lease_duration
    # Once the API answers again, it leads again (nobody else took the Lease).
    store.down = False
    await a.step()
    assert a.leadership.leading


async def test_a_leader_whose_lease_was_taken_steps_down_at_once() -> None:
    clock, store = Clock(), MemoryLeases()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    await a.step()
    # b takes the Lease behind a's back (e.g. a was paused past the lease duration).
    assert store.record is not None
    store._store(dataclasses.replace(store.record, holder="b"))
    clock.now += TIMING.retry_period
    await a.step()
    assert not a.leadership.leading
    await b.step()
    assert b.leadership.leading


async def test_release_lets_the_standby_take_over_on_its_next_try() -> None:
    clock, store = Clock(), MemoryLeases()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    await a.step()
    await b.step()
    await a.release()
    assert not a.leadership.leading
    assert store.record is not None and store.record.holder == ""
    clock.now += TIMING.retry_period
    await b.step()
    assert b.leadership.leading


async def test_a_standby_never_takes_a_lease_that_keeps_being_renewed() -> None:
    clock, store = Clock(), MemoryLeases()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    await a.step()
    # b joins late and sees only renewals: it must wait, however long that lasts.
    await _tick(clock, 10 * TIMING.lease_duration, a, b)
    assert a.leadership.leading and not b.leadership.leading
    assert set(store.writes) == {"a"}


async def test_work_runs_only_while_leading() -> None:
    leadership = Leadership()
    runs: list[str] = []

    async def work() -> None:
        runs.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            runs.append("stopped")

    task = asyncio.create_task(while_leading(leadership, work, "work"))
    await asyncio.sleep(0)
    assert runs == []
    leadership.set(True)
    await asyncio.sleep(0.01)
    assert runs == ["started"]
    leadership.set(False)
    await asyncio.sleep(0.01)
    assert runs == ["started", "stopped"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
