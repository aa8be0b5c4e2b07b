"""HelmRelease options a user sets: install remediation, uninstall strategy, target
namespace and release name, maxHistory, keepHistory, CRD policies, events.

Charts come from a chart repository on loopback through a HelmRepository and
HelmCharts the source controller pulls (see conftest.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.builders import helm_chart, helm_release
from tests.support.charts import NOWHERE, Charts, widget_crd
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import helm_history
from tests.support.status import (
    condition,
    events_for,
    has_condition,
    is_ready,
    request_reconcile,
    wait_for_helmrelease,
)

pytestmark = pytest.mark.integration


def chart_ref(**spec: Any) -> dict[str, Any]:
    return {"chartRef": {"kind": "HelmChart", "name": "wordpress"}, **spec}


def test_failed_install_is_uninstalled_retried_then_stalled(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    charts.publish("1.0.0")
    apply(cluster, charts.helm_chart("wordpress"))
    apply(
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
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        has_condition("Stalled", "True", "RetriesExceeded"),
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
    events = events_for(cluster, namespace, "HelmRelease", "blog")
    failed = [e for e in events if e["reason"] == "InstallFailed"]
    assert failed and failed[0]["type"] == "Warning"
    assert failed[0]["metadata"]["annotations"]["helm.toolkit.fluxcd.io/revision"] == "1.0.0"
    assert any(e["reason"] == "UninstallSucceeded" for e in events)


def test_failed_upgrade_with_the_uninstall_strategy(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    charts.publish("1.0.0")
    apply(cluster, charts.helm_chart("wordpress"))
    release = helm_release(namespace, "blog", **chart_ref(timeout="4s"))
    apply(cluster, release)
    wait_for_helmrelease(cluster, namespace, "blog", is_ready("True", "InstallSucceeded"))
    release["spec"]["values"] = {"web": {"nodeSelector": NOWHERE}}
    release["spec"]["upgrade"] = {
        "remediation": {"remediateLastFailure": True, "strategy": "uninstall"}
    }
    apply(cluster, release)
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        has_condition("Remediated", "True", "UninstallSucceeded"),
        timeout=90,
    )
    assert condition(obj, "Ready")["reason"] == "UninstallSucceeded"  # type: ignore[index]
    assert helm_history(cluster, namespace, "blog") == []
    assert get_json(cluster, "deployment", "blog-web", "-n", namespace) is None


def upgraded_to(version: int) -> Callable[[dict[str, Any]], bool]:
    """Ready after an upgrade that made helm revision `version`."""

    def check(obj: dict[str, Any]) -> bool:
        return (
            is_ready("True", "UpgradeSucceeded")(obj)
            and obj["status"]["history"][0]["version"] == version
        )

    return check


def expected_release_name(target: str, name: str) -> str:
    full = f"{target}-{name}"
    if len(full) <= 53:
        return full
    return full[:40] + "-" + hashlib.sha256(full.encode()).hexdigest()[:12]


def test_target_namespace_history_limit_crds_and_kept_history(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    target = f"{namespace}-target"[:63]
    release_name = expected_release_name(target, "blog")
    group = f"{namespace[-6:]}.widgets.headwater.test"
    crd = f"widgets.{group}"
    charts.publish("1.0.0", crds=widget_crd(group))
    apply(cluster, charts.helm_chart("wordpress"))
    spec = chart_ref(
        targetNamespace=target,
        maxHistory=2,
        install={"createNamespace": True},
        upgrade={"crds": "CreateReplace"},
        uninstall={"keepHistory": True},
    )
    release = helm_release(namespace, "blog", **spec)
    try:
        apply(cluster, release)
        obj = wait_for_helmrelease(cluster, namespace, "blog", is_ready("True", "InstallSucceeded"))
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
        charts.publish("1.1.0", crds=widget_crd(group, with_column=True))
        wait_for_helmrelease(
            cluster,
            namespace,
            "blog",
            lambda o: (
                is_ready("True", "UpgradeSucceeded")(o)
                and o["status"]["history"][0]["chartVersion"] == "1.1.0"
            ),
        )
        live = get_json(cluster, "crd", crd)
        assert live is not None
        assert live["spec"]["versions"][0]["additionalPrinterColumns"][0]["name"] == "Size"
        for replicas in (2, 3):
            release["spec"]["values"] = {"replicaCount": replicas}
            apply(cluster, release)
            wait_for_helmrelease(cluster, namespace, "blog", upgraded_to(replicas + 1))
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
    charts: Charts,
) -> None:
    apply(
        cluster,
        service_account(namespace, "deployer"),
        service_account(namespace, "nobody"),
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
        charts.helm_chart("wordpress"),
    )
    charts.publish("1.0.0")
    # An account without rights: helm acts as it, and the API server says no.
    apply(cluster, helm_release(namespace, "denied", **chart_ref(serviceAccountName="nobody")))
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "denied",
        has_condition("Ready", "False", "InstallFailed"),
    )
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert f'User "system:serviceaccount:{namespace}:nobody" cannot' in message
    assert helm_history(cluster, namespace, "denied") == []
    # An account with admin rights in the namespace installs the release.
    apply(cluster, helm_release(namespace, "blog", **chart_ref(serviceAccountName="deployer")))
    wait_for_helmrelease(cluster, namespace, "blog", is_ready("True", "InstallSucceeded"))
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == ["deployed"]
    web = get_json(cluster, "deployment", "blog-web", "-n", namespace)
    assert web is not None


def test_a_helmchart_the_release_no_longer_uses_is_deleted(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    apply(cluster, helm_release(namespace, "blog", chart=charts.template()))
    owned = f"{namespace}-blog"
    wait_for(
        lambda: get_json(cluster, "helmchart", owned, "-n", namespace),
        what="the HelmChart the release owns",
    )
    # Switched to a HelmChart of the user's own: the one the release made goes.
    charts.publish("1.0.0")
    apply(cluster, charts.helm_chart("wordpress"))
    apply(cluster, helm_release(namespace, "blog", **chart_ref()))
    wait_for_helmrelease(cluster, namespace, "blog", is_ready("True", "InstallSucceeded"))
    wait_for(
        lambda: get_json(cluster, "helmchart", owned, "-n", namespace) is None,
        what="the owned HelmChart deleted",
    )
    assert get_json(cluster, "helmchart", "wordpress", "-n", namespace) is not None


def test_preserved_values_and_test_filters(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    apply(cluster, charts.helm_chart("wordpress"))
    charts.publish("1.0.0")
    apply(cluster, helm_release(namespace, "blog", **chart_ref(values={"replicaCount": 2})))
    wait_for_helmrelease(cluster, namespace, "blog", is_ready("True", "InstallSucceeded"))

    def web_replicas() -> int:
        return int(get_json(cluster, "deployment", "blog-web", "-n", namespace)["spec"]["replicas"])  # type: ignore[index]

    # upgrade.preserveValues: helm reuses the last release's values under the new ones,
    # and the excluded test (which would never pass: no node takes its pod) is not run.
    preserve = chart_ref(
        values={"tests": {"nodeSelector": NOWHERE}},
        upgrade={"preserveValues": True},
        test={
            "enable": True,
            "timeout": "5s",
            "filters": [{"name": "blog-test-db", "exclude": True}],
        },
    )
    apply(cluster, helm_release(namespace, "blog", **preserve))
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: is_ready("True")(o) and o["status"]["history"][0]["version"] == 2,
        what="the upgrade with preserved values",
    )
    assert condition(obj, "TestSuccess")["status"] == "True"  # type: ignore[index]
    assert obj["status"]["history"][0]["testHooks"] == {}  # none ran
    assert web_replicas() == 2
    # The same test, selected by name: it runs and fails.
    apply(
        cluster,
        helm_release(
            namespace,
            "blog",
            **chart_ref(
                # New values (a test or upgrade setting alone is no new release, as in Flux).
                values={"tests": {"nodeSelector": NOWHERE}, "db": {"image": "mysql:8.4"}},
                test={"enable": True, "timeout": "5s", "filters": [{"name": "blog-test-db"}]},
            ),
        ),
    )
    obj = wait_for_helmrelease(
        cluster, namespace, "blog", has_condition("TestSuccess", "False", "TestFailed")
    )
    # Without preserveValues the spec's values are the whole truth: replicaCount is back to 1.
    assert web_replicas() == 1


def test_schema_validation_can_be_disabled(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    # A chart whose values.schema.json asks for a value its defaults do not have.
    schema = '{"type": "object", "required": ["owner"]}'
    charts.repo.add("strict", "1.0.0", extra_files={"values.schema.json": schema})
    request_reconcile(cluster, namespace, "helmrepository", charts.repository)
    apply(cluster, helm_chart(namespace, "strict", "strict", version="*", sourceRef=charts.source))
    strict = {"chartRef": {"kind": "HelmChart", "name": "strict"}}
    apply(cluster, helm_release(namespace, "checked", **strict))
    obj = wait_for_helmrelease(
        cluster, namespace, "checked", has_condition("Ready", "False", "InstallFailed")
    )
    assert "owner" in condition(obj, "Ready")["message"]  # type: ignore[index]
    assert helm_history(cluster, namespace, "checked") == []
    # helm's --skip-schema-validation (and --disable-openapi-validation) as Flux passes them.
    apply(
        cluster,
        helm_release(
            namespace,
            "unchecked",
            **strict,
            install={"disableSchemaValidation": True, "disableOpenAPIValidation": True},
        ),
    )
    wait_for_helmrelease(cluster, namespace, "unchecked", is_ready("True", "InstallSucceeded"))
    assert [r["status"] for r in helm_history(cluster, namespace, "unchecked")] == ["deployed"]
