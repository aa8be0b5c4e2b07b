"""What goes wrong says so on the object, and nothing half-written reaches git."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.cluster import free_port
from tests.integration.image.conftest import Scenario, marked_deployment
from tests.support.builders import image_policy, image_repository, image_update_automation
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.registry import OciRegistry
from tests.support.scaleout import SHARD_KEY
from tests.support.status import get_object, ready_message, wait_ready

pytestmark = pytest.mark.integration

LIMITED_SHARD = "image-tag-limit"


def automation(namespace: str, **spec: object) -> dict[str, object]:
    return image_update_automation(
        namespace,
        "web",
        "app",
        interval="1m",
        git={
            "commit": {"author": {"name": "headwater", "email": "bot@headwater.invalid"}},
            **spec,
        },
        update={"path": "./deploy"},
    )


def test_a_registry_that_is_down_is_a_failed_scan_naming_it(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    image = f"127.0.0.1:{free_port()}/team/web"
    apply(cluster, image_repository(namespace, "down", image, interval="1m", insecure=True))
    obj = wait_ready(cluster, namespace, "imagerepository", "down", "False", "Failure")
    assert f"scanning '{image}' failed" in ready_message(obj)
    assert "Connect call failed" in ready_message(obj)


@pytest.fixture(scope="module")
def limited_image_controller(
    cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningControllers]:
    """An image controller that keeps at most 5 tags, for its own shard's objects."""
    with run_controllers(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("image-limited"),
        which="image",
        extra_env={
            "HEADWATER_WATCH_LABEL_SELECTOR": f"{SHARD_KEY}={LIMITED_SHARD}",
            "HEADWATER_IMAGE_MAX_TAGS": "5",
        },
    ) as running:
        yield running


def test_a_tag_list_too_large_is_a_clear_condition(
    cluster: TestCluster,
    namespace: str,
    limited_image_controller: RunningControllers,
    oci_registry: OciRegistry,
) -> None:
    repository = f"{namespace}/many"
    oci_registry.push_image(repository, [f"1.0.{i}" for i in range(8)])
    apply(
        cluster,
        image_repository(
            namespace,
            "many",
            f"{oci_registry.host}/{repository}",
            interval="1m",
            insecure=True,
            metadata={"labels": {SHARD_KEY: LIMITED_SHARD}},
        ),
    )
    obj = wait_ready(cluster, namespace, "imagerepository", "many", "False", "TagLimitExceeded")
    assert "more than 5 tags" in ready_message(obj)
    assert "HEADWATER_IMAGE_MAX_TAGS" in ready_message(obj)
    assert "lastScanResult" not in (obj.get("status") or {})


def test_a_policy_matching_nothing_fails_naming_its_range(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
) -> None:
    repository = f"{namespace}/old"
    oci_registry.push_image(repository, ["0.1.0", "0.2.0", "2.0.0-beta.1"])
    apply(
        cluster,
        image_repository(
            namespace, "old", f"{oci_registry.host}/{repository}", interval="1m", insecure=True
        ),
        image_policy(namespace, "old", "old", {"semver": {"range": ">=1.0.0"}}),
    )
    wait_ready(cluster, namespace, "imagerepository", "old")
    obj = wait_ready(cluster, namespace, "imagepolicy", "old", "False", "Failure")
    assert "no tag matches semver range '>=1.0.0' (among 3 candidate tags)" in ready_message(obj)
    assert "latestRef" not in obj["status"]


def test_a_setter_naming_a_missing_policy_fails_and_commits_nothing(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
    oci_registry: OciRegistry,
) -> None:
    scenario = Scenario(namespace, git_repos.create(), oci_registry, f"{namespace}/web")
    oci_registry.push_image(scenario.repository, ["1.0.0"])
    head = scenario.repo.commit(
        {
            "deploy/web.yaml": marked_deployment(f"{scenario.image}:0.9.0", f"{namespace}:web"),
            "deploy/api.yaml": marked_deployment(
                f"{scenario.image}:0.9.0", f"{namespace}:gone", name="api"
            ),
        }
    )
    apply(
        cluster,
        *scenario.git_objects(git_http_basic_server),
        image_repository(namespace, "web", scenario.image, interval="1m", insecure=True),
        image_policy(namespace, "web", "web", {"semver": {"range": ">=1.0.0"}}),
        automation(namespace),
    )
    wait_ready(cluster, namespace, "imagepolicy", "web")
    obj = wait_ready(cluster, namespace, "imageupdateautomation", "web", "False", "UpdateFailed")
    message = ready_message(obj)
    assert "deploy/api.yaml:" in message
    assert f"names ImagePolicy '{namespace}/gone', which does not exist" in message
    # The good setter in web.yaml was not committed on its own.
    assert scenario.repo.head() == head
    assert "lastPushCommit" not in obj["status"]


def test_a_rejected_push_fails_and_leaves_the_remote_as_it_was(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
    oci_registry: OciRegistry,
) -> None:
    scenario = Scenario(namespace, git_repos.create(), oci_registry, f"{namespace}/web")
    oci_registry.push_image(scenario.repository, ["1.0.0"])
    head = scenario.repo.commit(
        {"deploy/web.yaml": marked_deployment(f"{scenario.image}:0.9.0", f"{namespace}:web")}
    )
    # The branch is protected: the server's pre-receive hook refuses any update of it.
    hook = Path(scenario.repo.bare) / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  [ "$ref" = refs/heads/master ] && echo "master is protected" >&2 && exit 1\n'
        "done\nexit 0\n"
    )
    hook.chmod(0o755)
    apply(
        cluster,
        *scenario.git_objects(git_http_basic_server),
        image_repository(namespace, "web", scenario.image, interval="1m", insecure=True),
        image_policy(namespace, "web", "web", {"semver": {"range": ">=1.0.0"}}),
        # Two destinations in one push: neither may move when one is refused.
        automation(namespace, push={"refspec": "refs/heads/master:refs/heads/also"}),
    )
    obj = wait_ready(
        cluster, namespace, "imageupdateautomation", "web", "False", "GitOperationFailed"
    )
    message = ready_message(obj)
    assert "push rejected" in message
    assert "master is protected" in message
    assert scenario.repo.head() == head
    branches = scenario.repo.git("--git-dir", str(scenario.repo.bare), "branch", "--list")
    assert branches.split() == ["*", "master"] or branches.split() == ["master"]
    status = get_object(cluster, namespace, "imageupdateautomation", "web")["status"]
    assert "lastPushCommit" not in status
