"""spec.kubeConfig.secretRef: a release in the cluster a kubeconfig Secret names.

The "remote cluster" is this one reached as another identity, as in the
Kustomization's kubeConfig test: a second control plane is too heavy for a test.
Each kubeconfig authenticates as a ServiceAccount token; what that account may and
may not do proves the Secret's kubeconfig, not the controller's, reached helm.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.builders import helm_release, secret
from tests.support.charts import Charts
from tests.support.cluster import TestCluster, apply, get_json, token_kubeconfig, wait_for
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import helm_history
from tests.support.status import condition, has_condition, is_ready, wait_for_helmrelease

pytestmark = pytest.mark.integration


def account(namespace: str, name: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ServiceAccount with a Role of `rules` in `namespace`."""
    meta = {"name": name, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def remote_release(namespace: str, name: str, secret_ref: dict[str, str], **spec: Any) -> Any:
    return helm_release(
        namespace,
        name,
        chartRef={"kind": "HelmChart", "name": "wordpress"},
        kubeConfig={"secretRef": secret_ref},
        **spec,
    )


def test_a_release_goes_to_the_cluster_of_its_kubeconfig_secret(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    # helm can read its storage as this one, and write nothing.
    reader = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]
    apply(
        cluster,
        *account(namespace, "remote-admin", everything),
        *account(namespace, "remote-reader", reader),
        charts.helm_chart("wordpress"),
    )
    apply(
        cluster,
        secret(namespace, "prod", {"value": token_kubeconfig(cluster, namespace, "remote-admin")}),
        secret(
            namespace, "audit", {"config": token_kubeconfig(cluster, namespace, "remote-reader")}
        ),
    )
    charts.publish("1.0.0")

    apply(cluster, remote_release(namespace, "blog", {"name": "prod"}))
    obj = wait_for_helmrelease(
        cluster, namespace, "blog", is_ready("True", "InstallSucceeded"), what="remote install"
    )
    assert obj["status"]["history"][0]["version"] == 1
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == ["deployed"]
    assert get_json(cluster, "deployment", "blog-web", "-n", namespace) is not None

    # A values change is an upgrade there too: the release's storage is read remotely.
    apply(cluster, remote_release(namespace, "blog", {"name": "prod"}, values={"replicaCount": 2}))
    wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            is_ready("True", "UpgradeSucceeded")(o) and o["status"]["history"][0]["version"] == 2
        ),
        what="remote upgrade",
    )
    web = get_json(cluster, "deployment", "blog-web", "-n", namespace)
    assert web is not None and web["spec"]["replicas"] == 2

    # Another key of another Secret, an identity that may not write: helm says so, naming it.
    apply(cluster, remote_release(namespace, "audit", {"name": "audit", "key": "config"}))
    obj = wait_for_helmrelease(
        cluster, namespace, "audit", has_condition("Ready", "False", "InstallFailed")
    )
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert f'User "system:serviceaccount:{namespace}:remote-reader" cannot' in message, message
    assert helm_history(cluster, namespace, "audit") == []

    # A Secret that is not there is named.
    apply(cluster, remote_release(namespace, "absent", {"name": "nowhere"}))
    obj = wait_for_helmrelease(
        cluster, namespace, "absent", has_condition("Ready", "False", "ReconciliationFailed")
    )
    assert condition(obj, "Ready")["message"] == (  # type: ignore[index]
        f"spec.kubeConfig.secretRef: key 'value' of Secret '{namespace}/nowhere' not found"
    )

    # Deleting the HelmRelease uninstalls it from the remote cluster.
    cluster.kubectl("delete", "helmrelease", "blog", "-n", namespace, "--wait=true")
    assert helm_history(cluster, namespace, "blog") == []
    wait_for(
        lambda: get_json(cluster, "deployment", "blog-web", "-n", namespace) is None,
        what="the remote release's objects gone",
    )
