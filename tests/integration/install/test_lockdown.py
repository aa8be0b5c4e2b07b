"""The multi-tenant lockdown: tenants act as their own namespace's account, within it.

A kustomize controller runs with its own ServiceAccount token and the
lockdown's settings (HEADWATER_DEFAULT_SERVICE_ACCOUNT=default,
HEADWATER_NO_CROSS_NAMESPACE_REFS=true), as config/components/lockdown sets
them. Its tenants' Kustomizations carry no serviceAccountName.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import yaml

from tests.integration.install.conftest import LOCKED_SHARD, Identities, shard_labels
from tests.support.builders import configmap, git_repository, kustomization
from tests.support.cluster import TestCluster, apply, extra_namespace, get_json
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    condition,
    failed_on,
    ready_message,
    wait_for_kustomization,
    wait_for_object,
    wait_ready,
)

pytestmark = pytest.mark.integration


def cluster_role(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
    }


def edit_in_namespace(namespace: str) -> dict[str, Any]:
    """What a platform grants a tenant: `edit` on its own namespace, for its default account."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tenant-edit", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }


def test_a_tenant_without_a_service_account_acts_as_its_default_account(
    cluster: TestCluster,
    namespace: str,
    identities: Identities,
    locked_kustomize: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    ns = namespace
    shard = shard_labels(LOCKED_SHARD)
    role_name = f"tenant-escalation-{secrets.token_hex(3)}"
    repo = git_repos.create()
    head = repo.commit(
        {
            "app/settings.yaml": yaml.safe_dump(configmap(None, "settings", {"tenant": ns})),
            "escalate/role.yaml": yaml.safe_dump(cluster_role(role_name)),
        }
    )
    apply(
        cluster,
        edit_in_namespace(ns),
        git_repository(ns, "tenant", git_http_server.url(repo.name), metadata=shard),
        kustomization(ns, "app", "tenant", "./app", targetNamespace=ns, metadata=shard),
        kustomization(ns, "escalate", "tenant", "./escalate", metadata=shard),
    )
    # What the platform granted the tenant's account is applied...
    wait_for_kustomization(cluster, ns, "app", applied(head), timeout=90, what="tenant app")
    assert (get_json(cluster, "configmap", "settings", "-n", ns) or {}).get("data") == {
        "tenant": ns
    }
    # ...a ClusterRole is not: the API server refuses the tenant's account,
    # though the controller itself is cluster-admin.
    refused = wait_for_kustomization(
        cluster, ns, "escalate", failed_on(head), timeout=90, what="the ClusterRole refused"
    )
    message = ready_message(refused)
    # Server-side apply creates with a PATCH, so that is the verb refused (as in Flux).
    assert message.startswith(f"ClusterRole/{role_name} dry-run failed (Forbidden)"), message
    assert f'User "system:serviceaccount:{ns}:default" cannot patch resource "clusterroles"' in (
        message
    )
    assert get_json(cluster, "clusterrole", role_name) is None


def test_a_source_in_another_namespace_is_stalled_naming_the_field_and_both_namespaces(
    cluster: TestCluster,
    namespace: str,
    identities: Identities,
    locked_kustomize: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    ns = namespace
    shard = shard_labels(LOCKED_SHARD)
    repo = git_repos.create()
    repo.commit({"app/settings.yaml": yaml.safe_dump(configmap(None, "settings", {"a": "b"}))})
    with extra_namespace(cluster, f"{ns[:50]}-platform") as other:
        apply(
            cluster,
            git_repository(other, "shared", git_http_server.url(repo.name), metadata=shard),
        )
        wait_ready(cluster, other, "gitrepository", "shared", timeout=90)
        apply(
            cluster,
            kustomization(
                ns,
                "borrowed",
                "shared",
                "./app",
                sourceRef={"kind": "GitRepository", "name": "shared", "namespace": other},
                metadata=shard,
            ),
        )

        def stalled(obj: dict[str, Any]) -> bool:
            found = condition(obj, "Stalled")
            return bool(found and found["status"] == "True")

        obj = wait_for_object(
            cluster, ns, "kustomization", "borrowed", stalled, timeout=60, what="Stalled"
        )
        ready = condition(obj, "Ready") or {}
        assert ready.get("status") == "False"
        assert ready.get("reason") == "AccessDenied"
        message = str(ready.get("message"))
        assert message.startswith("spec.sourceRef:"), message
        assert f"GitRepository '{other}/shared'" in message, message
        assert f"namespace '{ns}'" in message, message
        assert "cross-namespace references have been blocked" in message
        # Nothing was applied from the other namespace's source.
        assert get_json(cluster, "configmap", "settings", "-n", ns) is None
