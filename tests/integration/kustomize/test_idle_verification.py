"""A periodic no-op reconcile the inventory watch vouches for dry-runs nothing.

Each test runs a controller instance of its own (a shard serving only its namespace),
with a 3s Kustomization interval, and reads what a user would: the controller's
`headwater_apply_verifications_total` (full vs skipped), kube-apiserver's own count of
dry-run and real applies of PodTemplates (a kind only these tests apply), the applied
objects' resourceVersions, and the controller's debug log saying why a full
verification ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import builders
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.faults import FaultGate, shard
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.metrics import sample_sum, sample_value, scrape
from tests.support.status import applied, events_for, request_reconcile, wait_for_kustomization

pytestmark = pytest.mark.integration

INTERVAL = "3s"
VERIFICATIONS = "headwater_apply_verifications_total"
POD_TEMPLATE = {
    "apiVersion": "v1",
    "kind": "PodTemplate",
    "metadata": {"name": "worker"},
    "template": {"spec": {"containers": [{"name": "worker", "image": "busybox:1.36"}]}},
}
MANIFESTS = {
    "deploy/settings.yaml": builders.configmap_file("settings", mode="fast"),
    "deploy/worker.yaml": yaml.safe_dump(POD_TEMPLATE),
}


def verifications(controllers: RunningControllers, namespace: str, result: str) -> int:
    value = sample_value(
        scrape(controllers.metrics_url),
        VERIFICATIONS,
        {"kind": "Kustomization", "name": "app", "namespace": namespace, "result": result},
    )
    return int(value or 0)


def pod_template_applies(cluster: TestCluster) -> tuple[int, int]:
    """(dry-run applies, applies) of PodTemplates, as kube-apiserver counted them."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    labels = {"verb": "APPLY", "resource": "podtemplates"}
    dry = sample_sum(text, "apiserver_request_total", {**labels, "dry_run": "All"})
    every = sample_sum(text, "apiserver_request_total", labels)
    return int(dry), int(every - dry)


def versions(cluster: TestCluster, namespace: str) -> dict[str, str]:
    return {
        f"{kind}/{name}": kubectl_json(cluster, "get", kind, name, "-n", namespace)["metadata"][
            "resourceVersion"
        ]
        for kind, name in (("configmap", "settings"), ("podtemplate", "worker"), ("ks", "app"))
    }


def full_reasons(controllers: RunningControllers, namespace: str) -> list[str]:
    """Why each full verification of the test's Kustomization ran, oldest first."""
    prefix = f"full verification of {namespace}/app: "
    found = []
    for line in controllers.logs().splitlines():
        if prefix in line:
            found.append(json.loads(line)["msg"].split(prefix, 1)[1])
    return found


def skipped_more(controllers: RunningControllers, namespace: str, than: int, count: int) -> None:
    wait_for(
        lambda: verifications(controllers, namespace, "skipped") >= than + count,
        timeout=90,
        what=f"{count} more periodic reconciles without a dry-run",
    )


@pytest.fixture
def own_env(namespace: str) -> dict[str, str]:
    _, env = shard(namespace)
    return env


