"""The CLI's verbs on HelmReleases, against the real control plane and a real chart
repository: a Kustomization `apps` from git applies HelmRelease `blog` (wordpress from
the test's HelmRepository `charts`, drift detection on), as a Flux user lays it out."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.builders import git_repository, helm_release, kustomization
from tests.support.charts import Charts
from tests.support.cli import headwater
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import applied, wait_for_kustomization, wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture
def blog(
    cluster: TestCluster,
    namespace: str,
    charts: Charts,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> str:
    charts.publish("1.0.0")
    release = helm_release(
        namespace,
        "blog",
        chart=charts.template(version="1.x"),
        install={"disableWait": True},
        driftDetection={"mode": "enabled"},
    )
    repo = git_repos.create()
    commit = repo.commit({"apps/blog.yaml": yaml.safe_dump(release)})
    apply(
        cluster,
        git_repository(namespace, "app", git_http_server.url(repo.name)),
        kustomization(namespace, "apps", "app", "./apps"),
    )
    wait_for_kustomization(cluster, namespace, "apps", applied(commit), timeout=120)
    wait_ready(cluster, namespace, "HelmRelease", "blog", timeout=120)
    return namespace


def test_get_tree_and_trace_follow_a_helm_release(cluster: TestCluster, blog: str) -> None:
    ns = blog
    table = headwater(cluster, "get", "hr", "-n", ns)
    assert table.returncode == 0, table.stderr
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith("blog "))
    assert row[:4] == ["blog", "1.0.0", "False", "True"]
    everything = headwater(cluster, "get", "all", "-n", ns, "-o", "json")
    kinds = {item["kind"] for item in json.loads(everything.stdout)["items"]}
    assert {"HelmRelease", "HelmChart", "HelmRepository", "Kustomization"} <= kinds

    tree = json.loads(headwater(cluster, "tree", "ks", "apps", "-n", ns, "-o", "json").stdout)
    (release,) = tree["children"]
    assert (release["kind"], release["name"]) == ("HelmRelease", "blog")
    owned = {(c["kind"], c["name"]): c["status"] for c in release["children"]}
    assert set(owned) == {
        ("Deployment", "blog-web"),
        ("Deployment", "blog-db"),
        ("Service", "blog-db"),
    }
    assert owned[("Service", "blog-db")] == "Current"
    text = headwater(cluster, "tree", "hr", "blog", "-n", ns)
    assert text.returncode == 0, text.stderr
    assert f"Deployment/{ns}/blog-web" in text.stdout

    trace = headwater(cluster, "trace", "deployment", "blog-web", "-n", ns, "-o", "json")
    assert trace.returncode == 0, trace.stderr
    report = json.loads(trace.stdout)
    assert report["helmRelease"]["name"] == "blog"
    assert report["helmRelease"]["revision"] == "1.0.0"
    assert report["source"]["kind"] == "HelmChart"
    assert report["source"]["name"] == f"{ns}-blog"


def test_reconcile_with_source_suspend_resume_and_events(
    cluster: TestCluster, blog: str, charts: Charts
) -> None:
    ns = blog

    def index_revision() -> str:
        repo = get_json(cluster, "helmrepository", "charts", "-n", ns) or {}
        return str(((repo.get("status") or {}).get("artifact") or {}).get("revision") or "")

    before = index_revision()
    charts.publish("1.1.0")
    wait_for(lambda: index_revision() != before, timeout=60, what="the index with 1.1.0")
    result = headwater(cluster, "reconcile", "hr", "blog", "-n", ns, "--with-source")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "released chart version 1.1.0" in result.stdout
    history = (get_json(cluster, "helmrelease", "blog", "-n", ns) or {})["status"]["history"]
    assert history[0]["chartVersion"] == "1.1.0"

    suspended = headwater(cluster, "suspend", "hr", "blog", "-n", ns)
    assert suspended.returncode == 0, suspended.stderr
    assert (get_json(cluster, "helmrelease", "blog", "-n", ns) or {})["spec"]["suspend"] is True
    resumed = headwater(cluster, "resume", "hr", "blog", "-n", ns)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (get_json(cluster, "helmrelease", "blog", "-n", ns) or {})["spec"]["suspend"] is False

    listed = headwater(cluster, "events", "--for", "HelmRelease/blog", "-n", ns, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    involved = {e["involvedObject"]["kind"] for e in json.loads(listed.stdout)["items"]}
    assert involved == {"HelmRelease", "HelmChart"}
