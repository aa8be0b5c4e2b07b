"""Flux's reconcile metrics, read from the running controllers' /metrics endpoint.

After a real sync (a GitRepository from a git server, a Kustomization
applying it, a Receiver for its webhooks), a Prometheus scrape must show
real samples with Flux's names and labels: reconcile durations counted per
object, the Ready condition's current status, and the suspend status.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.support.builders import git_repository, kustomization, receiver, secret
from tests.support.cluster import TestCluster, apply, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.metrics import sample_value, scrape
from tests.support.notification import FILES, RECEIVER_TOKEN
from tests.support.status import applied, wait_for_kustomization, wait_ready

pytestmark = pytest.mark.integration

DURATION_COUNT = "gotk_reconcile_duration_seconds_count"
CONDITION = "gotk_reconcile_condition"
SUSPEND = "gotk_suspend_status"


def wait_for_sample(
    controllers: RunningControllers, name: str, labels: Mapping[str, str], expected: str
) -> float:
    """Scrape until sample `name{labels}` exists (and is non-zero): its value."""

    def check() -> float | None:
        value = sample_value(scrape(controllers.metrics_url), name, labels)
        return value if value else None

    return wait_for(check, timeout=30, what=f"{name}{dict(labels)} {expected}")


def test_a_sync_shows_durations_and_ready_conditions_with_fluxs_labels(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit(FILES, "first")
    apply(
        cluster,
        secret(namespace, "hook-token", {"token": RECEIVER_TOKEN}),
        receiver(namespace, "hook", "generic", "hook-token"),
        git_repository(namespace, "app", git_http_server.url(repo.name)),
        kustomization(namespace, "app", "app", path="./deploy", targetNamespace=namespace),
    )
    wait_ready(cluster, namespace, "receiver", "hook")
    wait_for_kustomization(cluster, namespace, "app", applied(head), what="the first sync")

    objects = [
        {"kind": "Receiver", "name": "hook", "namespace": namespace},
        {"kind": "GitRepository", "name": "app", "namespace": namespace},
        {"kind": "Kustomization", "name": "app", "namespace": namespace},
    ]
    for labels in objects:
        count = wait_for_sample(controllers, DURATION_COUNT, labels, "counted")
        assert count >= 1
        ready = {**labels, "type": "Ready", "status": "True"}
        assert wait_for_sample(controllers, CONDITION, ready, "1") == 1
        # The other statuses of the same condition read 0, as in Flux.
        text = scrape(controllers.metrics_url)
        assert sample_value(text, CONDITION, {**ready, "status": "False"}) == 0
        assert sample_value(text, SUSPEND, labels) == 0


def test_suspending_an_object_shows_in_its_suspend_status(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        secret(namespace, "hook-token", {"token": RECEIVER_TOKEN}),
        receiver(namespace, "hook", "generic", "hook-token"),
    )
    wait_ready(cluster, namespace, "receiver", "hook")
    labels = {"kind": "Receiver", "name": "hook", "namespace": namespace}
    assert sample_value(scrape(controllers.metrics_url), SUSPEND, labels) == 0

    cluster.kubectl(
        "patch",
        "receiver",
        "hook",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )

    assert wait_for_sample(controllers, SUSPEND, labels, "1") == 1
