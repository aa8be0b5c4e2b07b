"""Prune and deletion policies against the real control plane."""

from __future__ import annotations

import asyncio
import json

import pytest

from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, ObjectId
from controllers.toolkit.apply.prune import (
    DeletionPolicy,
    PruneOptions,
    delete_all,
    prune,
    should_delete,
)
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.apply.ssa import Action, apply_all, owner_labels
from tests.integration.toolkit.conftest import GROUP, limited_client, options
from tests.support.builders import configmap
from tests.support.cluster import TestCluster

pytestmark = pytest.mark.integration

OWNER = owner_labels(GROUP, "app", "flux-system")
PRUNE = PruneOptions(OWNER, GROUP)


def exists(cluster: TestCluster, kind: str, name: str, namespace: str) -> bool:
    return cluster.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0


def entries(namespace: str, *names: str) -> list[InventoryEntry]:
    return [InventoryEntry(ObjectId("", "ConfigMap", namespace, n), "v1") for n in names]


async def test_stale_objects_are_pruned_only_when_still_ours(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    names = ["keep", "gone", "taken", "protected", "other"]
    objects = [configmap(namespace, n, {"a": "1"}) for n in names]
    objects[3]["metadata"]["annotations"] = {f"{GROUP}/prune": "disabled"}
    old = (await apply_all(resources, objects, options())).to_inventory()
    # Someone else took one over; another belongs to a different Kustomization.
    cluster.kubectl("label", "cm", "taken", "-n", namespace, f"{GROUP}/name=someone", "--overwrite")
    cluster.kubectl("label", "cm", "other", "-n", namespace, f"{GROUP}/namespace=x", "--overwrite")
    new = (await apply_all(resources, objects[:1], options())).to_inventory()
    stale = old.stale(new)
    assert [e.id.name for e in stale] == ["gone", "other", "protected", "taken"]

    result = await prune(resources, stale, PRUNE)
    assert result.ok and result.survivors == []
    assert {e.subject: str(e.action) for e in result.changeset} == {
        f"ConfigMap/{namespace}/gone": "deleted",
        f"ConfigMap/{namespace}/other": "skipped",
        f"ConfigMap/{namespace}/protected": "skipped",
        f"ConfigMap/{namespace}/taken": "skipped",
    }
    assert not exists(cluster, "cm", "gone", namespace)
    for name in ("keep", "taken", "protected", "other"):
        assert exists(cluster, "cm", name, namespace), name


async def test_already_deleted_objects_are_fine(resources: ResourceClient, namespace: str) -> None:
    stale = [
        *entries(namespace, "never-existed"),
        InventoryEntry(ObjectId("gone.example.com", "Thing", namespace, "t"), "v1"),
    ]
    result = await prune(resources, stale, PRUNE)
    assert result.ok
    assert {str(e.action) for e in result.changeset} == {"deleted"}


async def test_objects_that_fail_to_delete_survive_in_the_inventory(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    await apply_all(resources, [configmap(namespace, "c", {"a": "1"})], options())
    # A service account allowed to read config maps but not to delete them.
    with limited_client(cluster, namespace, "reader", "get,list", "configmaps") as limited:
        stale = entries(namespace, "c")
        result = await prune(limited, stale, PRUNE)
    assert not result.ok
    assert result.survivors == stale
    assert result.failures[0].startswith(f"ConfigMap/{namespace}/c delete failed: ")
    assert "forbidden" in result.failures[0]
    assert exists(cluster, "cm", "c", namespace)
    kept = Inventory([]).merge(result.survivors)
    assert kept.to_status() == {"entries": [{"id": f"{namespace}_c__ConfigMap", "v": "v1"}]}


@pytest.mark.parametrize(
    ("policy", "prune_enabled", "expected"),
    [
        ("", True, True),
        ("MirrorPrune", False, False),
        ("Delete", False, True),
        ("WaitForTermination", False, True),
        ("Orphan", True, False),
    ],
)
def test_deletion_policies(policy: str, prune_enabled: bool, expected: bool) -> None:
    assert should_delete(policy, prune_enabled) is expected


async def test_delete_all_follows_the_policy(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    applied = await apply_all(
        resources, [configmap(namespace, n, {"a": "1"}) for n in ("a", "b")], options()
    )
    inventory = list(applied.to_inventory())
    orphan = await delete_all(resources, inventory, DeletionPolicy.ORPHAN, PRUNE)
    assert len(orphan.changeset) == 0
    assert exists(cluster, "cm", "a", namespace)
    mirror = await delete_all(
        resources,
        inventory,
        DeletionPolicy.MIRROR_PRUNE,
        PRUNE,
        prune_enabled=False,
    )
    assert len(mirror.changeset) == 0
    deleted = await delete_all(resources, inventory, DeletionPolicy.DELETE, PRUNE)
    assert [str(e.action) for e in deleted.changeset] == ["deleted", "deleted"]
    assert not exists(cluster, "cm", "a", namespace)


async def test_wait_for_termination_waits_and_reports_what_stays(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    held = configmap(namespace, "held", {"a": "1"})
    held["metadata"]["finalizers"] = ["example.com/hold"]
    applied = await apply_all(
        resources, [held, configmap(namespace, "free", {"a": "1"})], options()
    )
    result = await delete_all(
        resources,
        list(applied.to_inventory()),
        DeletionPolicy.WAIT_FOR_TERMINATION,
        PRUNE,
        timeout=1.5,
        poll_interval=0.2,
    )
    assert result.ok
    assert {str(e.action) for e in result.changeset} == {str(Action.DELETED)}
    assert result.not_terminated == [ObjectId("", "ConfigMap", namespace, "held")]
    assert not exists(cluster, "cm", "free", namespace)

    # Once the finalizer goes, the wait ends by itself.
    async def release() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(
            cluster.kubectl,
            "patch",
            "cm",
            "held",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"finalizers": None}}),
        )

    releasing = asyncio.create_task(release())
    again = await delete_all(
        resources,
        entries(namespace, "held"),
        DeletionPolicy.WAIT_FOR_TERMINATION,
        PRUNE,
        timeout=60,
        poll_interval=0.2,
    )
    await releasing
    assert again.not_terminated == []
    assert not exists(cluster, "cm", "held", namespace)
