"""HelmRelease options a user sets: install remediation, uninstall strategy, target
namespace and release name, maxHistory, keepHistory, CRD policies, events.

Chart artifacts are published by `tests.support.charts.publish_chart` until the
source controller on this branch reconciles HelmCharts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from tests.helpers import TestCluster, apply_manifests, condition, get_json, wait_for

from tests.support.charts import (
    NOWHERE,
    ChartServer,
    chart_server,
    helm_chart,
    helm_history,
    helm_release,
    publish_chart,
    wait_for_release,
    widget_crd,
    wordpress_chart,
)
from tests.support.controllers import RunningControllers


@pytest.fixture
def charts(tmp_path: Path) -> Iterator[ChartServer]:
    with chart_server(tmp_path / "served") as server:
        yield server


def has(type_: str, status: str, reason: str | None = None) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, type_)
        return bool(
            found and found["status"] == status and (reason is None or found["reason"] == reason)
        )

    return check


def ready(reason: str | None = None) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, "Ready")
        return bool(
            found
            and found["status"] == "True"
            and (reason is None or found["reason"] == reason)
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        )

    return check


def events_of(
    api_client: kubernetes.client.ApiClient, namespace: str, uid: str
) -> list[kubernetes.client.CoreV1Event]:
    core = kubernetes.client.CoreV1Api(api_client)
    items: list[kubernetes.client.CoreV1Event] = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={uid}"
    ).items
    return items


def chart_ref(**spec: Any) -> dict[str, Any]:
    return {"chartRef": {"kind": "HelmChart", "name": "wordpress"}, **spec}


def test_failed_install_is_uninstalled_retried_then_stalled(
    cluster: TestCluster,
    controllers: RunningControllers,
    api_client: kubernetes.client.ApiClient,
    namespace: str,
    charts: ChartServer,
) -> None:
    apply_manifests(cluster, helm_chart(namespace, "wordpress"))
    publish_chart(cluster, charts, namespace, "wordpress", wordpress_chart(charts.root, "1.0.0"))
    apply_manifests(
        cluster,
        helm_release(
            namespace,
            "blog",
            **chart_ref(
                interval="5s",
                timeout="4s",
                values={"web": {"nodeSelector": NOWHERE}},
                install={"remediation": {"retries": 1}},
            ),
        ),
    )
    obj = wait_for_release(
        cluster,
        namespace,
        "blog",
        has("Stalled", "True", "RetriesExceeded"),
        timeout=120,
        what="install retries spent",
    )
    assert obj["status"]["installFailures"] == 2
    assert condition(obj, "Stalled")["message"] == "Failed to install after 2 attempt(s)"  # type: ignore[index]
    remediated = condition(obj, "Remediated")
    assert remediated is not None and remediated["reason"] == "UninstallSucceeded"
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    assert condition(obj, "Released")["reason"] == "InstallFailed"  # type: ignore[index]
    assert helm_history(cluster, namespace, "blog") == []
    # Events carry the chart version, so alerts name what was being released.
    events = events_of(api_client, namespace, obj["metadata"]["uid"])
    failed = [e for e in events if e.reason == "InstallFailed"]
    assert failed and failed[0].type == "Warning"
    assert failed[0].metadata.annotations["helm.toolkit.fluxcd.io/revision"] == "1.0.0"
    assert any(e.reason == "UninstallSucceeded" for e in events)


def test_failed_upgrade_with_the_uninstall_strategy(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: ChartServer,
) -> None:
    apply_manifests(cluster, helm_chart(namespace, "wordpress"))
    publish_chart(cluster, charts, namespace, "wordpress", wordpress_chart(charts.root, "1.0.0"))
    release = helm_release(namespace, "blog", **chart_ref(timeout="4s"))
    apply_manifests(cluster, release)
    wait_for_release(cluster, namespace, "blog", ready("InstallSucceeded"))
    release["spec"]["values"] = {"web": {"nodeSelector": NOWHERE}}
    release["spec"]["upgrade"] = {
        "remediation": {"remediateLastFailure": True, "strategy": "uninstall"}
    }
    apply_manifests(cluster, release)
    obj = wait_for_release(
        cluster, namespace, "blog", has("Remediated", "True", "UninstallSucceeded"), timeout=90
    )
    assert condition(obj, "Ready")["reason"] == "UninstallSucceeded"  # type: ignore[index]
    assert helm_history(cluster, namespace, "blog") == []
    assert get_json(cluster, "deployment", "blog-web", "-n", namespace) is None


def expected_release_name(target: str, name: str) -> str:
    full = f"{target}-{name}"
    if len(full) <= 53:
        return full
    return full[:40] + "-" + hashlib.sha256(full.encode()).hexdigest()[:12]


def test_target_namespace_history_limit_crds_and_kept_history(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: ChartServer,
) -> None:
    target = f"{namespace}-target"[:63]
    release_name = expected_release_name(target, "blog")
    group = f"{namespace[-6:]}.widgets.headwater.test"
    crd = f"widgets.{group}"
    apply_manifests(cluster, helm_chart(namespace, "wordpress"))
    publish_chart(
        cluster,
        charts,
        namespace,
        "wordpress",
        wordpress_chart(charts.root, "1.0.0", crds=widget_crd(group)),
    )
    spec = chart_ref(
        targetNamespace=target,
        maxHistory=2,
        install={"createNamespace": True},
        upgrade={"crds": "CreateReplace"},
        uninstall={"keepHistory": True},
    )
    release = helm_release(namespace, "blog", **spec)
    try:
        apply_manifests(cluster, release)
        obj = wait_for_release(cluster, namespace, "blog", ready("InstallSucceeded"))
        assert obj["status"]["history"][0]["name"] == release_name
        assert obj["status"]["history"][0]["namespace"] == target
        assert obj["status"]["storageNamespace"] == target
        assert len(release_name) <= 53
        # helm created the namespace and the chart's CRD (install policy Create).
        assert get_json(cluster, "namespace", target) is not None
        live = get_json(cluster, "crd", crd)
        assert live is not None and "additionalPrinterColumns" not in live["spec"]["versions"][0]
        assert get_json(cluster, "deployment", f"{release_name}-web", "-n", target) is not None

        # Upgrades: CreateReplace replaces the changed CRD; maxHistory keeps two revisions.
        publish_chart(
            cluster,
            charts,
            namespace,
            "wordpress",
            wordpress_chart(charts.root, "1.1.0", crds=widget_crd(group, with_column=True)),
        )
        wait_for_release(
            cluster,
            namespace,
            "blog",
            lambda o: (
                ready("UpgradeSucceeded")(o)
                and o["status"]["history"][0]["chartVersion"] == "1.1.0"
            ),
        )
        live = get_json(cluster, "crd", crd)
        assert live is not None
        assert live["spec"]["versions"][0]["additionalPrinterColumns"][0]["name"] == "Size"
        for replicas in (2, 3):
            release["spec"]["values"] = {"replicaCount": replicas}
            apply_manifests(cluster, release)
            wait_for_release(
                cluster,
                namespace,
                "blog",
                lambda o, r=replicas: (
                    ready("UpgradeSucceeded")(o) and o["status"]["history"][0]["version"] == r + 1
                ),
            )
        history = helm_history(cluster, target, release_name)
        assert [r["revision"] for r in history] == [3, 4]

        # keepHistory: the release is uninstalled, its history stays.
        cluster.kubectl("delete", "helmrelease", "blog", "-n", namespace, "--wait=true")
        assert [r["status"] for r in helm_history(cluster, target, release_name)][-1] == (
            "uninstalled"
        )
        wait_for(
            lambda: get_json(cluster, "deployment", f"{release_name}-web", "-n", target) is None,
            what="the release's Deployment gone",
        )
    finally:
        cluster.kubectl("delete", "namespace", target, "--wait=false", check=False)
        cluster.kubectl("delete", "crd", crd, "--wait=false", check=False)


def service_account(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def test_service_account_name_is_impersonated(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: ChartServer,
) -> None:
    apply_manifests(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "deployer", "namespace": namespace},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "nobody", "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "deployer-admin", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}],
        },
        helm_chart(namespace, "wordpress"),
    )
    publish_chart(cluster, charts, namespace, "wordpress", wordpress_chart(charts.root, "1.0.0"))
    # An account without rights: helm acts as it, and the API server says no.
    apply_manifests(
        cluster, helm_release(namespace, "denied", **chart_ref(serviceAccountName="nobody"))
    )
    obj = wait_for_release(cluster, namespace, "denied", has("Ready", "False", "InstallFailed"))
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert f'User "system:serviceaccount:{namespace}:nobody" cannot' in message
    assert helm_history(cluster, namespace, "denied") == []
    # An account with admin rights in the namespace installs the release.
    apply_manifests(
        cluster, helm_release(namespace, "blog", **chart_ref(serviceAccountName="deployer"))
    )
    wait_for_release(cluster, namespace, "blog", ready("InstallSucceeded"))
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == ["deployed"]
    web = get_json(cluster, "deployment", "blog-web", "-n", namespace)
    assert web is not None


def test_a_helmchart_the_release_no_longer_uses_is_deleted(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: ChartServer,
) -> None:
    template = {
        "spec": {"chart": "wordpress", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}
    }
    apply_manifests(cluster, helm_release(namespace, "blog", chart=template))
    owned = f"{namespace}-blog"
    wait_for(
        lambda: get_json(cluster, "helmchart", owned, "-n", namespace),
        what="the HelmChart the release owns",
    )
    # Switched to a HelmChart of the user's own: the one the release made goes.
    apply_manifests(cluster, helm_chart(namespace, "wordpress"))
    publish_chart(cluster, charts, namespace, "wordpress", wordpress_chart(charts.root, "1.0.0"))
    apply_manifests(cluster, helm_release(namespace, "blog", **chart_ref()))
    wait_for_release(cluster, namespace, "blog", ready("InstallSucceeded"))
    wait_for(
        lambda: get_json(cluster, "helmchart", owned, "-n", namespace) is None,
        what="the owned HelmChart deleted",
    )
    assert get_json(cluster, "helmchart", "wordpress", "-n", namespace) is not None
