"""A chart's `crds/` by the release's CRD policy: Skip, Create, or CreateReplace.

Helm itself creates a chart's CRDs on install (when absent) and never
touches them on upgrade. Flux's policies go further, so the engine applies
them here for upgrades: `Create` creates the CRDs that do not exist yet,
`CreateReplace` also replaces the ones that do. The CRD files come from
the verified chart archive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import kubernetes.client
import yaml
from kubernetes.client.rest import ApiException

from controllers.helm.spec import CrdPolicy


class CrdError(Exception):
    pass


def crd_documents(files: Sequence[str]) -> list[dict[str, Any]]:
    documents = []
    for text in files:
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise CrdError(f"a CRD file of the chart is not valid YAML: {exc}") from None
        for document in loaded:
            if not document:
                continue
            if document.get("kind") != "CustomResourceDefinition":
                raise CrdError(
                    f"the chart's crds/ holds a {document.get('kind')!r}, not a "
                    "CustomResourceDefinition"
                )
            documents.append(document)
    return documents


async def apply_crds(
    api: kubernetes.client.ApiClient, files: Sequence[str], policy: CrdPolicy
) -> list[str]:
    """Create (and for CreateReplace, replace) the CRDs; returns the names changed."""
    if policy == "Skip" or not files:
        return []
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    changed: list[str] = []

    def apply(document: dict[str, Any]) -> None:
        name = str((document.get("metadata") or {}).get("name") or "")
        try:
            extensions.create_custom_resource_definition(document)
            changed.append(name)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise CrdError(f"creating CRD {name} failed: {exc.reason}") from None
        if policy != "CreateReplace":
            return
        live = extensions.read_custom_resource_definition(name)
        body = dict(document)
        body["metadata"] = dict(document.get("metadata") or {})
        body["metadata"]["resourceVersion"] = live.metadata.resource_version
        try:
            extensions.replace_custom_resource_definition(name, body)
        except ApiException as exc:
            raise CrdError(f"replacing CRD {name} failed: {exc.reason}") from None
        changed.append(name)

    for document in crd_documents(files):
        await asyncio.to_thread(apply, document)
    return changed
