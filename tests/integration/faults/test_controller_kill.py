"""kill -9 of the controllers in the middle of applying 2,000 objects, then a restart.

The controllers run as a process of their own, serving only this test's shard, so the
kill reaches nobody else. After the restart everything converges to the inventory the
revision describes: every object present once with its full content, nothing left that
no inventory names, and the status (artifact, inventory, revisions) complete.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import run_controllers
from tests.support.faults import figure, shard
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import applied, condition, get_object, wait_for_kustomization

pytestmark = pytest.mark.integration

# 2,000 in bench/faults.py (about 4 minutes here); CI applies fewer the same way.
OBJECTS = int(os.environ.get("HEADWATER_FAULT_KILL_OBJECTS", "400"))
KEPT = OBJECTS * 3 // 4  # the second revision, pushed while nobody runs, drops the rest
OWNER = "kustomize.toolkit.fluxcd.io/name"


def config_maps(indexes: range, revision: str) -> str:
    documents = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"cm-{index:04d}"},
            "data": {"index": str(index), "revision": revision, "payload": "x" * 64},
        }
        for index in indexes
    ]
    return yaml.safe_dump_all(documents)


def owned_config_maps(cluster: TestCluster, namespace: str) -> list[dict[str, Any]]:
    listing = kubectl_json(cluster, "get", "configmaps", "-n", namespace, "-l", f"{OWNER}=app")
    items: list[dict[str, Any]] = listing["items"]
    return items


def count_owned(cluster: TestCluster, namespace: str) -> int:
    # Names only: cheap enough to poll while 2,000 objects are being applied.
    listing = cluster.kubectl(
        "get", "configmaps", "-n", namespace, "-l", f"{OWNER}=app", "-o", "name", check=False
    )
    return len(listing.stdout.split()) if listing.returncode == 0 else 0


def test_kill_9_mid_apply_then_restart_converges_with_nothing_lost_or_left_over(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    labels, env = shard(namespace)
    repo = git_repos.create()
    first = repo.commit({"deploy/configmaps.yaml": config_maps(range(OBJECTS), "one")}, "one")

    with run_controllers(cluster.kubeconfig, tmp_path / "first", extra_env=env) as running:
        apply(
            cluster,
            builders.git_repository(
                namespace, "app", git_http_server.url(repo.name), interval="1m", metadata=labels
            ),
            builders.kustomization(
                namespace,
                "app",
                "app",
                "./deploy",
                targetNamespace=namespace,
                interval="1m",
                timeout="5m",
                metadata=labels,
            ),
        )
        # Kill once the apply is well under way and far from done.
        wait_for(
            lambda: count_owned(cluster, namespace) >= 50,
            timeout=180,
            interval=0.1,
            what="the apply to start",
        )
        os.killpg(running.process.pid, signal.SIGKILL)
        running.process.wait(timeout=10)
    at_kill = count_owned(cluster, namespace)
    figure("kill9_objects_applied_at_kill", at_kill)
    assert 0 < at_kill < OBJECTS, f"the kill did not land mid-apply ({at_kill} objects)"
    status = get_object(cluster, namespace, "kustomization", "app").get("status") or {}
    assert status.get("lastAppliedRevision") is None  # the first apply never finished

    # While nobody runs, git moves on and drops the first quarter of the objects: the
    # very ones applied before the kill, which no inventory names yet.
    kept = range(OBJECTS - KEPT, OBJECTS)
    second = repo.commit({"deploy/configmaps.yaml": config_maps(kept, "two")}, "two")

    restarted = time.monotonic()
    with run_controllers(cluster.kubeconfig, tmp_path / "second", extra_env=env):
        ks = wait_for_kustomization(cluster, namespace, "app", applied(second), timeout=300)
        figure("kill9_recovery_seconds", time.monotonic() - restarted)

        items = owned_config_maps(cluster, namespace)
        names = [item["metadata"]["name"] for item in items]
        expected = {f"cm-{index:04d}" for index in kept}
        duplicates = len(names) - len(set(names))
        orphans = sorted(set(names) - expected)
        missing = sorted(expected - set(names))
        half_applied = [
            item["metadata"]["name"]
            for item in items
            if item["metadata"]["name"] in expected
            and item.get("data")
            != {
                "index": str(int(item["metadata"]["name"][3:])),
                "revision": "two",
                "payload": "x" * 64,
            }
        ]
        entries = [entry["id"] for entry in ks["status"]["inventory"]["entries"]]
        inventory_duplicates = len(entries) - len(set(entries))
        figure("kill9_objects_expected", len(expected))
        figure("kill9_objects_present", len(set(names) & expected))
        figure("kill9_objects_missing", len(missing))
        figure("kill9_orphans", len(orphans))
        figure("kill9_duplicates", duplicates + inventory_duplicates)
        figure("kill9_half_applied", len(half_applied))
        figure("kill9_inventory_entries", len(entries))
        assert missing == []
        assert orphans == [], f"{len(orphans)} objects no inventory names, e.g. {orphans[:5]}"
        assert duplicates == 0 and inventory_duplicates == 0
        assert half_applied == []
        assert sorted(entries) == sorted(f"{namespace}_{name}__ConfigMap" for name in expected)

        # No lost status: both objects report their revision, artifact and inventory.
        source = get_object(cluster, namespace, "gitrepository", "app")
        assert condition(source, "Ready")["status"] == "True"  # type: ignore[index]
        assert source["status"]["artifact"]["revision"].endswith(second)
        assert ks["status"]["lastAttemptedRevision"] == ks["status"]["lastAppliedRevision"]
        assert condition(ks, "Ready")["status"] == "True"  # type: ignore[index]
        lost = [
            field
            for field in ("lastAppliedRevision", "lastAttemptedRevision", "inventory")
            if not ks["status"].get(field)
        ]
        figure("kill9_status_fields_lost", len(lost))
        assert lost == []
        print(json.dumps({"first": first, "second": second}))
