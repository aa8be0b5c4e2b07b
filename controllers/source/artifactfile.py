"""Single-file artifacts (a Helm index, a chart archive) into the shared Storage.

The same guarantees as GitRepository tarballs: written under the object's lock to a
temporary file and renamed into place, digest (sha256 of the file's bytes) taken
while writing, the storage size limit applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from controllers.source.storage import ObjectKey, Storage, StoredArtifact
from controllers.toolkit.git.errors import ArtifactTooLargeError
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.events import WARNING
from controllers.toolkit.runtime.frame import ReconcileRun

ARTIFACT_IN_STORAGE = "ArtifactInStorage"
ARTIFACT_VERIFICATION_FAILED = "ArtifactVerificationFailed"

_CHUNK = 1 << 20


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def store_file(
    storage: Storage, key: ObjectKey, filename: str, source: Path, revision: str
) -> StoredArtifact:
    """Copy `source` into storage as ``<key>/<filename>``."""

    def produce(out: BinaryIO) -> tuple[str, int]:
        sha = hashlib.sha256()
        size = 0
        limit = storage.max_artifact_size
        with open(source, "rb") as src:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise ArtifactTooLargeError(size, limit)
                sha.update(chunk)
                out.write(chunk)
        return f"sha256:{sha.hexdigest()}", size

    with storage.lock(key):
        rel, (digest, size) = storage.write(key, filename, produce)
    return StoredArtifact(
        path=rel,
        url=storage.url_for(rel),
        revision=revision,
        digest=digest,
        size=size,
        last_update_time=_now(),
    )


def store_bytes(
    storage: Storage, key: ObjectKey, filename: str, data: bytes, revision: str
) -> StoredArtifact:
    """Write `data` into storage as ``<key>/<filename>``."""
    limit = storage.max_artifact_size
    if limit is not None and len(data) > limit:
        raise ArtifactTooLargeError(len(data), limit)

    def produce(out: BinaryIO) -> None:
        out.write(data)

    with storage.lock(key):
        rel, _ = storage.write(key, filename, produce)
    return StoredArtifact(
        path=rel,
        url=storage.url_for(rel),
        revision=revision,
        digest=f"sha256:{hashlib.sha256(data).hexdigest()}",
        size=len(data),
        last_update_time=_now(),
    )


def verified_artifact(
    storage: Storage, run: ReconcileRun, key: ObjectKey, *, again: str
) -> Mapping[str, Any] | None:
    """The advertised artifact if storage still holds it intact, else None; GC the rest.

    A missing or altered file is removed, its status dropped and a Warning queued
    (`again` says what happens next, e.g. "fetching it again"). Blocking: call it
    from a worker thread.
    """
    current = run.status.get("artifact")
    name: str | None = None
    if current:
        path, digest = str(current.get("path", "")), str(current.get("digest", ""))
        if storage.verify(path, digest):
            name = Path(path).name
            # As Flux does each reconcile: the URL names this replica's storage
            # address, which after a failover is the new leader's.
            current = {**current, "url": storage.url_for(path)}
        else:
            run.notify(
                WARNING,
                ARTIFACT_VERIFICATION_FAILED,
                f"stored artifact '{path}' is missing or does not match digest {digest}; {again}",
            )
            storage.remove(path)
            current = None
            run.status = cond.remove_condition(
                {k: v for k, v in run.status.items() if k != "artifact"}, ARTIFACT_IN_STORAGE
            )
    storage.gc(key, name)
    return current