def deploy(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    labels, _ = shard(namespace)
    repo = git_repos.create()
    commit = repo.commit(MANIFESTS)
    apply(
        cluster,
        builders.git_repository(
            namespace, "repo", git_http_server.url(repo.name), interval="1h", metadata=labels
        ),
        builders.kustomization(
            namespace,
            "app",
            "repo",
            "./deploy",
            targetNamespace=namespace,
            interval=INTERVAL,
            metadata=labels,
        ),
    )
    wait_for_kustomization(cluster, namespace, "app", applied(commit))


@pytest.fixture
def own(
    cluster: TestCluster, own_env: dict[str, str], tmp_path: Path
) -> Iterator[RunningControllers]:
    with run_controllers(cluster.kubeconfig, tmp_path / "ctl", extra_env=own_env) as running:
        yield running


def test_a_no_op_with_a_healthy_watch_dry_runs_and_writes_nothing_until_asked_or_edited(
    cluster: TestCluster,
    namespace: str,
    own: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    deploy(cluster, namespace, git_repos, git_http_server)
    # The first apply's own writes come back as watch events: the next reconcile
    # verifies in full, and from the one after, the watch vouches.
    skipped_more(own, namespace, 0, 1)
    full = verifications(own, namespace, "full")
    skipped = verifications(own, namespace, "skipped")
    before, live = pod_template_applies(cluster), versions(cluster, namespace)

    skipped_more(own, namespace, skipped, 3)
    assert verifications(own, namespace, "full") == full
    assert pod_template_applies(cluster) == before, "no dry-run, no apply"
    assert versions(cluster, namespace) == live, "no write, status included"
    ks = kubectl_json(cluster, "get", "kustomization", "app", "-n", namespace)
    ready = next(c for c in ks["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"

    # An edit between intervals is still healed (the watch wakes a full reconcile).
    cluster.kubectl(
        "patch", "configmap", "settings", "-n", namespace, "--field-manager=intruder",
        "-p", '{"data":{"mode":"slow"}}',
    )  # fmt: skip
    wait_for(
        lambda: (
            kubectl_json(cluster, "get", "configmap", "settings", "-n", namespace)["data"]
            == {"mode": "fast"}
        ),
        timeout=30,
        what="the ConfigMap healed",
    )
    drift = wait_for(
        lambda: events_for(cluster, namespace, "Kustomization", "app", "DriftDetected"),
        what="a DriftDetected event",
    )
    assert 'data.mode: "slow" → "fast"' in drift[-1]["message"]
    assert "an applied object changed since the last full verification" in full_reasons(
        own, namespace
    )

    # `flux reconcile` / `headwater reconcile`: a full verification, every time.
    full = verifications(own, namespace, "full")
    dry_runs, _ = pod_template_applies(cluster)
    token = request_reconcile(cluster, namespace, "kustomization", "app")
    wait_for_kustomization(
        cluster,
        namespace,
        "app",
        lambda obj: obj["status"].get("lastHandledReconcileAt") == token,
        what="the requested reconcile handled",
    )
    assert verifications(own, namespace, "full") >= full + 1
    assert pod_template_applies(cluster)[0] >= dry_runs + 1
    assert full_reasons(own, namespace)[-1] == (
        "reconcile requested (reconcile.fluxcd.io/requestedAt)"
    )
    # ... and the periodic ones after it skip again.
    skipped_more(own, namespace, verifications(own, namespace, "skipped"), 1)


@pytest.fixture
def gated(
    cluster: TestCluster, own_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[RunningControllers, FaultGate]]:
    """The controller reaches kube-apiserver through a TCP gate the test can cut."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    port = int(server.rsplit(":", 1)[1])
    with FaultGate(port) as gate:
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{gate.port}"
        kubeconfig = tmp_path / "gated-kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        with run_controllers(kubeconfig, tmp_path / "ctl", extra_env=own_env) as running:
            yield running, gate


def test_a_watch_gap_forces_the_full_verification(
    cluster: TestCluster,
    namespace: str,
    gated: tuple[RunningControllers, FaultGate],
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    own, gate = gated
    deploy(cluster, namespace, git_repos, git_http_server)
    skipped_more(own, namespace, 0, 1)
    full = verifications(own, namespace, "full")
    dry_runs, _ = pod_template_applies(cluster)
    logged = len(full_reasons(own, namespace))

    # Every open connection is cut, the watches' included; they reconnect and list again.
    gate.down()
    time.sleep(1.5)  # the gate ends open connections within 0.5 s
    gate.pass_through()
    reason = wait_for(
        lambda: next(
            (r for r in full_reasons(own, namespace)[logged:] if "the watch of" in r), None
        ),
        timeout=90,
        what="a full verification because of the watch gap",
    )
    assert "restarted since" in reason or "not running" in reason, reason
    wait_for(lambda: verifications(own, namespace, "full") > full, what="counted as full")
    assert pod_template_applies(cluster)[0] > dry_runs
    # Nothing changed: the full one finds everything as built, and skipping resumes.
    skipped_more(own, namespace, verifications(own, namespace, "skipped"), 1)
    assert not events_for(cluster, namespace, "Kustomization", "app", "DriftDetected")


def test_the_full_verify_interval_forces_the_full_verification(
    cluster: TestCluster,
    namespace: str,
    own_env: dict[str, str],
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    env = {**own_env, "HEADWATER_FULL_VERIFY_INTERVAL": "15s"}
    with run_controllers(cluster.kubeconfig, tmp_path / "ctl", extra_env=env) as own:
        deploy(cluster, namespace, git_repos, git_http_server)
        skipped_more(own, namespace, 0, 1)
        full = verifications(own, namespace, "full")
        wait_for(
            lambda: verifications(own, namespace, "full") > full,
            timeout=90,
            what="a full verification once the interval passed",
        )
        assert "the last full verification was" in full_reasons(own, namespace)[-1]
        assert verifications(own, namespace, "skipped") >= 2
