"""dependsOn across kinds: HelmRelease -> Kustomization, Kustomization -> HelmRelease, cycles.

The real chain: a chart repository on loopback, a HelmRepository, HelmReleases
with `spec.chart` (the helm controller makes the HelmChart, the source
controller pulls it), git served over HTTP for the Kustomizations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.builders import (
    configmap,
    git_repository,
    helm_release,
    helm_repository,
    kustomization,
)
from tests.support.cluster import TestCluster, apply, get_json
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.helmrepos import ChartRepo, ChartRepoServer
from tests.support.status import condition, is_ready, wait_for_object, wait_ready

pytestmark = pytest.mark.integration

# Flux requeues a release waiting for a dependency after 30s; the watch must beat it.
WATCH_BEATS_REQUEUE = 25.0


@pytest.fixture
def chart_repo(tmp_path: Path) -> Iterator[tuple[ChartRepo, ChartRepoServer]]:
    repo = ChartRepo(tmp_path / "charts")
    repo.add("app", "1.0.0")
    with ChartRepoServer(repo) as server:
        yield repo, server


def _release(namespace: str, name: str, **spec: object) -> dict[str, object]:
    chart = {
        "spec": {
            "chart": "app",
            "version": "1.0.0",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
        }
    }
    return helm_release(namespace, name, chart=chart, **spec)


def _waiting(message_part: str):  # type: ignore[no-untyped-def]
    def check(obj: dict[str, object]) -> bool:
        ready = condition(obj, "Ready")
        return bool(
            ready
            and ready["status"] == "False"
            and ready["reason"] == "DependencyNotReady"
            and message_part in ready["message"]
        )

    return check


def test_a_release_waits_for_its_kustomization_then_installs(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    _, server = chart_repo
    repo = git_repos.create()
    repo.commit(
        {"infra/settings.yaml": yaml.safe_dump(configmap(None, "settings", {"a": "1"}))}, "i"
    )
    apply(
        cluster,
        helm_repository(namespace, "charts", server.url),
        # Its GitRepository does not exist yet: the Kustomization cannot be Ready.
        kustomization(namespace, "infra", "repo", "./infra", targetNamespace=namespace),
        _release(namespace, "web", dependsOn=[{"name": "infra", "kind": "Kustomization"}]),
    )
    wait_for_object(
        cluster,
        namespace,
        "helmrelease",
        "web",
        _waiting(f"dependency 'Kustomization/{namespace}/infra' is not ready"),
    )
    # Nothing was installed while waiting, not even the HelmChart (Flux's order).
    assert get_json(cluster, "configmap", "web-config", "-n", namespace) is None
    assert get_json(cluster, "helmchart", f"{namespace}-web", "-n", namespace) is None

    waiting_since = time.monotonic()
    apply(cluster, git_repository(namespace, "repo", git_http_server.url(repo.name)))
    wait_ready(cluster, namespace, "Kustomization", "infra")
    wait_ready(cluster, namespace, "HelmRelease", "web", timeout=WATCH_BEATS_REQUEUE)
    assert time.monotonic() - waiting_since < WATCH_BEATS_REQUEUE
    assert get_json(cluster, "configmap", "web-config", "-n", namespace) is not None


def test_a_kustomization_waits_for_its_release_then_applies(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    _, server = chart_repo
    repo = git_repos.create()
    repo.commit({"apps/settings.yaml": yaml.safe_dump(configmap(None, "apps", {"a": "1"}))}, "apps")
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        # Its HelmRepository does not exist yet: the release cannot be Ready.
        _release(namespace, "db"),
        kustomization(
            namespace,
            "apps",
            "repo",
            "./apps",
            targetNamespace=namespace,
            dependsOn=[{"name": "db", "kind": "HelmRelease"}],
        ),
    )
    wait_for_object(
        cluster,
        namespace,
        "kustomization",
        "apps",
        _waiting(f"dependency 'HelmRelease/{namespace}/db' is not ready"),
    )
    assert get_json(cluster, "configmap", "apps", "-n", namespace) is None

    waiting_since = time.monotonic()
    apply(cluster, helm_repository(namespace, "charts", server.url))
    wait_ready(cluster, namespace, "HelmRelease", "db", timeout=WATCH_BEATS_REQUEUE)
    wait_ready(cluster, namespace, "Kustomization", "apps", timeout=WATCH_BEATS_REQUEUE)
    assert time.monotonic() - waiting_since < WATCH_BEATS_REQUEUE
    assert get_json(cluster, "configmap", "apps", "-n", namespace) is not None


def test_a_cycle_across_kinds_is_named_on_both(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    _, server = chart_repo
    repo = git_repos.create()
    repo.commit({"x/settings.yaml": yaml.safe_dump(configmap(None, "x", {"a": "1"}))}, "x")
    apply(
        cluster,
        helm_repository(namespace, "charts", server.url),
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        _release(namespace, "a", dependsOn=[{"name": "b", "kind": "Kustomization"}]),
        kustomization(
            namespace,
            "b",
            "repo",
            "./x",
            targetNamespace=namespace,
            dependsOn=[{"name": "a", "kind": "HelmRelease"}],
        ),
    )
    cycle = f"{namespace}/a -> Kustomization/{namespace}/b -> {namespace}/a"
    wait_for_object(cluster, namespace, "helmrelease", "a", _waiting(f"dependency cycle: {cycle}"))
    back = f"{namespace}/b -> HelmRelease/{namespace}/a -> {namespace}/b"
    wait_for_object(cluster, namespace, "kustomization", "b", _waiting(f"dependency cycle: {back}"))
    assert not is_ready()(wait_ready(cluster, namespace, "HelmRelease", "a", status="False"))
