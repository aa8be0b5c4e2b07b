"""The walk-through a user of Flux would do first, as one test, against real parts."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.builders import WEB_CONTAINER, git_repository, kustomization
from tests.support.cluster import TestCluster, apply, get_json, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import condition, get_object, request_reconcile

pytestmark = pytest.mark.integration


def deployment(replicas: int) -> str:
    return yaml.safe_dump(builders.deployment(None, "web", replicas=replicas, **WEB_CONTAINER))


SERVICE = yaml.safe_dump(builders.service(None, "web"))


def sources(namespace: str, url: str, **spec: Any) -> list[dict[str, Any]]:
    return [
        git_repository(namespace, "app", url),
        kustomization(namespace, "app", "app", "./deploy", targetNamespace=namespace, **spec),
    ]


def available(cluster: TestCluster, namespace: str, name: str = "web") -> int:
    found = get_json(cluster, "deployment", name, "-n", namespace)
    if found is None:
        return -1
    return int(found.get("status", {}).get("availableReplicas") or 0)


def ks_status(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    return get_object(cluster, namespace, "kustomization", "app").get("status") or {}


def test_git_to_cluster_walkthrough(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"deploy/deployment.yaml": deployment(3), "deploy/service.yaml": SERVICE})
    apply(cluster, *sources(namespace, git_http_server.url(repo.name), wait=True, timeout="90s"))

    # 1. The repository syncs: 3 available replicas and the Service.
    wait_for(lambda: available(cluster, namespace) == 3, timeout=120, what="3 available replicas")
    status = wait_for(
        lambda: (
            (s := ks_status(cluster, namespace)).get("lastAppliedRevision")
            == f"master@sha1:{first}"
            and s
        ),
        timeout=60,
        what="lastAppliedRevision",
    )
    assert condition(status, "Ready")["status"] == "True"  # type: ignore[index]
    assert condition(status, "Ready")["message"] == f"Applied revision: master@sha1:{first}"  # type: ignore[index]
    ids = {entry["id"] for entry in status["inventory"]["entries"]}
    assert ids == {
        f"{namespace}_web_apps_Deployment",
        f"{namespace}_web__Service",
    }
    service = kubectl_json(cluster, "get", "service", "web", "-n", namespace)
    assert service["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "app"

    # 2. A commit changing replicas to 5 gives 5 available replicas.
    second = repo.commit({"deploy/deployment.yaml": deployment(5)}, "scale to 5")
    request_reconcile(cluster, namespace, "gitrepository", "app")
    wait_for(lambda: available(cluster, namespace) == 5, timeout=120, what="5 available replicas")
    wait_for(
        lambda: ks_status(cluster, namespace).get("lastAppliedRevision") == f"master@sha1:{second}",
        what="the new revision applied",
    )

    # 3. Deleting the Deployment by hand is healed without any reconcile being requested.
    annotations_before = kubectl_json(cluster, "get", "kustomization", "app", "-n", namespace)[
        "metadata"
    ].get("annotations", {})
    cluster.kubectl("delete", "deployment", "web", "-n", namespace, "--wait=true")
    wait_for(lambda: available(cluster, namespace) == 5, timeout=60, what="the Deployment healed")
    annotations_after = kubectl_json(cluster, "get", "kustomization", "app", "-n", namespace)[
        "metadata"
    ].get("annotations", {})
    assert annotations_after == annotations_before, "a reconcile was requested"

    # 4. Deleting the Service's file from git prunes the Service.
    third = repo.commit({"deploy/service.yaml": None}, "drop the service")
    request_reconcile(cluster, namespace, "gitrepository", "app")

    def service_gone() -> bool:
        result = cluster.kubectl("get", "service", "web", "-n", namespace, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    wait_for(service_gone, timeout=60, what="the Service pruned")
    status = wait_for(
        lambda: (
            (s := ks_status(cluster, namespace)).get("lastAppliedRevision")
            == f"master@sha1:{third}"
            and s
        ),
        what="the pruning revision applied",
    )
    assert {entry["id"] for entry in status["inventory"]["entries"]} == {
        f"{namespace}_web_apps_Deployment"
    }
    assert available(cluster, namespace) == 5
