"""Stored artifacts stay trustworthy: corruption is detected and repaired, and an
artifact over the size limit is refused without losing what is stored.

How the size limit is tested, and why so: the session's controllers run with the default
limit (100 MiB), and every source controller watches GitRepositories cluster-wide, so a
second controller process with a small limit would race the session's one for the same
object's status (whichever wrote last would win). Instead:

- `produce_artifact`, the step the controller runs, is called directly with a real
  small-limit `Storage` against the real git server: the typed error, its reason and
  message, nothing stored, and a previously stored artifact kept.
- The reconcile's mapping of that error to status is checked with a real
  `GitRepositoryReconciler` (real Storage, ObjectWriter and event recorder) on a real
  GitRepository in the cluster. The cluster copy has ``spec.suspend: true``, which any
  other source controller (the session's, a developer's) leaves alone: Flux's contract,
  which the reconciler implements by returning before it writes anything. The reconcile
  under test is handed that same object with ``suspend`` cleared, so it is the only
  writer of the status the test reads, whether or not the session's controllers run.
"""

from __future__ import annotations

import copy
import hashlib
import random
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from controllers.source.gitrepository import (
    ARTIFACT_VERIFICATION_FAILED,
    RESOURCE,
    STORAGE_KIND,
    STORAGE_OPERATION_FAILED,
    FetchInputs,
    GitRepositoryReconciler,
    GitRepositorySpec,
    produce_artifact,
)
from controllers.source.storage import ObjectKey, Storage, StoredArtifact
from controllers.toolkit.git import errors
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.settings import Settings
from tests.support.builders import git_repository
from tests.support.cluster import TestCluster, apply, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import condition, events_for, get_object, request_reconcile

pytestmark = pytest.mark.integration

SMALL_LIMIT = 64 * 1024
APP_FILES = {
    "deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    "deploy/values.yaml": "".join(f"key{i}: value{i}\n" for i in range(200)),
    "README.md": "# app\n",
}


