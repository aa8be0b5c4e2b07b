"""Two replicas of every controller: one leads, and a kill -9 of it loses nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from controllers.toolkit.runtime.leader import lease_name
from tests.support import builders
from tests.support.cluster import TestCluster, apply, wait_for
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.scaleout import SHARD_KEY, http_status, lease_holder, reconciled
from tests.support.status import applied, configmap_data, get_object, wait_for_kustomization

pytestmark = pytest.mark.integration

CONTROLLERS = ("source", "kustomize", "helm", "notification")
LEASE_DURATION = 6.0
RETRY_PERIOD = 1.0
# Short timings, so the test waits seconds rather than Flux's 35 s.
ELECTION = {
    "HEADWATER_ENABLE_LEADER_ELECTION": "true",
    "HEADWATER_LEADER_ELECTION_LEASE_DURATION": f"{LEASE_DURATION:g}s",
    "HEADWATER_LEADER_ELECTION_RENEW_DEADLINE": "4s",
    "HEADWATER_LEADER_ELECTION_RETRY_PERIOD": f"{RETRY_PERIOD:g}s",
}


def config_map(value: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"v": value}}
    )


def holders(cluster: TestCluster, namespace: str, selector: str) -> dict[str, str | None]:
    return {
        name: lease_holder(cluster, namespace, lease_name(name, selector)) for name in CONTROLLERS
    }


def test_only_the_leader_reconciles_and_a_standby_takes_over_after_kill_9(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    # This test's objects form a shard of their own, so no other instance in
    # the session touches them, and the Leases live in the test's namespace.
    selector = f"{SHARD_KEY}={namespace}"
    env = {**ELECTION, "HEADWATER_NAMESPACE": namespace, "HEADWATER_WATCH_LABEL_SELECTOR": selector}
    labels = {"labels": {SHARD_KEY: namespace}}
    repo = git_repos.create()
    first = repo.commit({"deploy/configmap.yaml": config_map("one")})

    with contextlib.ExitStack() as stack:
        a: RunningControllers = stack.enter_context(
            run_controllers(cluster.kubeconfig, tmp_path / "a", extra_env=env)
        )
        leaders = wait_for(
            lambda: (h := holders(cluster, namespace, selector)) and all(h.values()) and h,
            timeout=30,
            what="replica a to hold every controller's Lease",
        )
        identity_a = leaders["source"]
        assert set(leaders.values()) == {identity_a}  # one identity per process
        b: RunningControllers = stack.enter_context(
            run_controllers(cluster.kubeconfig, tmp_path / "b", extra_env=env)
        )

        apply(
            cluster,
            builders.git_repository(
                namespace, "app", git_http_server.url(repo.name), metadata=labels
            ),
            builders.kustomization(
                namespace, "app", "app", "./deploy", targetNamespace=namespace, metadata=labels
            ),
        )
        wait_for_kustomization(cluster, namespace, "app", applied(first), timeout=90)

        # Only a reconciles; b is ready and serves, but has run no reconcile.
        assert reconciled(a.metrics_url, "GitRepository", namespace).keys() == {"app"}
        assert reconciled(a.metrics_url, "Kustomization", namespace).keys() == {"app"}
        assert reconciled(b.metrics_url, "GitRepository", namespace) == {}
        assert reconciled(b.metrics_url, "Kustomization", namespace) == {}
        assert http_status(f"{b.health_url}/readyz") == 200
        assert http_status(f"{b.storage_url}/") in (200, 403, 404)  # b's artifact server answers
        assert holders(cluster, namespace, selector) == leaders

        # kill -9 the leader, then push a commit while nobody leads.
        os.killpg(a.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        a.process.wait(timeout=10)
        second = repo.commit({"deploy/configmap.yaml": config_map("two")}, "during the failover")

        taken = wait_for(
            lambda: (
                (h := holders(cluster, namespace, selector))
                and all(v and v != identity_a for v in h.values())
                and h
            ),
            timeout=LEASE_DURATION + 30,
            what="replica b to take over every Lease",
        )
        took = time.monotonic() - killed
        # Within the lease duration, give or take one retry period and the
        # polling (and load) of this test.
        assert took <= LEASE_DURATION + 2 * RETRY_PERIOD + 3, f"takeover took {took:.1f}s"
        assert len(set(taken.values())) == 1

        # The commit pushed meanwhile is applied by the new leader, from an
        # artifact it re-created in its own storage and serves itself.
        wait_for_kustomization(cluster, namespace, "app", applied(second), timeout=90)
        assert configmap_data(cluster, namespace, "app") == {"v": "two"}
        artifact = get_object(cluster, namespace, "gitrepository", "app")["status"]["artifact"]
        assert artifact["url"].startswith(b.storage_url + "/")
        assert http_status(artifact["url"]) == 200
        assert (b.storage_dir / artifact["path"]).is_file()
        assert reconciled(b.metrics_url, "Kustomization", namespace).keys() == {"app"}
