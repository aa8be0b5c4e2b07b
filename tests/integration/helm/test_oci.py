"""Helm over OCI: charts pushed with `helm push` to a real registry, released two ways.

- a HelmRepository of type oci (no artifact, as in Flux) and a HelmRelease whose
  `spec.chart` ranges over the chart's versions: the source controller lists the tags
  and pulls with the pinned helm;
- a HelmRelease whose `spec.chartRef` is an OCIRepository selecting the chart layer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.builders import helm_release, oci_repository, secret
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import package_chart, push_chart
from tests.support.registry import Blob, OciRegistry
from tests.support.status import (
    condition,
    configmap_data,
    events_for,
    get_object,
    has_condition,
    is_ready,
    request_reconcile,
    wait_for_helmrelease,
    wait_ready,
)

pytestmark = pytest.mark.integration

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def test_a_release_follows_charts_pushed_to_an_oci_helm_repository(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry_basic: OciRegistry,
    tmp_path: Path,
) -> None:
    user, password = oci_registry_basic.basic  # type: ignore[misc]
    path = f"{namespace}/charts"
    push_chart(oci_registry_basic, package_chart(tmp_path, "app", "0.9.0"), path)
    apply(
        cluster,
        secret(namespace, "registry", {"username": user, "password": password}),
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": {"name": "oci-charts", "namespace": namespace},
            "spec": {
                "type": "oci",
                "url": f"oci://{oci_registry_basic.host}/{path}",
                "interval": "10m",
                "insecure": True,
                "secretRef": {"name": "registry"},
            },
        },
        helm_release(
            namespace,
            "app",
            chart={
                "spec": {
                    "chart": "app",
                    "version": "1.x",
                    "interval": "2s",
                    "sourceRef": {"kind": "HelmRepository", "name": "oci-charts"},
                }
            },
            values={"replicaCount": 2},
        ),
    )
    repository = wait_ready(cluster, namespace, "HelmRepository", "oci-charts")
    assert "artifact" not in repository["status"]
    assert condition(repository, "Ready")["message"] == "Helm repository is Ready"  # type: ignore[index]

    # Only 0.9.0 so far: nothing matches 1.x, and the HelmChart says so (and retries).
    chart_name = f"{namespace}-app"
    wait_ready(cluster, namespace, "HelmChart", chart_name, "False", "InvalidChartReference")

    push_chart(oci_registry_basic, package_chart(tmp_path, "app", "1.0.0"), path)
    chart = wait_ready(cluster, namespace, "HelmChart", chart_name, timeout=90)
    assert chart["status"]["artifact"]["revision"] == "1.0.0"
    released = wait_for_helmrelease(
        cluster, namespace, "app", is_ready("True", "InstallSucceeded"), what="the install"
    )
    assert released["status"]["lastAttemptedRevision"] == "1.0.0"
    assert configmap_data(cluster, namespace, "app-config") == {"replicas": "2"}

    push_chart(
        oci_registry_basic,
        package_chart(tmp_path, "app", "1.1.0", values={"replicaCount": 3}),
        path,
    )
    upgraded = wait_for_helmrelease(
        cluster,
        namespace,
        "app",
        lambda o: (
            (o.get("status") or {}).get("lastAttemptedRevision") == "1.1.0"
            and is_ready("True", "UpgradeSucceeded")(o)
        ),
        what="the upgrade to 1.1.0",
        timeout=120,
    )
    assert upgraded["status"]["history"][0]["chartVersion"] == "1.1.0"
    # A chart through a HelmChart (even from an OCI HelmRepository): Flux records no digest.
    assert "lastAttemptedRevisionDigest" not in upgraded["status"]
    assert all("ociDigest" not in h for h in upgraded["status"]["history"])
    assert configmap_data(cluster, namespace, "app-config") == {"replicas": "2"}  # our values


def test_chart_ref_to_an_oci_repository_releases_its_chart_layer(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
    tmp_path: Path,
) -> None:
    path = f"{namespace}/charts"
    push_chart(oci_registry, package_chart(tmp_path, "web", "2.0.0"), path)
    digest = oci_registry.manifest_digest(f"{path}/web", "2.0.0")
    apply(
        cluster,
        oci_repository(
            namespace,
            "web-chart",
            oci_registry.url(f"{path}/web"),
            insecure=True,
            ref={"semver": "2.x"},
            layerSelector={"mediaType": HELM_CHART_LAYER, "operation": "copy"},
        ),
        helm_release(
            namespace,
            "web",
            chartRef={"kind": "OCIRepository", "name": "web-chart"},
            values={"replicaCount": 4},
        ),
    )
    source = wait_ready(cluster, namespace, "OCIRepository", "web-chart")
    assert source["status"]["artifact"]["revision"] == f"2.0.0@{digest}"
    released = wait_for_helmrelease(
        cluster, namespace, "web", is_ready("True", "InstallSucceeded"), what="the install"
    )
    status = released["status"]
    assert status["lastAttemptedRevision"] == "2.0.0"
    assert status["lastAttemptedRevisionDigest"] == digest
    assert status["history"][0]["ociDigest"] == digest  # as Flux records it
    assert "helmChart" not in status
    assert configmap_data(cluster, namespace, "web-config") == {"replicas": "4"}
    installed = [
        e
        for e in events_for(cluster, namespace, "HelmRelease", "web")
        if e["reason"] == "InstallSucceeded"
    ]
    assert installed
    assert installed[0]["metadata"]["annotations"]["helm.toolkit.fluxcd.io/oci-digest"] == digest

    # A new chart version in the registry: the OCIRepository moves, the release follows.
    push_chart(oci_registry, package_chart(tmp_path, "web", "2.1.0"), path)
    second = oci_registry.manifest_digest(f"{path}/web", "2.1.0")
    request_reconcile(cluster, namespace, "OCIRepository", "web-chart")
    upgraded = wait_for_helmrelease(
        cluster,
        namespace,
        "web",
        lambda o: (
            (o.get("status") or {}).get("lastAttemptedRevision") == "2.1.0"
            and is_ready("True", "UpgradeSucceeded")(o)
        ),
        what="the upgrade to 2.1.0",
        timeout=120,
    )
    history = upgraded["status"]["history"]
    assert [(h["chartVersion"], h["ociDigest"]) for h in history] == [
        ("2.1.0", second),
        ("2.0.0", digest),
    ]

    # The same version pushed again (a mutable tag): a new digest, so an upgrade.
    push_chart(
        oci_registry, package_chart(tmp_path / "again", "web", "2.1.0", values={"x": "y"}), path
    )
    third = oci_registry.manifest_digest(f"{path}/web", "2.1.0")
    assert third != second
    request_reconcile(cluster, namespace, "OCIRepository", "web-chart")
    again = wait_for_helmrelease(
        cluster,
        namespace,
        "web",
        lambda o: ((o.get("status") or {}).get("history") or [{}])[0].get("ociDigest") == third,
        what="the upgrade to the re-pushed 2.1.0",
        timeout=120,
    )
    assert [h["version"] for h in again["status"]["history"]] == [3, 2, 1]
    assert again["status"]["lastAttemptedRevisionDigest"] == third


def test_a_chart_ref_to_an_oci_tag_that_is_not_the_chart_version_is_refused(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
    tmp_path: Path,
) -> None:
    path = f"{namespace}/charts"
    push_chart(oci_registry, package_chart(tmp_path, "web", "2.0.0"), path)
    # Copied under another tag: Flux refuses a tag that is not the chart's version.
    manifest = oci_registry.manifest(f"{path}/web", "2.0.0")
    oci_registry.push_artifact(
        f"{path}/web",
        ["stable"],
        layers=[
            Blob(layer["mediaType"], oci_registry.blob(f"{path}/web", layer["digest"]))
            for layer in manifest["layers"]
        ],
        config=Blob(
            manifest["config"]["mediaType"],
            oci_registry.blob(f"{path}/web", manifest["config"]["digest"]),
        ),
    )
    apply(
        cluster,
        oci_repository(
            namespace,
            "web-chart",
            oci_registry.url(f"{path}/web"),
            insecure=True,
            ref={"tag": "stable"},
            layerSelector={"mediaType": HELM_CHART_LAYER, "operation": "copy"},
        ),
        helm_release(namespace, "web", chartRef={"kind": "OCIRepository", "name": "web-chart"}),
    )
    obj = wait_for_helmrelease(
        cluster, namespace, "web", has_condition("Ready", "False", "ChartMutateError")
    )
    assert condition(obj, "Ready")["message"] == "failed parsing artifact revision stable"  # type: ignore[index]
    assert obj["status"].get("history") is None


def test_a_chart_ref_to_a_missing_oci_repository_waits(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        helm_release(namespace, "nowhere", chartRef={"kind": "OCIRepository", "name": "absent"}),
    )
    obj = wait_for_helmrelease(
        cluster, namespace, "nowhere", has_condition("Ready", "False", "ArtifactFailed")
    )
    assert f"OCIRepository '{namespace}/absent' not found" in condition(obj, "Ready")["message"]  # type: ignore[index]
    assert get_object(cluster, namespace, "HelmRelease", "nowhere")["status"].get("history") is None
