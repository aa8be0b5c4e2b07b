"""The inventory watch on a real API server: what it reports, and what it must not."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from controllers.toolkit.apply.inventory import ObjectId
from controllers.toolkit.apply.inventory_watch import ForeignChange, InventoryWatcher, WatchedKind
from tests.support.cluster import TestCluster

OWNER = "headwater.test/owner"
MANAGER = "headwater-kustomize"


def apply_configmap(cluster: TestCluster, namespace: str, name: str, value: str) -> None:
    cluster.kubectl(
        "apply", "--server-side", f"--field-manager={MANAGER}", "-n", namespace, "-f", "-",
        input=(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
            f"  labels: {{{OWNER}: app}}\ndata: {{value: '{value}'}}\n"
        ),
    )  # fmt: skip


async def settle(changes: list[ForeignChange], count: int, seconds: float) -> None:
    """Wait until `count` changes arrived (or `seconds` passed)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while len(changes) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)


async def test_foreign_changes_are_reported_once_across_watch_restarts(
    cluster: TestCluster, namespace: str, api_client: client.ApiClient
) -> None:
    apply_configmap(cluster, namespace, "edited", "1")
    apply_configmap(cluster, namespace, "pruned", "1")
    apply_configmap(cluster, namespace, "deleted", "1")
    changes: list[ForeignChange] = []
    # A 1s server-side timeout: the watch restarts several times during the test.
    watcher = InventoryWatcher(
        api_client, label_selector=OWNER, field_manager=MANAGER, on_change=changes.append,
        watch_timeout=1,
    )  # fmt: skip
    try:
        watcher.ensure({WatchedKind("v1", "ConfigMap")})
        await asyncio.sleep(2)
        assert changes == [], "our own applies are not foreign"

        cluster.kubectl(
            "patch", "configmap", "edited", "-n", namespace, "--field-manager=intruder",
            "-p", '{"data":{"value":"2"}}',
        )  # fmt: skip
        watcher.expect_deletions([ObjectId("", "ConfigMap", namespace, "pruned")])
        cluster.kubectl("delete", "configmap", "pruned", "-n", namespace)
        cluster.kubectl("delete", "configmap", "deleted", "-n", namespace)
        await settle(changes, 2, 15)
        # Several restarts later, nothing was reported again.
        await asyncio.sleep(4)
    finally:
        watcher.close()

    reported = [
        (change.event_type, change.obj["metadata"]["name"], change.manager) for change in changes
    ]
    assert reported == [("MODIFIED", "edited", "intruder"), ("DELETED", "deleted", MANAGER)]


async def test_the_ledger_vouches_across_watch_timeouts_until_an_object_changes(
    cluster: TestCluster, namespace: str, api_client: client.ApiClient
) -> None:
    apply_configmap(cluster, namespace, "settings", "1")
    kind = WatchedKind("v1", "ConfigMap")
    owner = (namespace, "app")

    def owner_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return owner if labels.get(OWNER) == "app" else None

    watcher = InventoryWatcher(
        api_client, label_selector=OWNER, field_manager=MANAGER, on_change=lambda _: None,
        watch_timeout=1, owner_of=owner_of,
    )  # fmt: skip
    try:
        watcher.ensure({kind})
        for _ in range(100):
            token = watcher.token(owner)
            if token is not None and kind in token.epochs:
                break
            await asyncio.sleep(0.1)
        assert token is not None and kind in token.epochs, "listed and connected"
        # Several server-side timeouts: each watch resumes where it was, no gap.
        await asyncio.sleep(4)
        assert watcher.broken(token, owner, {kind}) is None

        # Our own apply of a new value is a change too: only a dry-run can vouch for it.
        apply_configmap(cluster, namespace, "settings", "2")
        for _ in range(100):
            if watcher.broken(token, owner, {kind}) is not None:
                break
            await asyncio.sleep(0.1)
        assert watcher.broken(token, owner, {kind}) == (
            "an applied object changed since the last full verification"
        )
    finally:
        watcher.close()
