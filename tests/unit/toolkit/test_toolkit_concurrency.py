from __future__ import annotations

import asyncio

import pytest

from controllers.toolkit.runtime.concurrency import ReconcileSlots


async def settle() -> None:
    """Let every runnable task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_at_most_limit_reconciles_run_at_once() -> None:
    slots = ReconcileSlots(2)
    gate = asyncio.Event()
    entered: list[str] = []

    async def reconcile(name: str) -> None:
        async with slots.slot(("Kustomization", "ns", name)):
            entered.append(name)
            await gate.wait()

    tasks = [asyncio.create_task(reconcile(f"o{i}")) for i in range(5)]
    await settle()
    assert slots.running == 2
    assert len(entered) == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(entered) == [f"o{i}" for i in range(5)]
    assert slots.running == 0


async def test_one_reconcile_per_object_and_it_holds_no_shared_slot_while_waiting() -> None:
    slots = ReconcileSlots(2)
    first_gate = asyncio.Event()
    entered: list[str] = []

    async def reconcile(key: str, label: str, gate: asyncio.Event | None) -> None:
        async with slots.slot(key):
            entered.append(label)
            if gate is not None:
                await gate.wait()

    first = asyncio.create_task(reconcile("same", "first", first_gate))
    await settle()
    second = asyncio.create_task(reconcile("same", "second", None))
    other = asyncio.create_task(reconcile("other", "other", None))
    await settle()
    # The repeat waits; an unrelated object still gets the free slot.
    assert entered == ["first", "other"]
    first_gate.set()
    await asyncio.gather(first, second, other)
    assert entered == ["first", "other", "second"]


async def test_slot_is_released_when_the_reconcile_raises() -> None:
    slots = ReconcileSlots(1)
    with pytest.raises(RuntimeError):
        async with slots.slot("a"):
            raise RuntimeError("failed reconcile")
    async with slots.slot("a"):
        assert slots.running == 1


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReconcileSlots(0)