def incompressible(size: int, seed: int = 7) -> bytes:
    """Bytes gzip cannot shrink, so the artifact is about as large as the content."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- corruption on disk, against the session's controllers --------------------------------


def _overwrite(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + 64, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, same inode: only the content differs


def _truncate(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    "damage", [_overwrite, _truncate, _delete], ids=["overwritten", "truncated", "deleted"]
)
def test_damaged_artifact_is_detected_on_requested_reconcile_and_rebuilt(
    damage: Any,
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit(APP_FILES, "first")
    # A long interval: only the requested reconcile below can notice the damage.
    apply(cluster, git_repository(namespace, "app", git_http_server.url(repo.name), interval="1h"))

    def ready_with_artifact() -> dict[str, Any] | None:
        obj = get_object(cluster, namespace, "gitrepository", "app")
        ready = condition(obj, "Ready")
        if ready and ready["status"] == "True" and obj["status"].get("artifact"):
            return obj
        return None

    before = wait_for(ready_with_artifact, what="GitRepository app Ready with an artifact")
    artifact = before["status"]["artifact"]
    assert artifact["revision"] == f"master@sha1:{head}"
    stored = controllers.storage_dir / artifact["path"]
    assert sha256(stored.read_bytes()) == artifact["digest"]

    damage(stored)
    assert not stored.exists() or sha256(stored.read_bytes()) != artifact["digest"]

    token = request_reconcile(cluster, namespace, "gitrepository", "app")
    after = wait_for(
        lambda: (
            o
            if (o := get_object(cluster, namespace, "gitrepository", "app"))["status"].get(
                "lastHandledReconcileAt"
            )
            == token
            else None
        ),
        what="the requested reconcile to be handled",
    )

    warnings = [
        e
        for e in events_for(cluster, namespace, "GitRepository", "app")
        if e["reason"] == ARTIFACT_VERIFICATION_FAILED
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0]["type"] == "Warning"
    assert artifact["path"] in warnings[0]["message"]
    assert artifact["digest"] in warnings[0]["message"]

    # Rebuilt from the same commit: the deterministic archive gives the same bytes back.
    ready = condition(after, "Ready")
    assert ready is not None and ready["status"] == "True", after["status"]
    rebuilt = after["status"]["artifact"]
    assert rebuilt["revision"] == artifact["revision"]
    assert rebuilt["digest"] == artifact["digest"]
    assert rebuilt["path"] == artifact["path"]
    assert sha256(stored.read_bytes()) == rebuilt["digest"]
    with urllib.request.urlopen(rebuilt["url"], timeout=10) as response:
        assert sha256(response.read()) == rebuilt["digest"]


# -- the size limit: the step itself, against the real git server --------------------------


def _inputs(key: ObjectKey, url: str, current: Mapping[str, Any] | None = None) -> FetchInputs:
    return FetchInputs(
        key=key,
        spec=GitRepositorySpec.parse({"url": url, "interval": "1m"}),
        secret=None,
        verify_keys=None,
        includes=(),
        current=current,
        reuse_allowed=current is not None,
    )


def _files_under(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_oversized_artifact_is_refused_and_the_stored_one_kept(
    tmp_path: Path, git_repos: RepoFactory, git_http_server: GitHttpServer
) -> None:
    storage = Storage(tmp_path / "artifacts", "127.0.0.1:9090", max_artifact_size=SMALL_LIMIT)
    key = ObjectKey(STORAGE_KIND, "limits", "grows")
    repo = git_repos.create()
    small_head = repo.commit(APP_FILES, "small")
    url = git_http_server.url(repo.name)

    first = produce_artifact(storage, _inputs(key, url))
    assert isinstance(first.artifact, StoredArtifact)
    assert first.artifact.size <= SMALL_LIMIT
    assert first.artifact.revision == f"master@sha1:{small_head}"

    big_head = repo.commit({"assets/blob.bin": incompressible(300 * 1024)}, "big")
    with pytest.raises(errors.ArtifactTooLargeError) as caught:
        produce_artifact(storage, _inputs(key, url, first.artifact.to_status()))

    error = caught.value
    assert error.reason == errors.STORAGE_OPERATION_FAILED
    assert error.limit == SMALL_LIMIT
    assert error.size > SMALL_LIMIT
    assert f"{error.size} bytes" in error.message
    assert f"limit {SMALL_LIMIT} bytes" in error.message
    # Nothing of the refused artifact was stored (no partial or temporary file), and
    # the artifact stored before is still there, intact.
    directory = storage.root / key.dir
    assert _files_under(directory) == [f"{small_head}.tar.gz"]
    assert not (directory / f"{big_head}.tar.gz").exists()
    assert storage.verify(first.artifact.path, first.artifact.digest)


# -- the size limit: what the reconcile reports --------------------------------------------


async def _no_secret(namespace: str, name: str) -> Mapping[str, bytes] | None:
    raise AssertionError(f"this GitRepository references no secret, asked for {namespace}/{name}")


async def test_oversized_artifact_sets_ready_false_storage_operation_failed(
    tmp_path: Path,
    cluster: TestCluster,
    namespace: str,
    api_client: kubernetes.client.ApiClient,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    repo.commit({**APP_FILES, "assets/blob.bin": incompressible(400 * 1024)}, "big")
    apply(
        cluster,
        git_repository(
            namespace, "big", git_http_server.url(repo.name), interval="1m", suspend=True
        ),
    )
    live = get_object(cluster, namespace, "gitrepository", "big")
    obj = copy.deepcopy(live)
    del obj["spec"]["suspend"]  # see the module docstring: only this reconcile acts on it

    storage = Storage(tmp_path / "artifacts", "127.0.0.1:9090", max_artifact_size=SMALL_LIMIT)
    reconciler = GitRepositoryReconciler(
        storage=storage,
        writer=ObjectWriter(api_client, RESOURCE),
        recorder=make_recorder("source", api_client, Settings()),
        read_secret=_no_secret,
        lookup=lambda ref: None,
    )
    outcome = await reconciler.reconcile(obj)
    assert outcome.requeue_after is not None  # a failure that is retried, not a stall

    status = get_object(cluster, namespace, "gitrepository", "big")["status"]
    ready = condition(status, "Ready")
    assert ready is not None, status
    assert (ready["status"], ready["reason"]) == ("False", errors.STORAGE_OPERATION_FAILED)
    assert "larger than the storage size limit" in ready["message"]
    assert f"limit {SMALL_LIMIT} bytes" in ready["message"]
    failed = condition(status, STORAGE_OPERATION_FAILED)
    assert failed is not None and failed["status"] == "True", status
    assert failed["message"] == ready["message"]
    assert condition(status, "Stalled") is None
    assert condition(status, "ArtifactInStorage") is None
    assert "artifact" not in status
    key = ObjectKey(STORAGE_KIND, namespace, "big")
    assert _files_under(storage.root / key.dir) == []

    warnings = [
        e
        for e in events_for(cluster, namespace, "GitRepository", "big")
        if e["reason"] == STORAGE_OPERATION_FAILED
    ]
    assert [e["type"] for e in warnings] == ["Warning"]
    assert warnings[0]["message"] == ready["message"]
    # The cluster copy stayed suspended: nothing else was asked to reconcile it.
    assert get_object(cluster, namespace, "gitrepository", "big")["spec"]["suspend"] is True
