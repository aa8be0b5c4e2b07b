"""The bearer-token flow registries like Docker Hub and GHCR use, against a real registry."""

from __future__ import annotations

import pytest

from tests.integration.image.test_sources_and_flows import docker_secret
from tests.support.builders import image_repository
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.registry import OciRegistry
from tests.support.status import ready_message, wait_ready
from tests.support.tokenregistry import TokenAuthRegistry

pytestmark = pytest.mark.integration


def test_a_token_registry_is_scanned_with_a_token_got_from_its_realm(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
    token_registry: TokenAuthRegistry,
) -> None:
    repository = f"{namespace}/tokened"
    oci_registry.push_image(repository, ["1.0.0", "1.2.0"])
    image = f"{token_registry.host}/{repository}"
    before = token_registry.token_requests
    apply(
        cluster,
        docker_secret(namespace, "token-cred", token_registry.dockerconfigjson()),
        image_repository(
            namespace,
            "tokened",
            image,
            interval="1m",
            insecure=True,
            secretRef={"name": "token-cred"},
        ),
        image_repository(namespace, "no-cred", image, interval="1m", insecure=True),
    )
    obj = wait_ready(cluster, namespace, "imagerepository", "tokened")
    assert obj["status"]["lastScanResult"]["latestTags"] == ["1.2.0", "1.0.0"]
    assert token_registry.token_requests > before
    refused = wait_ready(
        cluster, namespace, "imagerepository", "no-cred", "False", "AuthenticationFailed"
    )
    assert "refused the credentials (401)" in ready_message(refused)
