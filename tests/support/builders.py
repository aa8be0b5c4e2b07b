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

import yaml


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


def oci_repository(
    namespace: str, name: str, url: str, *, metadata: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """An OCIRepository of `url` (``oci://...``; interval 10m unless spec says)."""
    obj = _object("source.toolkit.fluxcd.io/v1", "OCIRepository", namespace, name, metadata)
    obj["spec"] = {"interval": "10m", "url": url, **spec}
    return obj


def helm_repository(
    namespace: str, name: str, url: str, *, metadata: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A HelmRepository of `url` (interval 10m unless spec says)."""
    obj = _object("source.toolkit.fluxcd.io/v1", "HelmRepository", namespace, name, metadata)
    obj["spec"] = {"interval": "10m", "url": url, **spec}
    return obj


def helm_chart(
    namespace: str, name: str, chart: str, *, metadata: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A HelmChart of `chart` (spec names its sourceRef; interval 10m unless spec says)."""
    obj = _object("source.toolkit.fluxcd.io/v1", "HelmChart", namespace, name, metadata)
    obj["spec"] = {"interval": "10m", "chart": chart, **spec}
    return obj


def helm_release(
    namespace: str | None, name: str, *, metadata: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A HelmRelease; spec names its chart (`chart=` template or `chartRef=`; interval 10m
    unless spec says)."""
    obj = _object("helm.toolkit.fluxcd.io/v2", "HelmRelease", namespace, name, metadata)
    obj["spec"] = {"interval": "10m", **spec}
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


def image_repository(
    namespace: str, name: str, image: str, *, metadata: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """An ImageRepository scanning `image` (interval 10m unless spec says)."""
    obj = _object("image.toolkit.fluxcd.io/v1", "ImageRepository", namespace, name, metadata)
    obj["spec"] = {"interval": "10m", "image": image, **spec}
    return obj


def image_policy(
    namespace: str,
    name: str,
    repository: str,
    policy: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An ImagePolicy choosing from ImageRepository `repository` by `policy` ({"semver": ...})."""
    obj = _object("image.toolkit.fluxcd.io/v1", "ImagePolicy", namespace, name, metadata)
    obj["spec"] = {"imageRepositoryRef": {"name": repository}, "policy": dict(policy), **spec}
    return obj


def image_update_automation(
    namespace: str,
    name: str,
    source: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An ImageUpdateAutomation writing to GitRepository `source` (interval 10m, author set)."""
    obj = _object("image.toolkit.fluxcd.io/v1", "ImageUpdateAutomation", namespace, name, metadata)
    obj["spec"] = {
        "interval": "10m",
        "sourceRef": {"kind": "GitRepository", "name": source},
        "git": {"commit": {"author": {"name": "headwater", "email": "bot@headwater.invalid"}}},
        **spec,
    }
    return obj


def secret(
    namespace: str | None,
    name: str,
    data: Mapping[str, str | bytes],
    *,
    metadata: Mapping[str, Any] | None = None,
    string: bool = False,
) -> dict[str, Any]:
    """A Secret holding `data`: encoded here, or with `string=True` as `stringData`
    (write-only; the API server encodes it)."""
    obj = _object("v1", "Secret", namespace, name, metadata)
    if string:
        obj["stringData"] = {
            key: value if isinstance(value, str) else value.decode() for key, value in data.items()
        }
        return obj
    obj["data"] = {
        key: base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()
        for key, value in data.items()
    }
    return obj


# -- workloads and plain objects, for git files (namespace None) and direct applies --------

# The web app most kustomize tests keep in git: `deployment(None, "web", **WEB_CONTAINER)`.
WEB_CONTAINER: dict[str, Any] = {"image": "example/web:1", "container": "web"}


def configmap(
    namespace: str | None,
    name: str,
    data: Mapping[str, str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    obj = _object("v1", "ConfigMap", namespace, name, metadata)
    obj["data"] = dict(data)
    return obj


def deployment(
    namespace: str | None,
    name: str,
    *,
    replicas: Any = 1,
    image: str = "example/app:1",
    container: str = "app",
    ports: tuple[int, ...] = (),
    pod: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Deployment of one container selecting `app: name`.

    `replicas=None` leaves the field out; `pod` adds pod spec fields (e.g. nodeSelector).
    """
    main: dict[str, Any] = {"name": container, "image": image}
    if ports:
        main["ports"] = [{"containerPort": port} for port in ports]
    obj = _object("apps/v1", "Deployment", namespace, name, metadata)
    obj["spec"] = {
        **({} if replicas is None else {"replicas": replicas}),
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [main], **(pod or {})},
        },
        **spec,
    }
    return obj


def service(
    namespace: str | None,
    name: str,
    *,
    port: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Service selecting `app: name` on `port` (default: port 80)."""
    obj = _object("v1", "Service", namespace, name, metadata)
    obj["spec"] = {"selector": {"app": name}, "ports": [dict(port or {"port": 80})]}
    return obj


def job(
    namespace: str | None,
    name: str,
    image: str,
    *,
    container: str = "c",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Job running `image` once (restartPolicy Never)."""
    obj = _object("batch/v1", "Job", namespace, name, metadata)
    obj["spec"] = {
        "template": {
            "spec": {"restartPolicy": "Never", "containers": [{"name": container, "image": image}]}
        }
    }
    return obj


def custom_resource_definition(
    group: str,
    kind: str,
    *,
    spec_schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A namespaced v1 CRD of `kind` in `group` with a status subresource.

    `spec` is free-form unless `spec_schema` says; `status` is always free-form.
    """
    plural = kind.lower() + "s"
    names = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()}
    free: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    obj = _object(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", None, f"{plural}.{group}", None
    )
    obj["spec"] = {
        "group": group,
        "names": names,
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": dict(spec_schema or free), "status": free},
                    }
                },
            }
        ],
    }
    return obj


def configmap_file(name: str, annotations: dict[str, str] | None = None, **data: str) -> str:
    """A ConfigMap as the YAML text of a file in git (no namespace)."""
    metadata = {"annotations": annotations} if annotations else None
    return yaml.safe_dump(configmap(None, name, data, metadata=metadata))


def configmaps_only(namespace: str, account: str) -> list[dict[str, Any]]:
    """A ServiceAccount allowed to manage ConfigMaps in `namespace`, and nothing else."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": account,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]
