"""Artifacts when storage or transport fail: a full disk under the source controller, an
artifact server its consumer cannot reach, and bytes that do not match their digest.

The controllers run as processes of their own, serving only the test's shard: the
source controller stores on a small tmpfs, or advertises its artifacts through a
`FaultGate` that can go down or corrupt what it passes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.faults import FaultGate, figure, shard
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.sources import download
from tests.support.status import (
    applied,
    condition,
    configmap_data,
    get_object,
    request_reconcile,
    wait_for_kustomization,
    wait_for_object,
)

pytestmark = pytest.mark.integration

TMPFS_SIZE = "4m"


def config_map(value: str, payload: str = "") -> str:
    data = {"v": value, **({"payload": payload} if payload else {})}
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": data}
    )


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"mount -t tmpfs failed: {mounted.stderr.strip()}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 65536)
    return filler


def failing(reason: str, revision: str = "") -> Callable[[dict[str, Any]], bool]:
    """Ready=False with `reason` (after attempting `revision`, when given)."""

    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        attempted = str((obj.get("status") or {}).get("lastAttemptedRevision"))
        return bool(
            ready
            and ready["status"] == "False"
            and ready["reason"] == reason
            and attempted.endswith(revision)
        )

    return check


def test_a_full_disk_is_reported_keeps_the_last_artifact_and_recovers_when_space_returns(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    labels, env = shard(namespace)
    repo = git_repos.create()
    first = repo.commit({"deploy/app.yaml": config_map("one")}, "one")
    with small_tmpfs(tmp_path / "storage") as storage:
        env = {**env, "HEADWATER_STORAGE_PATH": str(storage)}
        with run_controllers(cluster.kubeconfig, tmp_path / "ctl", extra_env=env):
            apply(
                cluster,
                builders.git_repository(
                    namespace, "app", git_http_server.url(repo.name), interval="3s", metadata=labels
                ),
                builders.kustomization(
                    namespace, "app", "app", "./deploy", targetNamespace=namespace, metadata=labels
                ),
            )
            wait_for_kustomization(cluster, namespace, "app", applied(first), timeout=90)
            good = get_object(cluster, namespace, "gitrepository", "app")["status"]["artifact"]

            filler = fill(storage)
            full = time.monotonic()
            second = repo.commit({"deploy/app.yaml": config_map("two", "y" * 4096)}, "two")
            obj = wait_for_object(
                cluster,
                namespace,
                "gitrepository",
                "app",
                failing("StorageOperationFailed"),
                timeout=60,
                what="StorageOperationFailed on a full disk",
            )
            figure("disk_full_reported_seconds", time.monotonic() - full)
            message = condition(obj, "Ready")["message"]  # type: ignore[index]
            assert "No space left on device" in message, message
            assert obj["status"]["artifact"] == good
            data = download(good["url"])
            assert "sha256:" + hashlib.sha256(data).hexdigest() == good["digest"]
            assert configmap_data(cluster, namespace, "app") == {"v": "one"}
            # Nothing half-written is left beside the good artifact.
            leftovers = [
                p.name
                for p in storage.rglob("*")
                if p.is_file() and p != filler and p.suffix != ".lock"  # the object's lock
            ]
            assert leftovers == [Path(good["path"]).name], leftovers

            filler.unlink()
            freed = time.monotonic()
            wait_for_kustomization(cluster, namespace, "app", applied(second), timeout=90)
            figure("disk_full_recovery_seconds", time.monotonic() - freed)
            assert configmap_data(cluster, namespace, "app") == {"v": "two", "payload": "y" * 4096}


@contextlib.contextmanager
def split_controllers(
    cluster: TestCluster, namespace: str, workdir: Path
) -> Iterator[tuple[RunningControllers, FaultGate]]:
    """The source controller advertising its artifacts through a gate; kustomize apart."""
    _, env = shard(namespace)
    with FaultGate(0) as gate:
        source_env = {**env, "HEADWATER_STORAGE_ADV_ADDR": f"127.0.0.1:{gate.port}"}
        with run_controllers(
            cluster.kubeconfig, workdir / "source", which="source", extra_env=source_env
        ) as source:
            gate.upstream = ("127.0.0.1", int(source.storage_url.rsplit(":", 1)[1]))
            with run_controllers(
                cluster.kubeconfig, workdir / "kustomize", which="kustomize", extra_env=env
            ):
                yield source, gate


def test_an_unreachable_artifact_server_or_corrupt_bytes_apply_nothing_and_recover(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    labels, _ = shard(namespace)
    repo = git_repos.create()
    first = repo.commit({"deploy/app.yaml": config_map("one")}, "one")
    with split_controllers(cluster, namespace, tmp_path) as (_, gate):
        apply(
            cluster,
            builders.git_repository(
                namespace, "app", git_http_server.url(repo.name), interval="1h", metadata=labels
            ),
            builders.kustomization(
                namespace,
                "app",
                "app",
                "./deploy",
                targetNamespace=namespace,
                retryInterval="3s",
                metadata=labels,
            ),
        )
        wait_for_kustomization(cluster, namespace, "app", applied(first), timeout=90)

        for fault, text in (("unreachable", "127.0.0.1"), ("corrupt", "digest")):
            value = f"after {fault}"
            if fault == "unreachable":
                gate.down()
            else:
                gate.corrupt()
            commit = repo.commit({"deploy/app.yaml": config_map(value)}, fault)
            broke = time.monotonic()
            request_reconcile(cluster, namespace, "gitrepository", "app")
            obj = wait_for_object(
                cluster,
                namespace,
                "kustomization",
                "app",
                failing("ArtifactFailed", commit),
                timeout=120,
                what=f"ArtifactFailed with the artifact server {fault}",
            )
            figure(f"artifact_{fault}_reported_seconds", time.monotonic() - broke)
            message = condition(obj, "Ready")["message"]  # type: ignore[index]
            assert text in message, message
            # Nothing of the new revision was applied.
            assert configmap_data(cluster, namespace, "app") != {"v": value}
            gate.pass_through()
            back = time.monotonic()
            wait_for_kustomization(cluster, namespace, "app", applied(commit), timeout=90)
            figure(f"artifact_{fault}_recovery_seconds", time.monotonic() - back)
            assert configmap_data(cluster, namespace, "app") == {"v": value}
