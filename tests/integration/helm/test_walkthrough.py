"""The WordPress walk-through, with Helm and GitOps: everything a user changes is a commit.

The HelmRepository and the HelmRelease live in git; a Kustomization syncs them. The
chart (a web Deployment, a database Deployment + Service) is served by a chart
repository on loopback. The story: installed and available; `replicaCount` changed
in git is an upgrade (helm revision 2); a deleted Deployment is back in seconds;
a bad upgrade committed to git (web pods that never become ready within `timeout`)
is rolled back and the on-call channel (a Slack stand-in) hears about it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.builders import alert, git_repository, kustomization, provider, secret
from tests.support.charts import NOWHERE, add_wordpress
from tests.support.chatservers import SlackServer
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.helmrepos import ChartRepo, ChartRepoServer, helm_history
from tests.support.notification import field_value, slack_attachment_from
from tests.support.status import (
    applied,
    condition,
    deployment_available,
    has_condition,
    is_ready,
    request_reconcile,
    wait_for_helmrelease,
    wait_for_kustomization,
)

pytestmark = pytest.mark.integration

# Far sooner than the release's interval (10m): only the drift watch can explain it.
HEALED_WITHIN = 20.0


@pytest.fixture
def chart_server(tmp_path: Path) -> Iterator[ChartRepoServer]:
    repo = ChartRepo(tmp_path / "charts")
    add_wordpress(repo, "1.0.0")
    with ChartRepoServer(repo) as server:
        yield server


def manifests(url: str, **release: Any) -> dict[str, str]:
    """apps/blog in git: the HelmRepository and the HelmRelease a user writes."""
    repository = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "charts"},
        "spec": {"interval": "10m", "url": url},
    }
    spec = {
        "interval": "10m",
        "chart": {
            "spec": {
                "chart": "wordpress",
                "version": "1.x",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            }
        },
        "driftDetection": {"mode": "enabled"},
        **release,
    }
    helm_release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "blog"},
        "spec": spec,
    }
    return {
        "apps/blog/repository.yaml": yaml.safe_dump(repository),
        "apps/blog/release.yaml": yaml.safe_dump(helm_release),
    }


def test_wordpress_from_git_upgrade_heal_and_rollback(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    chart_server: ChartRepoServer,
    slack_server: SlackServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit(manifests(chart_server.url, values={"replicaCount": 1}), "add the blog")
    apply(
        cluster,
        secret(namespace, "slack-url", {"address": slack_server.webhook_url}),
        provider(namespace, "slack", type="slack", channel="#ops", secretRef={"name": "slack-url"}),
        alert(namespace, "releases", "slack", {"kind": "HelmRelease", "name": "*"}),
        git_repository(namespace, "apps", git_http_server.url(repo.name)),
        kustomization(namespace, "apps", "apps", "./apps/blog", targetNamespace=namespace),
    )
    wait_for_kustomization(cluster, namespace, "apps", applied(first))
    wait_for_helmrelease(
        cluster, namespace, "blog", is_ready("True", "InstallSucceeded"), what="the install"
    )
    wait_for(
        lambda: all(deployment_available(cluster, namespace, n) for n in ("blog-web", "blog-db")),
        what="both Deployments available",
    )
    assert get_json(cluster, "service", "blog-db", "-n", namespace) is not None

    # replicaCount changed in git: an upgrade, helm revision 2.
    second = repo.commit(manifests(chart_server.url, values={"replicaCount": 2}), "two web pods")
    request_reconcile(cluster, namespace, "gitrepository", "apps")
    wait_for_kustomization(cluster, namespace, "apps", applied(second))
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            is_ready("True", "UpgradeSucceeded")(o) and o["status"]["history"][0]["version"] == 2
        ),
        what="the upgrade for replicaCount 2",
    )
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == [
        "superseded",
        "deployed",
    ]
    assert len(obj["status"]["history"]) == 2
    web = get_json(cluster, "deployment", "blog-web", "-n", namespace)
    assert web is not None and web["spec"]["replicas"] == 2

    # `kubectl delete deployment`: healed in seconds by the drift watch, no new revision.
    uid = get_json(cluster, "deployment", "blog-db", "-n", namespace)["metadata"]["uid"]  # type: ignore[index]
    cluster.kubectl("delete", "deployment", "blog-db", "-n", namespace)
    deleted_at = time.monotonic()
    wait_for(
        lambda: (
            (get_json(cluster, "deployment", "blog-db", "-n", namespace) or {})
            .get("metadata", {})
            .get("uid")
            not in (None, uid)
        ),
        timeout=HEALED_WITHIN,
        what="the database Deployment back",
    )
    assert time.monotonic() - deleted_at < HEALED_WITHIN
    assert [r["revision"] for r in helm_history(cluster, namespace, "blog")] == [1, 2]

    # A bad upgrade in git: web pods no node takes never become ready within the timeout.
    bad = manifests(
        chart_server.url,
        timeout="8s",
        values={"replicaCount": 2, "web": {"nodeSelector": NOWHERE}},
        # force: helm v4's --force-replace, on the upgrade and on its rollback.
        upgrade={"force": True, "remediation": {"remediateLastFailure": True}},
        rollback={"force": True},
    )
    third = repo.commit(bad, "pin web pods to a node pool")
    request_reconcile(cluster, namespace, "gitrepository", "apps")
    wait_for_kustomization(cluster, namespace, "apps", applied(third))
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        has_condition("Remediated", "True", "RollbackSucceeded"),
        what="the rollback",
        timeout=120,
    )
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == [
        "superseded",
        "superseded",
        "failed",
        "deployed",
    ]
    web = get_json(cluster, "deployment", "blog-web", "-n", namespace)
    assert web is not None and "nodeSelector" not in web["spec"]["template"]["spec"]
    assert web["spec"]["replicas"] == 2
    author = f"helmrelease/blog.{namespace}"
    [failure] = slack_server.wait_for(
        slack_attachment_from(author, "Helm upgrade failed"), what="the failure in Slack"
    )
    assert field_value(failure, "revision") == "1.0.0"
