"""kubeConfig.configMapRef: applying to a cluster described by a ConfigMap (Flux's
`generic` provider), as a ServiceAccount whose token the controller asks for."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.builders import configmap_file as configmap
from tests.support.builders import configmaps_only, git_repository, kustomization
from tests.support.cluster import TestCluster, apply, get_json
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    condition,
    failed_on,
    ready_message,
    request_reconcile,
    wait_for_kustomization,
)
from tests.support.status import configmap_data as data_of

pytestmark = pytest.mark.integration

# The devcluster's API server accepts tokens for its issuer (no --api-audiences).
AUDIENCE = "https://kubernetes.default.svc.cluster.local"


def cluster_config_map(
    cluster: TestCluster, namespace: str, name: str, **data: str
) -> dict[str, Any]:
    """A generic-provider ConfigMap for the test cluster itself: its address and CA."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {
            "provider": "generic",
            "address": admin["server"],
            "ca.crt": base64.b64decode(admin["certificate-authority-data"]).decode(),
            "audiences": AUDIENCE,
            **data,
        },
    }


def stalled_message(obj: dict[str, Any]) -> str:
    stalled = condition(obj, "Stalled")
    return str(stalled["message"]) if stalled and stalled["status"] == "True" else ""


def test_objects_are_applied_as_the_config_maps_service_account(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"remote/settings.yaml": configmap("remote", value="1")})
    # The "remote" cluster is this one (a second control plane is too heavy for a
    # test), reached as another identity: a ServiceAccount that may manage
    # ConfigMaps in this namespace and nothing else. What it may and may not do
    # proves its token, not the controller's credentials, applied the objects.
    apply(
        cluster,
        *configmaps_only(namespace, "remote-applier"),
        cluster_config_map(
            cluster, namespace, "remote-cluster", serviceAccountName="remote-applier"
        ),
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(
            namespace,
            "remote",
            "repo",
            "./remote",
            targetNamespace=namespace,
            kubeConfig={"configMapRef": {"name": "remote-cluster"}},
        ),
    )
    wait_for_kustomization(cluster, namespace, "remote", applied(first))
    assert data_of(cluster, namespace, "remote") == {"value": "1"}

    second = repo.commit(
        {"remote/web.yaml": yaml.safe_dump(builders.deployment(None, "web-remote", replicas=None))},
        "add a deployment",
    )
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    ks = wait_for_kustomization(cluster, namespace, "remote", failed_on(second))
    message = ready_message(ks)
    assert f"Deployment/{namespace}/web-remote" in message, message
    assert f"system:serviceaccount:{namespace}:remote-applier" in message, message
    assert '"deployments"' in message and "forbidden" in message.lower(), message
    assert get_json(cluster, "deployment", "web-remote", "-n", namespace) is None


def test_a_cloud_provider_or_a_missing_config_map_is_named(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    repo.commit({"app/settings.yaml": configmap("never", value="1")})
    apply(
        cluster,
        cluster_config_map(cluster, namespace, "eks", provider="aws", serviceAccountName="x"),
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        *(
            kustomization(
                namespace,
                name,
                "repo",
                "./app",
                targetNamespace=namespace,
                kubeConfig={"configMapRef": {"name": config_map}},
            )
            for name, config_map in (("cloud", "eks"), ("absent", "nowhere"))
        ),
    )
    ks = wait_for_kustomization(cluster, namespace, "cloud", lambda o: bool(stalled_message(o)))
    assert stalled_message(ks) == (
        f"spec.kubeConfig.configMapRef: ConfigMap '{namespace}/eks': key 'provider': "
        "'aws' is a cloud provider, not supported by headwater (supported: generic)"
    )
    ks = wait_for_kustomization(
        cluster,
        namespace,
        "absent",
        lambda o: (condition(o, "Ready") or {}).get("status") == "False",
    )
    assert ready_message(ks) == (
        f"spec.kubeConfig.configMapRef: ConfigMap '{namespace}/nowhere' not found"
    )
    # Neither fell back to the local cluster.
    assert data_of(cluster, namespace, "never") is None
