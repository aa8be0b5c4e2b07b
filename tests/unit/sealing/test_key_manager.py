"""The key manager's loop: one log line per outage, whatever keeps failing."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from controllers.sealing import keys as sealing_keys


class FlakyManager(sealing_keys.KeyManager):
    """Fails with each of `failures` in turn, then has a key."""

    def __init__(self, failures: list[Exception]) -> None:
        super().__init__(
            cast(kubernetes.client.ApiClient, None),
            "headwater-system",
            renew_period=3600.0,
            retry=0.01,
            namespace_poll=0.01,
        )
        self.failures = failures
        self.passes = 0
        self.settled = asyncio.Event()

    async def ensure(self) -> list[sealing_keys.SealingKey]:
        self.passes += 1
        if self.failures:
            raise self.failures.pop(0)
        self.settled.set()
        key, cert = sealing_keys.generate_key(key_size=1024)
        return [sealing_keys.SealingKey("headwater-system/k", key, cert)]


async def run_until_settled(manager: FlakyManager) -> None:
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(manager.settled.wait(), timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_missing_namespace_is_logged_once_then_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = sealing_keys.NamespaceMissingError("headwater-system")
    manager = FlakyManager([missing, missing, missing, missing])
    with caplog.at_level(logging.INFO, logger=sealing_keys.__name__):
        await run_until_settled(manager)
    messages = [r.getMessage() for r in caplog.records]
    assert manager.passes == 5
    assert len([m for m in messages if "does not exist" in m]) == 1
    assert "kubectl create namespace headwater-system" in messages[0]
    assert messages[-1] == "sealing key ready in namespace headwater-system"


async def test_a_different_failure_is_a_new_line(caplog: pytest.LogCaptureFixture) -> None:
    forbidden = ApiException(status=403, reason="Forbidden")
    missing = sealing_keys.NamespaceMissingError("headwater-system")
    manager = FlakyManager([forbidden, forbidden, missing, missing])
    with caplog.at_level(logging.WARNING, logger=sealing_keys.__name__):
        await run_until_settled(manager)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "cannot ensure a sealing key in namespace headwater-system",
        "namespace headwater-system does not exist",
    ]
