"""Reconciles that cannot succeed stay bounded: a health wait past its timeout, 1,000
objects all failing health, and a dependency cycle.

Each ends with a clear condition, and the work it causes is counted from the
controllers' own metrics (they serve only this test's shard): reconciles per minute
stay those the retry interval asks for, no busy loop.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.faults import figure, rss_kib, shard
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.scaleout import reconciled
from tests.support.status import condition, wait_for_kustomization

pytestmark = pytest.mark.integration

# CI fails 200 objects' health: enough for the message to pass its 16 KiB cap (about 120
# do), so what 1,000 would prove (a status that still fits, one reconcile per timeout +
# retryInterval) shows at 200. `python -m bench.faults` runs 1,000
# (HEADWATER_FAULT_FAILING_OBJECTS) with a longer timeout (HEADWATER_FAULT_HEALTH_TIMEOUT):
# spec.timeout bounds their build and apply too, as in Flux.
FAILING = int(os.environ.get("HEADWATER_FAULT_FAILING_OBJECTS", "200"))
# 45 s leaves the 200 objects' fetch, build and apply room on a loaded machine (29.5 s at a
# load average of 31 with a 30 s timeout: too close).
TIMEOUT = int(os.environ.get("HEADWATER_FAULT_HEALTH_TIMEOUT", "45"))  # seconds: spec.timeout
RETRY = 5  # seconds: spec.retryInterval
WINDOW = TIMEOUT + RETRY + 5.0  # seconds watched for extra reconciles: at most 2 fit


@pytest.fixture
def own(cluster: TestCluster, namespace: str, tmp_path: Path) -> Iterator[RunningControllers]:
    _, env = shard(namespace)
    with run_controllers(cluster.kubeconfig, tmp_path / "ctl", extra_env=env) as running:
        yield running


def never_bound_claims(count: int) -> str:
    """PersistentVolumeClaims of a StorageClass nobody provides: Pending for good."""
    return yaml.safe_dump_all(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"claim-{index:04d}"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "nobody-provides-this",
                "resources": {"requests": {"storage": "1Mi"}},
            },
        }
        for index in range(count)
    )


def failed_health(obj: dict[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return bool(ready and ready["status"] == "False" and ready["reason"] == "HealthCheckFailed")


def test_health_past_the_timeout_and_1000_failing_objects_end_bounded_and_clear(
    cluster: TestCluster,
    namespace: str,
    own: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    labels, _ = shard(namespace)
    repo = git_repos.create()
    repo.commit({"one/claims.yaml": never_bound_claims(1), "many/claims.yaml": ""}, "claims")
    repo.commit({"many/claims.yaml": never_bound_claims(FAILING)}, "many claims")
    baseline = rss_kib(own.process.pid)
    apply(
        cluster,
        builders.git_repository(
            namespace, "app", git_http_server.url(repo.name), interval="1h", metadata=labels
        ),
        *(
            builders.kustomization(
                namespace,
                name,
                "app",
                f"./{name}",
                targetNamespace=namespace,
                wait=True,
                timeout=f"{TIMEOUT}s",
                retryInterval=f"{RETRY}s",
                metadata=labels,
            )
            for name in ("one", "many")
        ),
    )
    started = time.monotonic()
    one = wait_for_kustomization(
        cluster, namespace, "one", failed_health, timeout=TIMEOUT + 60, what="one health timeout"
    )
    figure("health_timeout_reported_seconds", time.monotonic() - started)
    message = condition(one, "Ready")["message"]  # type: ignore[index]
    assert message.startswith("timeout waiting for: [PersistentVolumeClaim/"), message
    assert f"{namespace}/claim-0000" in message
    assert condition(one, "Healthy")["status"] == "False"  # type: ignore[index]

    many = wait_for_kustomization(
        cluster,
        namespace,
        "many",
        failed_health,
        timeout=TIMEOUT + 340,
        what=f"{FAILING} failing health",
    )
    figure(f"health_{FAILING}_failing_reported_seconds", time.monotonic() - started)
    message = condition(many, "Ready")["message"]  # type: ignore[index]
    figure(f"health_{FAILING}_failing_message_chars", len(message))
    assert message.startswith("timeout waiting for: ["), message[:200]
    assert len(message) < 32768  # the CRDs' maxLength of a condition message
    assert "claim-0000" in message
    # Cut at 16 KiB, saying how many more: every object is either named or counted.
    more = re.search(r", \.\.\. and (\d+) more\]$", message)
    assert more is not None, message[-200:]
    named = message.count("PersistentVolumeClaim/")
    figure(f"health_{FAILING}_failing_named_in_message", named)
    assert named + int(more.group(1)) == FAILING
    # The status was written whole, and the inventory names all of them.
    assert len(many["status"]["inventory"]["entries"]) == FAILING

    # Bounded work: over a window, no more reconciles than the retry interval asks for.
    before = reconciled(own.metrics_url, "Kustomization", namespace)
    window = WINDOW
    time.sleep(window)
    after = reconciled(own.metrics_url, "Kustomization", namespace)
    peak = rss_kib(own.process.pid)
    for name in ("one", "many"):
        runs = after.get(name, 0) - before.get(name, 0)
        figure(f"health_{name}_reconciles_in_{window:.0f}s", runs)
        # Each run waits TIMEOUT, then RETRY passes: at most one run per TIMEOUT + RETRY
        # (plus the one under way when the window opened).
        assert runs <= window / (TIMEOUT + RETRY) + 1, (name, runs)
    figure(f"health_{FAILING}_failing_rss_growth_mib", (peak - baseline) / 1024)
    assert own.process.poll() is None


def test_a_dependency_cycle_is_named_and_costs_no_busy_loop(
    cluster: TestCluster,
    namespace: str,
    own: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    labels, _ = shard(namespace)
    repo = git_repos.create()
    repo.commit({"a/cm.yaml": "", "b/cm.yaml": ""}, "empty")

    def member(name: str, other: str) -> dict[str, Any]:
        return builders.kustomization(
            namespace,
            name,
            "app",
            f"./{name}",
            dependsOn=[{"name": other}],
            retryInterval=f"{RETRY}s",
            metadata=labels,
        )

    apply(
        cluster,
        builders.git_repository(
            namespace, "app", git_http_server.url(repo.name), interval="1h", metadata=labels
        ),
        member("a", "b"),
        member("b", "a"),
    )

    def stuck(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        return bool(ready and ready["status"] == "False" and "dependency cycle" in ready["message"])

    a = wait_for_kustomization(cluster, namespace, "a", stuck, timeout=60, what="the cycle named")
    ready = condition(a, "Ready")
    assert ready is not None
    figure("cycle_reason", ready["reason"])
    before = reconciled(own.metrics_url, "Kustomization", namespace)
    window = 20.0
    time.sleep(window)
    after = reconciled(own.metrics_url, "Kustomization", namespace)
    for name in ("a", "b"):
        runs = after.get(name, 0) - before.get(name, 0)
        figure(f"cycle_{name}_reconciles_in_{window:.0f}s", runs)
        assert runs <= window / RETRY + 1, (name, runs)
