"""spec.driftDetection: a release's objects are watched; drift is healed in seconds or reported.

The real chain: a chart repository on loopback, a HelmRepository, a HelmRelease
with `spec.chart`; the edits are the ones a user makes, `kubectl delete` and
`kubectl scale`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.builders import deployment, helm_release, helm_repository
from tests.support.cluster import TestCluster, apply, get_json, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import ChartRepo, ChartRepoServer
from tests.support.metrics import sample_value, scrape
from tests.support.status import condition, events_for, get_object, wait_ready

pytestmark = pytest.mark.integration

WEB = yaml.safe_dump(deployment(None, "web", replicas=2, image="example/web:1", container="web"))
# Far sooner than any interval (10m): only the watch can explain it.
HEALED_WITHIN = 20.0
DRIFT_CORRECTIONS = "headwater_drift_corrections_total"


@pytest.fixture
def chart_repo(tmp_path: Path) -> Iterator[tuple[ChartRepo, ChartRepoServer]]:
    repo = ChartRepo(tmp_path / "charts")
    repo.add("app", "1.0.0", extra_files={"templates/web.yaml": WEB})
    with ChartRepoServer(repo) as server:
        yield repo, server


def _install(cluster: TestCluster, namespace: str, url: str, drift: dict[str, Any]) -> None:
    chart = {"spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}
    apply(
        cluster,
        helm_repository(namespace, "charts", url),
        helm_release(
            namespace, "web", chart=chart, install={"disableWait": True}, driftDetection=drift
        ),
    )
    wait_ready(cluster, namespace, "HelmRelease", "web", timeout=90)


def _drift_events(cluster: TestCluster, namespace: str) -> list[dict[str, Any]]:
    return events_for(cluster, namespace, "HelmRelease", "web", reason="DriftDetected")


def test_a_deleted_deployment_is_back_in_seconds_with_an_event_naming_it(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    _, server = chart_repo
    _install(cluster, namespace, server.url, {"mode": "enabled"})
    release = get_object(cluster, namespace, "HelmRelease", "web")
    assert condition(release, "Drifted")["reason"] == "NoDriftDetected"  # type: ignore[index]
    uid = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["metadata"]["uid"]

    cluster.kubectl("delete", "deployment", "web", "-n", namespace)
    deleted_at = time.monotonic()

    def recreated() -> dict[str, Any] | None:
        live = get_json(cluster, "deployment", "web", "-n", namespace)
        return live if live is not None and live["metadata"]["uid"] != uid else None

    try:
        live = wait_for(recreated, timeout=HEALED_WITHIN, what="the deployment to be recreated")
    except AssertionError:
        raise
    assert time.monotonic() - deleted_at < HEALED_WITHIN
    assert live["spec"]["replicas"] == 2
    # No helm upgrade healed it: the release is still at its first revision.
    assert (
        get_object(cluster, namespace, "HelmRelease", "web")["status"]["history"][0]["version"] == 1
    )
    events = wait_for(
        lambda: _drift_events(cluster, namespace) or None, timeout=10, what="a DriftDetected event"
    )
    message = events[-1]["message"]
    assert events[-1]["type"] == "Warning"
    assert "corrected" in message and f"Deployment/{namespace}/web created" in message
    heals = {"kind": "HelmRelease", "name": "web", "namespace": namespace}
    counted = sample_value(scrape(controllers.metrics_url), DRIFT_CORRECTIONS, heals)
    assert counted is not None and counted >= 1


def test_a_scale_of_an_ignored_replicas_field_is_left_alone(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    _, server = chart_repo
    ignore = [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]
    _install(cluster, namespace, server.url, {"mode": "enabled", "ignore": ignore})
    cluster.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5")
    # An image change is not ignored: healing it proves the watch looked after the scale too.
    cluster.kubectl("set", "image", "deployment/web", "web=example/web:evil", "-n", namespace)

    def healed() -> dict[str, Any] | None:
        live = get_json(cluster, "deployment", "web", "-n", namespace) or {}
        containers = ((live.get("spec") or {}).get("template") or {}).get("spec", {})
        image = (containers.get("containers") or [{}])[0].get("image")
        return live if image == "example/web:1" else None

    live = wait_for(healed, timeout=HEALED_WITHIN, what="the image to be healed")
    assert live["spec"]["replicas"] == 5
    events = wait_for(
        lambda: _drift_events(cluster, namespace) or None, timeout=10, what="a DriftDetected event"
    )
    message = "\n".join(e["message"] for e in events)
    assert "containers[name=web].image" in message
    assert "spec.replicas" not in message
    time.sleep(3)
    assert (
        kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]["replicas"] == 5
    )


def test_warn_reports_a_scale_and_changes_nothing(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    _, server = chart_repo
    _install(cluster, namespace, server.url, {"mode": "warn"})
    cluster.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=4")

    def drifted() -> dict[str, Any] | None:
        obj = get_object(cluster, namespace, "HelmRelease", "web")
        found = condition(obj, "Drifted")
        return obj if found and found["status"] == "True" else None

    release = wait_for(drifted, timeout=HEALED_WITHIN, what="Drifted=True")
    assert f"Deployment/{namespace}/web" in condition(release, "Drifted")["message"]  # type: ignore[index]
    assert condition(release, "Ready")["status"] == "True"  # type: ignore[index]
    events = _drift_events(cluster, namespace)
    assert events and "spec.replicas: 4 → 2" in events[-1]["message"]  # live → as released
    assert "corrected" not in events[-1]["message"]
    heals = {"kind": "HelmRelease", "name": "web", "namespace": namespace}
    assert sample_value(scrape(controllers.metrics_url), DRIFT_CORRECTIONS, heals) is None
    assert (
        kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]["replicas"] == 4
    )
