"""Fixtures for the apply engine's tests: a ResourceClient on the session's cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.apply.ssa import ApplyOptions, owner_labels

FIELD_MANAGER = "headwater-kustomize"
GROUP = "kustomize.toolkit.fluxcd.io"


@pytest.fixture
async def resources(api_client: client.ApiClient) -> AsyncIterator[ResourceClient]:
    """A fresh client (and request counter) per test, on the session's connection pool."""
    rc = ResourceClient(api_client, concurrency=8, request_timeout=30)
    try:
        yield rc
    finally:
        rc.close()


def options(name: str = "app", namespace: str = "flux-system", **extra: Any) -> ApplyOptions:
    return ApplyOptions(
        field_manager=FIELD_MANAGER,
        owner_group=GROUP,
        owner_labels=owner_labels(GROUP, name, namespace),
        **extra,
    )
