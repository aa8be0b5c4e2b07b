"""Two kustomize shards split 20 Kustomizations by the sharding.fluxcd.io/key label."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml

from controllers.toolkit.runtime.leader import lease_name
from tests.support import builders
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import run_controllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.scaleout import SHARD_KEY, reconciled
from tests.support.status import applied, get_object

pytestmark = pytest.mark.integration

COUNT = 20


def config_map(name: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": name}}
    )


def test_two_kustomize_shards_each_reconcile_only_their_own(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    shards = (f"{namespace}-1", f"{namespace}-2")
    repo = git_repos.create()
    head = repo.commit(
        {f"apps/app-{i:02}/configmap.yaml": config_map(f"app-{i:02}") for i in range(COUNT)}
    )
    # The source belongs to the first shard; Kustomizations of both use it,
    # which Flux allows: a shard's selector filters only the kind it reconciles.
    objects = [
        builders.git_repository(
            namespace,
            "apps",
            git_http_server.url(repo.name),
            metadata={"labels": {SHARD_KEY: shards[0]}},
        )
    ]
    owner = {f"app-{i:02}": shards[i % 2] for i in range(COUNT)}
    objects += [
        builders.kustomization(
            namespace,
            name,
            "apps",
            f"./apps/{name}",
            targetNamespace=namespace,
            metadata={"labels": {SHARD_KEY: shard}},
        )
        for name, shard in owner.items()
    ]

    def env(selector: str) -> dict[str, str]:
        # Leader election on: shards with different selectors take different Leases.
        return {
            "HEADWATER_NAMESPACE": namespace,
            "HEADWATER_WATCH_LABEL_SELECTOR": selector,
            "HEADWATER_ENABLE_LEADER_ELECTION": "true",
        }

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            run_controllers(
                cluster.kubeconfig,
                tmp_path / "source",
                "source",
                extra_env=env(f"{SHARD_KEY} in ({shards[0]})"),
            )
        )
        instances = [
            stack.enter_context(
                run_controllers(
                    cluster.kubeconfig,
                    tmp_path / f"kustomize-{n}",
                    "kustomize",
                    extra_env=env(f"{SHARD_KEY}={shard}"),
                )
            )
            for n, shard in enumerate(shards)
        ]
        apply(cluster, *objects)

        def all_applied() -> bool:
            return all(
                applied(head)(get_object(cluster, namespace, "kustomization", name))
                for name in owner
            )

        wait_for(all_applied, timeout=180, what=f"all {COUNT} Kustomizations applied")

        for instance, shard in zip(instances, shards, strict=True):
            mine = {name for name, owned_by in owner.items() if owned_by == shard}
            assert len(mine) == COUNT // 2
            assert reconciled(instance.metrics_url, "Kustomization", namespace).keys() == mine
        # Each shard leads its own Lease, so neither waits for the other.
        leases = kubectl_json(cluster, "get", "leases", "-n", namespace)["items"]
        held = {
            lease["metadata"]["name"]: lease["spec"].get("holderIdentity")
            for lease in leases
            if lease["metadata"]["name"].startswith("kustomize-controller-leader-election")
        }
        assert held.keys() == {lease_name("kustomize", f"{SHARD_KEY}={shard}") for shard in shards}
        assert all(held.values())
