"""Manifests of the objects tests create, one builder per kind.

Every builder takes `(namespace, name, <what the kind cannot do without>, ...)` first;
spec fields follow as keyword arguments, so a test names what it sets the way the YAML
would (`interval="1h"`, `targetNamespace=...`). Extra metadata (labels, annotations) goes
in `metadata=`. The result is a plain dict: `apply()` it, or dump it into a git file.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any


def _object(
    api_version: str,
    kind: str,
    namespace: str | None,
    name: str,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update(metadata or {})
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


def git_repository(
    namespace: str, name: str, url: str, *, metadata: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A GitRepository of `url` (interval 10m unless spec says)."""
    obj = _object("source.toolkit.fluxcd.io/v1", "GitRepository", namespace, name, metadata)
    obj["spec"] = {"interval": "10m", "url": url, **spec}
    return obj


def kustomization(
    namespace: str,
    name: str,
    source: str,
    path: str = "./",
    *,
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pruning Kustomization of GitRepository `source` (same namespace unless spec says)."""
    obj = _object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", namespace, name, metadata)
    obj["spec"] = {
        "interval": "10m",
        "sourceRef": {"kind": "GitRepository", "name": source},
        "path": path,
        "prune": True,
        **spec,
    }
    return obj


def provider(
    namespace: str, name: str, *, metadata: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    obj = _object("notification.toolkit.fluxcd.io/v1beta3", "Provider", namespace, name, metadata)
    obj["spec"] = spec
    return obj


def alert(
    namespace: str,
    name: str,
    provider_name: str,
    *sources: dict[str, Any],
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An Alert to Provider `provider_name` of `sources` (default: every GitRepository)."""
    obj = _object("notification.toolkit.fluxcd.io/v1beta3", "Alert", namespace, name, metadata)
    obj["spec"] = {
        "providerRef": {"name": provider_name},
        "eventSources": list(sources) or [{"kind": "GitRepository", "name": "*"}],
        **spec,
    }
    return obj


def receiver(
    namespace: str,
    name: str,
    type: str,
    secret_name: str,
    *resources: dict[str, Any],
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Receiver of `type` whose token is in Secret `secret_name` (default: GitRepository app)."""
    obj = _object("notification.toolkit.fluxcd.io/v1", "Receiver", namespace, name, metadata)
    obj["spec"] = {
        "type": type,
        "secretRef": {"name": secret_name},
        "resources": list(resources) or [{"kind": "GitRepository", "name": "app"}],
        **spec,
    }
    return obj


def secret(
    namespace: str | None,
    name: str,
    data: Mapping[str, str | bytes],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Secret holding `data` (encoded here, as the API wants it)."""
    obj = _object("v1", "Secret", namespace, name, metadata)
    obj["data"] = {
        key: base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()
        for key, value in data.items()
    }
    return obj
