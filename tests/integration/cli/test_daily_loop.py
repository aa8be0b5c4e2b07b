"""The CLI's daily verbs against the real control plane, run as a user runs them.

Each test syncs the same small app from a real git server: a Kustomization `root`
whose path holds a second Kustomization, `web`, which applies a Deployment and
a ConfigMap. The CLI runs as a separate process (`python -m controllers.cli`)
with the test cluster's kubeconfig, piped, so its output is the plain one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.apps import App, sync_app, web_files
from tests.support.builders import kustomization
from tests.support.cli import headwater, start_headwater
from tests.support.cluster import TestCluster, apply, get_json, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import events_for, wait_ready

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def app(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> App:
    return sync_app(cluster, namespace, git_repos, git_http_server)


def test_get_shows_each_kind_as_flux_does_and_parses_as_json(
    cluster: TestCluster, app: App
) -> None:
    ns = app.namespace
    revision = f"master@sha1:{app.commit}"
    apply(
        cluster,
        kustomization(ns, "broken", "missing-source", "./web"),
        builders.secret(ns, "webhook-token", {"token": "s3cret-token-value"}),
        builders.receiver(ns, "hook", "generic", "webhook-token"),
        builders.provider(ns, "chat", type="generic", address="http://127.0.0.1:9/hook"),
        builders.alert(ns, "ops", "chat"),
    )
    wait_ready(cluster, ns, "kustomization", "broken", status="False", timeout=60)
    wait_ready(cluster, ns, "receiver", "hook", timeout=60)

    table = headwater(cluster, "get", "ks", "-n", ns)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE", "AGE"]
    web = next(line.split() for line in lines if line.startswith("web "))
    assert web[:4] == ["web", revision, "False", "True"]
    assert f"Applied revision: {revision}" in table.stdout

    failing = headwater(cluster, "get", "kustomizations", "-n", ns, "--status-selector=ready=false")
    assert failing.returncode == 0, failing.stderr
    names = [line.split()[0] for line in failing.stdout.splitlines()[1:] if line.strip()]
    assert names == ["broken"]

    source = headwater(cluster, "get", "gitrepo", "app", "-n", ns, "-o", "json")
    assert source.returncode == 0, source.stderr
    parsed = json.loads(source.stdout)
    assert parsed["kind"] == "GitRepository"
    assert parsed["status"]["artifact"]["revision"] == revision

    everything = headwater(cluster, "get", "all", "-n", ns, "-o", "json")
    assert everything.returncode == 0, everything.stderr
    kinds = {
        (item["kind"], item["metadata"]["name"]) for item in json.loads(everything.stdout)["items"]
    }
    assert kinds == {
        ("GitRepository", "app"),
        ("Kustomization", "root"),
        ("Kustomization", "web"),
        ("Kustomization", "broken"),
        ("Receiver", "hook"),
        ("Alert", "ops"),
        ("Provider", "chat"),
    }

    shown = headwater(cluster, "get", "all", "-A")
    assert shown.returncode == 0, shown.stderr
    assert "Receiver" in shown.stdout and "hook" in shown.stdout
    assert ns in shown.stdout  # -A adds the NAMESPACE column
    assert "s3cret-token-value" not in shown.stdout

    missing = headwater(cluster, "get", "gitrepository", "nope", "-n", ns)
    assert missing.returncode == 1
    assert f"GitRepository {ns}/nope not found" in missing.stderr
    unknown = headwater(cluster, "get", "widgets", "-n", ns)
    assert unknown.returncode == 2
    assert "unknown kind 'widgets'" in unknown.stderr


def test_get_watch_follows_a_change_until_the_timeout(cluster: TestCluster, app: App) -> None:
    ns = app.namespace
    started = time.monotonic()
    watcher = start_headwater(cluster, "get", "ks", "web", "-n", ns, "--watch", "--timeout", "12s")
    try:
        assert watcher.stdout is not None
        # The table is printed once the object is read; the watch follows from there, so a
        # change made after it shows (however long the CLI took to start).
        header, first = watcher.stdout.readline(), watcher.stdout.readline()
        assert header.split()[:1] == ["NAME"], header
        assert first.split()[0:1] + first.split()[2:3] == ["web", "False"], first
        cluster.kubectl(
            "patch", "kustomization", "web", "-n", ns, "--type=merge",
            "-p", '{"spec":{"suspend":true}}',
        )  # fmt: skip
        rest, errors = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    elapsed = time.monotonic() - started
    assert watcher.returncode == 0, errors
    rows = [line.split() for line in rest.splitlines() if line.strip()]
    assert any(row[0] == "web" and row[2] == "True" for row in rows), rest
    # It ran until its --timeout, not until the change.
    assert 10 <= elapsed < 40


def test_reconcile_with_source_applies_a_new_commit(cluster: TestCluster, app: App) -> None:
    ns = app.namespace
    new = app.repo.commit(web_files(4), "scale web to 4")

    result = headwater(cluster, "reconcile", "ks", "web", "-n", ns, "--with-source")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"annotating GitRepository {ns}/app" in out
    assert f"fetched revision master@sha1:{new}" in out
    assert f"annotating Kustomization {ns}/web" in out
    assert f"applied revision master@sha1:{new}" in out
    # The steps come in order: the source first, then the Kustomization.
    assert out.index("fetched revision") < out.index(f"annotating Kustomization {ns}/web")
    deployment = kubectl_json(cluster, "get", "deployment", "web", "-n", ns)
    assert deployment["spec"]["replicas"] == 4
    ks = kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)
    assert ks["status"]["lastAppliedRevision"] == f"master@sha1:{new}"

    as_json = headwater(cluster, "reconcile", "kustomization", "web", "-n", ns, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["result"] == "ready"
    assert report["revision"] == f"master@sha1:{new}"

    # A Kustomization whose source does not exist fails: exit 1, with the reason.
    apply(cluster, kustomization(ns, "broken", "missing-source", "./web"))
    wait_ready(cluster, ns, "kustomization", "broken", status="False", timeout=60)
    failed = headwater(cluster, "reconcile", "ks", "broken", "-n", ns, "--timeout", "60s")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "missing-source" in failed.stdout

    # A timeout too short for any controller ends with exit 3 and says so.
    late = headwater(cluster, "reconcile", "gitrepository", "app", "-n", ns, "--timeout", "0.001")
    assert late.returncode == 3, late.stdout + late.stderr
    assert "timed out" in late.stdout


def test_reconcile_shows_the_health_wait_and_fails_with_its_reason(
    cluster: TestCluster, app: App
) -> None:
    ns = app.namespace
    stuck = builders.deployment(None, "stuck", pod={"nodeSelector": {"no-such-node": "true"}})
    app.repo.commit({"stuck/stuck.yaml": yaml.safe_dump(stuck)}, "a Deployment that never runs")
    headwater(cluster, "reconcile", "gitrepository", "app", "-n", ns)
    apply(
        cluster,
        kustomization(ns, "stuck", "app", "./stuck", targetNamespace=ns, wait=True, timeout="8s"),
    )
    # The first attempt fails its health wait and keeps the inventory it applied.
    wait_ready(cluster, ns, "kustomization", "stuck", status="False", timeout=90)

    result = headwater(cluster, "reconcile", "ks", "stuck", "-n", ns, "--timeout", "90s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"health: Deployment/{ns}/stuck InProgress" in result.stdout
    assert f"Kustomization {ns}/stuck: timeout waiting for: [Deployment/{ns}/stuck" in result.stdout


def test_suspend_and_resume(cluster: TestCluster, app: App) -> None:
    ns = app.namespace
    suspended = headwater(cluster, "suspend", "kustomization", "web", "-n", ns)
    assert suspended.returncode == 0, suspended.stderr
    assert f"Kustomization {ns}/web suspended" in suspended.stdout
    assert kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)["spec"]["suspend"] is True
    shown = headwater(cluster, "get", "ks", "web", "-n", ns)
    assert shown.stdout.splitlines()[1].split()[2] == "True"

    refused = headwater(cluster, "reconcile", "ks", "web", "-n", ns)
    assert refused.returncode == 1
    assert "is suspended" in refused.stderr

    resumed = headwater(cluster, "resume", "ks", "web", "-n", ns, "-o", "json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    [report] = json.loads(resumed.stdout)
    assert report["result"] == "ready" and report["suspended"] is False
    live = kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)
    assert live["spec"]["suspend"] is False
    assert (
        live["status"]["lastHandledReconcileAt"]
        == (live["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"])
    )


def test_delete_asks_first(cluster: TestCluster, app: App) -> None:
    ns = app.namespace
    apply(cluster, kustomization(ns, "extra", "app", "./web", targetNamespace=ns, prune=False))

    declined = headwater(cluster, "delete", "ks", "extra", "-n", ns, input="n\n")
    assert declined.returncode == 1
    assert "not deleted" in declined.stderr
    assert get_json(cluster, "kustomization", "extra", "-n", ns) is not None
    closed = headwater(cluster, "delete", "ks", "extra", "-n", ns, input="")
    assert closed.returncode == 1
    assert get_json(cluster, "kustomization", "extra", "-n", ns) is not None

    confirmed = headwater(cluster, "delete", "ks", "extra", "-n", ns, input="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert f"Kustomization {ns}/extra deleted" in confirmed.stdout
    wait_for(
        lambda: get_json(cluster, "kustomization", "extra", "-n", ns) is None,
        what="the Kustomization gone",
    )
    skipped = headwater(cluster, "delete", "gitrepository", "app", "-n", ns, "--yes")
    assert skipped.returncode == 0, skipped.stderr
    gone = headwater(cluster, "delete", "gitrepository", "app", "-n", ns, "--yes")
    assert gone.returncode == 1
    assert "not found" in gone.stderr


def test_tree_opens_the_nested_kustomization(cluster: TestCluster, app: App) -> None:
    ns = app.namespace
    wait_for(
        lambda: (
            (kubectl_json(cluster, "get", "deployment", "web", "-n", ns).get("status") or {}).get(
                "availableReplicas"
            )
            == 2
        ),
        timeout=90,
        what="2 available replicas",
    )
    result = headwater(cluster, "tree", "kustomization", "root", "-n", ns, "-o", "json")
    assert result.returncode == 0, result.stderr
    root = json.loads(result.stdout)
    assert (root["kind"], root["name"], root["status"]) == ("Kustomization", "root", "Current")
    [child] = root["children"]
    assert (child["kind"], child["name"], child["status"]) == ("Kustomization", "web", "Current")
    leaves = {(leaf["kind"], leaf["name"]): leaf for leaf in child["children"]}
    assert set(leaves) == {("Deployment", "web"), ("ConfigMap", "settings")}
    assert leaves[("Deployment", "web")]["status"] == "Current"
    assert "Replicas: 2" in leaves[("Deployment", "web")]["message"]

    # An inventory entry whose object is gone. (Deleting one by hand does not do: the
    # controller heals it, even while suspended.) The child is suspended so the status
    # written here stays.
    cluster.kubectl(
        "patch", "kustomization", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    ghost = {"id": f"{ns}_ghost__ConfigMap", "v": "v1"}
    cluster.kubectl(
        "patch",
        "kustomization",
        "web",
        "-n",
        ns,
        "--subresource=status",
        "--type=json",
        "-p",
        json.dumps([{"op": "add", "path": "/status/inventory/entries/-", "value": ghost}]),
    )
    text = headwater(cluster, "tree", "ks", "root", "-n", ns)
    assert text.returncode == 0, text.stderr
    assert f"Kustomization/{ns}/web  Current" in text.stdout
    assert f"Deployment/{ns}/web  Current" in text.stdout
    assert f"ConfigMap/{ns}/settings  Current" in text.stdout
    assert f"ConfigMap/{ns}/ghost  NotFound" in text.stdout
    # Nesting is drawn: the Deployment sits deeper than the child Kustomization.
    lines = text.stdout.splitlines()
    child_line = next(line for line in lines if f"Kustomization/{ns}/web" in line)
    leaf_line = next(line for line in lines if f"Deployment/{ns}/web" in line)
    assert leaf_line.index("Deployment") > child_line.index("Kustomization")


def test_trace_names_the_kustomization_source_revision_and_drift(
    cluster: TestCluster, app: App
) -> None:
    ns = app.namespace
    revision = f"master@sha1:{app.commit}"
    result = headwater(cluster, "trace", "deployment", "web", "-n", ns, "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["managed"] is True
    assert report["kustomization"]["name"] == "web"
    assert report["kustomization"]["revision"] == revision
    assert report["kustomization"]["inInventory"] is True
    assert report["source"]["kind"] == "GitRepository" and report["source"]["name"] == "app"
    assert report["source"]["revision"] == revision
    assert report["drift"] == []

    cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=5")
    wait_for(
        lambda: events_for(cluster, ns, "Kustomization", "web", reason="DriftDetected"),
        timeout=60,
        what="a DriftDetected event",
    )
    text = headwater(cluster, "trace", "deploy", "web", "-n", ns)
    assert text.returncode == 0, text.stderr
    assert "Kustomization:" in text.stdout and "GitRepository:" in text.stdout
    assert revision in text.stdout
    assert "corrected 1 time(s)" in text.stdout
    assert "spec.replicas" in text.stdout
    # The ConfigMap was not touched: its trace reports no drift.
    untouched = json.loads(
        headwater(cluster, "trace", "cm", "settings", "-n", ns, "-o", "json").stdout
    )
    assert untouched["drift"] == []

    unmanaged = headwater(cluster, "trace", "configmap", "kube-root-ca.crt", "-n", ns)
    assert unmanaged.returncode == 1
    assert "not managed by headwater" in unmanaged.stdout


def test_events_for_a_kustomization_include_its_source(cluster: TestCluster, app: App) -> None:
    ns = app.namespace
    result = headwater(cluster, "events", "--for", "Kustomization/web", "-n", ns, "-o", "json")
    assert result.returncode == 0, result.stderr
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    involved = {(e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in items}
    assert ("Kustomization", "web") in involved
    assert ("GitRepository", "app") in involved
    assert ("Kustomization", "root") not in involved

    table = headwater(cluster, "events", "-n", ns)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == [
        "LAST",
        "SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "MESSAGE",
    ]
    assert "Kustomization/root" in table.stdout
    assert "ReconciliationSucceeded" in table.stdout
