"""The image controller works as the ServiceAccount config/image installs: it scans,
chooses and pushes with nothing refused, and the RBAC test holds it to that."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.image.conftest import Scenario, marked_deployment
from tests.integration.install.conftest import SHARD, shard_labels
from tests.support.builders import image_policy, image_repository, image_update_automation
from tests.support.cluster import TestCluster, apply, wait_for
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.registry import OciRegistry
from tests.support.scaleout import SHARD_KEY
from tests.support.status import wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image_controller(
    kubeconfigs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningControllers]:
    with run_controllers(
        kubeconfigs["image"],
        tmp_path_factory.mktemp("image-identity"),
        which="image",
        extra_env={"HEADWATER_WATCH_LABEL_SELECTOR": f"{SHARD_KEY} in ({SHARD})"},
    ) as running:
        yield running


def test_the_image_controller_scans_chooses_and_pushes_as_its_own_account(
    cluster: TestCluster,
    namespace: str,
    image_controller: RunningControllers,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
    oci_registry: OciRegistry,
) -> None:
    scenario = Scenario(namespace, git_repos.create(), oci_registry, f"{namespace}/web")
    oci_registry.push_image(scenario.repository, ["1.0.0", "1.2.0"])
    head = scenario.repo.commit(
        {"deploy/web.yaml": marked_deployment(f"{scenario.image}:0.1.0", f"{namespace}:web")}
    )
    labels = shard_labels()
    # The Secret and the GitRepository; nothing applies the Deployment here.
    source = scenario.git_objects(git_http_basic_server)[:2]
    apply(
        cluster,
        *[{**obj, "metadata": {**obj["metadata"], **labels}} for obj in source],
        image_repository(
            namespace, "web", scenario.image, interval="1m", insecure=True, metadata=labels
        ),
        image_policy(namespace, "web", "web", {"semver": {"range": "^1"}}, metadata=labels),
        {
            **image_update_automation(namespace, "web", "app", update={"path": "./deploy"}),
            "metadata": {"name": "web", "namespace": namespace, **labels},
        },
    )
    wait_ready(cluster, namespace, "imagepolicy", "web", timeout=90)
    wait_for(lambda: scenario.repo.head() != head, timeout=90, what="the update pushed")
    assert f"{scenario.image}:1.2.0" in scenario.file()
    assert "is forbidden" not in image_controller.logs()
