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


def configmap(name: str, namespace: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "data": data,
    }


def deployment(
    name: str, namespace: str, *, replicas: int = 1, image: str = "nginx:1", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"containerPort": 80}]}
                    ],
                    **spec.pop("pod", {}),
                },
            },
            **spec,
        },
    }


def service(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80}]},
    }


def secret(name: str, namespace: str, string_data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": string_data,
    }
