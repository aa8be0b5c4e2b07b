"""spec.postRenderers: kustomize patches and images reach the live objects of a release.

The real chain: a chart repository on loopback, a HelmRepository, a HelmRelease
with `spec.chart`; helm runs headwater's post-renderer plugin (the pinned
kustomize) on its rendered manifests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.builders import deployment, helm_release, helm_repository
from tests.support.cluster import TestCluster, apply, get_json, kubectl_json
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import ChartRepo, ChartRepoServer
from tests.support.status import wait_for_object, wait_ready

pytestmark = pytest.mark.integration

WEB = yaml.safe_dump(deployment(None, "web", image="example/web:1", container="web"))


@pytest.fixture
def chart_repo(tmp_path: Path) -> Iterator[tuple[ChartRepo, ChartRepoServer]]:
    repo = ChartRepo(tmp_path / "charts")
    repo.add("app", "1.0.0", extra_files={"templates/web.yaml": WEB})
    with ChartRepoServer(repo) as server:
        yield repo, server


def _renderers(tag: str) -> list[dict[str, Any]]:
    replicas = "- op: replace\n  path: /spec/replicas\n  value: 3\n"
    label = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: any\n  labels:\n    tier: gold\n"
    return [
        {
            "kustomize": {
                "patches": [
                    {"patch": replicas, "target": {"kind": "Deployment", "name": "web"}},
                    {"patch": label, "target": {"kind": "ConfigMap"}},
                ],
                "images": [{"name": "example/web", "newName": "mirror/web", "newTag": tag}],
            }
        }
    ]


def _image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def test_patches_and_images_appear_in_the_live_objects(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    _, server = chart_repo
    chart = {"spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}
    apply(
        cluster,
        helm_repository(namespace, "charts", server.url),
        helm_release(
            namespace,
            "web",
            chart=chart,
            install={"disableWait": True},
            postRenderers=_renderers("2"),
        ),
    )
    release = wait_ready(cluster, namespace, "HelmRelease", "web", timeout=90)
    live = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)
    assert live["spec"]["replicas"] == 3
    assert _image(live) == "mirror/web:2"
    settings = get_json(cluster, "configmap", "web-config", "-n", namespace)
    assert settings is not None and settings["metadata"]["labels"]["tier"] == "gold"
    assert str(release["status"]["observedPostRenderersDigest"]).startswith("sha256:")

    # A post-renderer change alone (chart and values the same) is an upgrade.
    cluster.kubectl(
        "patch",
        "helmrelease",
        "web",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        yaml.safe_dump({"spec": {"postRenderers": _renderers("3")}}),
    )
    wait_for_object(
        cluster,
        namespace,
        "deployment",
        "web",
        lambda obj: _image(obj) == "mirror/web:3",
        what="the new image",
    )
    upgraded = wait_ready(cluster, namespace, "HelmRelease", "web")
    assert upgraded["status"]["history"][0]["version"] == 2
