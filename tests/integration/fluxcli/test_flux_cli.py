"""Flux's own CLI reads and drives headwater's objects, because the status is Flux's.

The real `flux` binary (built from flux2's Go module, `tests.support.fluxcli`) runs
against the real control plane while headwater's controllers reconcile. The app is
the shape a Flux user has: a GitRepository `app` on a real git server, a
Kustomization `root` whose path holds a second Kustomization, `web`, which applies
Deployment `web` and ConfigMap `settings`. The helm test releases wordpress from a
real chart repository through a HelmRepository and the HelmChart headwater makes.
Every command runs as a user runs it: KUBECONFIG in the environment and --namespace.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import yaml

from tests.support.apps import App, sync_app, web_files
from tests.support.builders import git_repository, helm_release, kustomization
from tests.support.charts import Charts
from tests.support.cluster import TestCluster, apply, kubectl_json
from tests.support.controllers import RunningControllers
from tests.support.fluxcli import FluxCLI
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    condition,
    is_ready,
    wait_for_helmrelease,
    wait_for_kustomization,
    wait_for_object,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def app(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> App:
    return sync_app(cluster, namespace, git_repos, git_http_server, ref={"branch": "master"})


def table(output: str) -> dict[str, list[str]]:
    """A `flux get` table (tab-separated cells), by its first column; "NAME" is the header."""
    rows = [[cell.strip() for cell in line.split("\t")] for line in output.splitlines()]
    by_name = {row[0]: row for row in rows if row and row[0]}
    assert len(by_name) == len(rows), output
    return by_name


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    found = condition(obj, "Ready")
    assert found is not None, obj.get("status")
    return found


def trace_sections(output: str) -> list[dict[str, str]]:
    """`flux trace` output: one dict of `Key: value` lines per `---` section."""
    sections = []
    for part in output.split("---"):
        fields: dict[str, str] = {}
        for line in part.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in fields:
                fields[key.strip()] = value.strip()
        sections.append(fields)
    return sections


def short(text: str) -> str:
    """`text` as `flux get` prints it: each hex digest cut to 8 characters."""
    return re.sub(r"\b([a-f0-9]{8})[a-f0-9]{32,120}\b", r"\1", text)


def test_get_shows_ready_revision_and_message_as_headwater_wrote_them(
    cluster: TestCluster, app: App, flux: FluxCLI
) -> None:
    ns = app.namespace
    apply(cluster, kustomization(ns, "broken", "missing-source", "./web"))
    broken = wait_for_kustomization(
        cluster, ns, "broken", is_ready("False"), timeout=60, what="broken not ready"
    )

    sources = flux("get", "sources", "git", namespace=ns)
    assert sources.returncode == 0, sources.stderr
    rows = table(sources.stdout)
    assert rows["NAME"] == ["NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]
    git = kubectl_json(cluster, "get", "gitrepository", "app", "-n", ns)
    message = short(ready(git)["message"])
    assert rows["app"] == ["app", short(app.revision), "False", "True", message, ""]
    assert message == f"stored artifact for revision '{short(app.revision)}'"

    shown = flux("get", "kustomizations", namespace=ns)
    assert shown.returncode == 0, shown.stderr
    rows = table(shown.stdout)
    for name in ("root", "web"):
        applied_message = f"Applied revision: {short(app.revision)}"
        assert rows[name] == [name, short(app.revision), "False", "True", applied_message, ""]
    assert rows["broken"] == ["broken", "", "False", "False", ready(broken)["message"], ""]

    failing = flux("get", "kustomizations", "--status-selector", "ready=false", namespace=ns)
    assert failing.returncode == 0, failing.stderr
    assert set(table(failing.stdout)) == {"NAME", "broken"}

    everything = flux("get", "all", namespace=ns)
    assert everything.returncode == 0, everything.stderr
    names = {
        cells[0]
        for line in everything.stdout.splitlines()
        if (cells := line.split()) and "/" in cells[0]
    }
    assert names == {
        "gitrepository/app",
        "kustomization/root",
        "kustomization/web",
        "kustomization/broken",
    }, everything.stdout


def test_reconcile_with_source_fetches_and_applies_a_new_commit(
    cluster: TestCluster, app: App, flux: FluxCLI
) -> None:
    ns = app.namespace
    new = app.repo.commit(web_files(4), "scale web to 4")

    result = flux("reconcile", "kustomization", "web", "--with-source", namespace=ns)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stderr  # flux logs its steps on stderr
    assert f"annotating GitRepository app in {ns} namespace" in out
    assert f"fetched revision master@sha1:{new}" in out
    assert f"annotating Kustomization web in {ns} namespace" in out
    assert f"applied revision master@sha1:{new}" in out
    assert out.index("fetched revision") < out.index("annotating Kustomization web")
    assert kubectl_json(cluster, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 4
    ks = kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)
    assert ks["status"]["lastAppliedRevision"] == f"master@sha1:{new}"
    annotation = ks["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
    assert ks["status"]["lastHandledReconcileAt"] == annotation


def test_suspend_holds_a_kustomization_and_resume_waits_for_it_to_apply(
    cluster: TestCluster, app: App, flux: FluxCLI
) -> None:
    ns = app.namespace
    suspended = flux("suspend", "kustomization", "web", namespace=ns)
    assert suspended.returncode == 0, suspended.stderr
    assert "suspending kustomization web" in suspended.stderr
    ks = kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)
    assert ks["spec"]["suspend"] is True
    shown = flux("get", "kustomizations", "web", namespace=ns)
    assert table(shown.stdout)["web"][2] == "True", shown.stdout

    refused = flux("reconcile", "kustomization", "web", namespace=ns)
    assert refused.returncode != 0
    assert "resource is suspended" in refused.stderr

    new = app.repo.commit(web_files(3), "scale web to 3")
    fetched = flux("reconcile", "source", "git", "app", namespace=ns)
    assert fetched.returncode == 0, fetched.stderr
    assert f"fetched revision master@sha1:{new}" in fetched.stderr
    time.sleep(5)  # time for a (wrong) apply of the new revision to show
    held = kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)
    assert held["status"]["lastAppliedRevision"] == app.revision
    assert kubectl_json(cluster, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 2

    resumed = flux("resume", "kustomization", "web", namespace=ns)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming kustomization web" in resumed.stderr
    assert "Kustomization web reconciliation completed" in resumed.stderr
    assert f"applied revision master@sha1:{new}" in resumed.stderr
    assert kubectl_json(cluster, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 3


def test_tree_lists_the_inventory_with_the_nested_kustomization(
    cluster: TestCluster, app: App, flux: FluxCLI
) -> None:
    ns = app.namespace
    shown = flux("tree", "kustomization", "root", namespace=ns)
    assert shown.returncode == 0, shown.stderr
    lines = [line.strip("│├└─ ") for line in shown.stdout.splitlines() if line.strip()]
    assert lines == [
        f"Kustomization/{ns}/root",
        f"Kustomization/{ns}/web",
        f"ConfigMap/{ns}/settings",
        f"Deployment/{ns}/web",
    ], shown.stdout

    as_json = flux("tree", "kustomization", "root", "-o", "json", namespace=ns)
    assert as_json.returncode == 0, as_json.stderr
    tree = json.loads(as_json.stdout)

    def node(entry: dict[str, Any]) -> tuple[str, str, str, str]:
        found = entry["resource"]
        kind = found["GroupKind"]
        return (kind["Group"], kind["Kind"], found["Namespace"], found["Name"])

    assert node(tree) == ("kustomize.toolkit.fluxcd.io", "Kustomization", ns, "root")
    (child,) = tree["resources"]
    assert node(child) == ("kustomize.toolkit.fluxcd.io", "Kustomization", ns, "web")
    assert [node(leaf) for leaf in child["resources"]] == [
        ("", "ConfigMap", ns, "settings"),
        ("apps", "Deployment", ns, "web"),
    ]


def test_events_for_a_kustomization_include_its_source(
    cluster: TestCluster, app: App, flux: FluxCLI
) -> None:
    ns = app.namespace
    shown = flux("events", "--for", "Kustomization/web", namespace=ns)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    web = [line for line in lines if "Kustomization/web" in line]
    assert any(
        "Normal" in line and "ReconciliationSucceeded" in line and "Reconciliation finished" in line
        for line in web
    ), shown.stdout
    # `--for` adds the events of the Kustomization's source.
    assert any("GitRepository/app" in line and "NewArtifact" in line for line in lines), (
        shown.stdout
    )
    assert not any("Kustomization/root" in line for line in lines), shown.stdout


def test_trace_names_the_kustomization_source_and_revision(
    cluster: TestCluster, app: App, flux: FluxCLI, git_http_server: GitHttpServer
) -> None:
    ns = app.namespace
    traced = flux("trace", "deployment/web", namespace=ns)
    assert traced.returncode == 0, traced.stderr
    obj, ks, source = trace_sections(traced.stdout)
    assert obj["Object"] == "Deployment/web"
    assert obj["Status"] == "Managed by Flux"
    assert ks["Kustomization"] == "web"
    assert ks["Namespace"] == ns
    assert ks["Path"] == "./web"
    assert ks["Revision"] == app.revision
    assert ks["Status"].startswith("Last reconciled at")
    assert ks["Message"] == f"Applied revision: {app.revision}"
    assert source["GitRepository"] == "app"
    assert source["URL"] == git_http_server.url(app.repo.name)
    assert source["Branch"] == "master"
    assert source["Revision"] == app.revision
    assert source["Status"].startswith("Last reconciled at")

    elsewhere = flux("trace", "configmap/kube-root-ca.crt", namespace=ns)
    assert "object not managed by Flux" in elsewhere.stderr


def test_helm_release_through_get_reconcile_suspend_resume_tree_and_trace(
    cluster: TestCluster,
    charts: Charts,
    namespace: str,
    flux: FluxCLI,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    """HelmRelease `blog` comes from git, applied by Kustomization `releases`."""
    ns = namespace
    charts.publish("1.0.0")
    repo = git_repos.create()
    blog = helm_release(None, "blog", chart=charts.template(version="*"))
    repo.commit({"releases/blog.yaml": yaml.safe_dump(blog)})
    apply(
        cluster,
        git_repository(ns, "releases", git_http_server.url(repo.name)),
        kustomization(ns, "releases", "releases", "./releases", targetNamespace=ns),
    )
    release = wait_for_helmrelease(
        cluster, ns, "blog", is_ready(), timeout=150, what="first install"
    )
    chart_name = f"{ns}-blog"

    shown = flux("get", "helmreleases", namespace=ns)
    assert shown.returncode == 0, shown.stderr
    assert table(shown.stdout)["blog"] == [
        "blog",
        "1.0.0",
        "False",
        "True",
        short(ready(release)["message"]),
        "",
    ]
    repos = flux("get", "sources", "helm", namespace=ns)
    assert repos.returncode == 0, repos.stderr
    repository = kubectl_json(cluster, "get", "helmrepository", "charts", "-n", ns)
    assert table(repos.stdout)["charts"] == [
        "charts",
        short(repository["status"]["artifact"]["revision"]),
        "False",
        "True",
        short(ready(repository)["message"]),
        "",
    ]
    chart = flux("get", "sources", "chart", namespace=ns)
    assert chart.returncode == 0, chart.stderr
    assert table(chart.stdout)[chart_name][1:4] == ["1.0.0", "False", "True"]

    charts.publish("1.1.0")
    upgraded = flux("reconcile", "helmrelease", "blog", "--with-source", namespace=ns)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert f"annotating HelmChart {chart_name} in {ns} namespace" in upgraded.stderr
    assert "fetched revision 1.1.0" in upgraded.stderr
    assert "applied revision 1.1.0" in upgraded.stderr
    release = kubectl_json(cluster, "get", "helmrelease", "blog", "-n", ns)
    assert release["status"]["lastAttemptedRevision"] == "1.1.0"

    suspended = flux("suspend", "helmrelease", "blog", namespace=ns)
    assert suspended.returncode == 0, suspended.stderr
    wait_for_object(
        cluster, ns, "helmrelease", "blog", lambda hr: hr["spec"].get("suspend") is True
    )
    resumed = flux("resume", "helmrelease", "blog", namespace=ns)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "HelmRelease blog reconciliation completed" in resumed.stderr

    events = flux("events", "--for", "HelmRelease/blog", namespace=ns)
    assert events.returncode == 0, events.stderr
    assert any(
        "HelmRelease/blog" in line and "UpgradeSucceeded" in line
        for line in events.stdout.splitlines()
    ), events.stdout

    tree = flux("tree", "kustomization", "releases", namespace=ns)
    assert tree.returncode == 0, tree.stderr
    lines = [line.strip("│├└─ ") for line in tree.stdout.splitlines() if line.strip()]
    # The release's objects come from helm's own storage Secret, in helm's order.
    assert lines[:2] == [f"Kustomization/{ns}/releases", f"HelmRelease/{ns}/blog"], tree.stdout
    assert sorted(lines[2:]) == [
        f"Deployment/{ns}/blog-db",
        f"Deployment/{ns}/blog-web",
        f"Service/{ns}/blog-db",
    ], tree.stdout

    release = kubectl_json(cluster, "get", "helmrelease", "blog", "-n", ns)
    traced = flux("trace", "deployment/blog-web", namespace=ns)
    assert traced.returncode == 0, traced.stderr
    sections = trace_sections(traced.stdout)
    assert len(sections) == 4, traced.stdout + traced.stderr
    obj, hr, chart_section, repository = sections
    assert obj["Object"] == "Deployment/blog-web"
    assert (hr["HelmRelease"], hr["Namespace"], hr["Revision"]) == ("blog", ns, "1.1.0")
    assert hr["Message"] == ready(release)["message"]
    assert (chart_section["HelmChart"], chart_section["Chart"]) == (chart_name, "wordpress")
    assert chart_section["Revision"] == "1.1.0"
    assert (repository["HelmRepository"], repository["URL"]) == ("charts", charts.server.url)
