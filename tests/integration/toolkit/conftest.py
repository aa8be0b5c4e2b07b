"""Fixtures for the apply engine's tests: a ResourceClient on the session's cluster."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.apply.ssa import ApplyOptions, owner_labels
from tests.support.cluster import TestCluster

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


@contextlib.contextmanager
def limited_client(
    cluster: TestCluster, namespace: str, account: str, verbs: str, resource: str
) -> Iterator[ResourceClient]:
    """A ResourceClient acting as a new ServiceAccount that may only `verbs` on `resource`."""
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create", "role", account, "-n", namespace, f"--verb={verbs}", f"--resource={resource}"
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        account,
        "-n",
        namespace,
        f"--role={account}",
        f"--serviceaccount={namespace}:{account}",
    )
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{namespace}:{account}")
    limited = ResourceClient(api)
    try:
        yield limited
    finally:
        limited.close()
        api.close()
