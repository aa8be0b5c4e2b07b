"""What helm's own release storage says, read from its Secrets' labels alone.

Helm keeps each revision in a Secret `sh.helm.release.v1.<name>.v<N>` labelled
`owner=helm, name=<release>, version=<N>, status=<status>`. Reading those
labels (a metadata-only list: no release bodies cross the wire, nothing is
decoded or written) says whether the release exists, which revision is the
latest and whether it is deployed or stuck `pending-*`, without starting a
helm process: that is how an unchanged release costs no helm call.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import kubernetes.client

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


@dataclass(frozen=True)
class StoredRevision:
    version: int
    status: str


def latest(revisions: list[StoredRevision]) -> StoredRevision | None:
    return max(revisions, key=lambda r: r.version) if revisions else None


async def stored_revisions(
    api: kubernetes.client.ApiClient, namespace: str, release: str
) -> list[StoredRevision]:
    """The release's revisions as helm's storage labels them, oldest first."""

    def fetch() -> list[StoredRevision]:
        response = api.call_api(
            f"/api/v1/namespaces/{namespace}/secrets",
            "GET",
            query_params=[("labelSelector", f"owner=helm,name={release}")],
            header_params={"Accept": _METADATA_ONLY},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        body = json.loads(response.data)
        found = []
        for item in body.get("items") or []:
            labels = (item.get("metadata") or {}).get("labels") or {}
            try:
                version = int(labels.get("version", ""))
            except ValueError:
                continue
            found.append(StoredRevision(version, str(labels.get("status") or "")))
        return sorted(found, key=lambda r: r.version)

    return await asyncio.to_thread(fetch)
