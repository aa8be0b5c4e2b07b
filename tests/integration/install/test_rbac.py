"""Least privilege: the source, notification and image controllers get exactly the verbs they use.

The expected rules below are the API calls in the code (listed in
docs/operations.md, "RBAC"), not a copy of config/: widening a rule in
config/ (a `*`, a new verb or resource) fails the first test, and the
second shows the API server refusing, for the source controller's own
token, what the rules leave out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import secret
from tests.support.cluster import TestCluster, apply, kubectl_json
from tests.support.install import SYSTEM_NAMESPACE, as_account

pytestmark = pytest.mark.integration

Rule = tuple[str, str, str]  # (API group, resource, verb)

WATCHED = ("list", "watch")
EVENTS = {("", "events", "create"), ("", "events", "patch")}
KOPF_CRD_WATCH = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in WATCHED}
LEASES = {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
SOURCE_KINDS = ("gitrepositories", "helmrepositories", "helmcharts", "ocirepositories")
IMAGE_KINDS = ("imagerepositories", "imagepolicies", "imageupdateautomations")
FLUX_TARGETS = {
    "source.toolkit.fluxcd.io": (
        "buckets",
        "gitrepositories",
        "helmcharts",
        "helmrepositories",
        "ocirepositories",
        "externalartifacts",
    ),
    "kustomize.toolkit.fluxcd.io": ("kustomizations",),
    "helm.toolkit.fluxcd.io": ("helmreleases",),
    "image.toolkit.fluxcd.io": ("imagerepositories", "imagepolicies", "imageupdateautomations"),
    "source.extensions.fluxcd.io": ("artifactgenerators",),
}

EXPECTED_CLUSTER_RULES: dict[str, set[Rule]] = {
    "headwater-source-controller": {
        *(
            ("source.toolkit.fluxcd.io", kind, v)
            for kind in SOURCE_KINDS
            for v in (*WATCHED, "patch")
        ),
        *(("source.toolkit.fluxcd.io", f"{kind}/status", "patch") for kind in SOURCE_KINDS),
        ("", "secrets", "get"),
        *EVENTS,
        *KOPF_CRD_WATCH,
    },
    "headwater-notification-controller": {
        *(("notification.toolkit.fluxcd.io", "receivers", v) for v in (*WATCHED, "patch")),
        ("notification.toolkit.fluxcd.io", "receivers/status", "patch"),
        *(
            ("notification.toolkit.fluxcd.io", kind, v)
            for kind in ("alerts", "providers")
            for v in WATCHED
        ),
        *(
            (group, kind, v)
            for group, kinds in FLUX_TARGETS.items()
            for kind in kinds
            for v in ("get", "list", "patch")
        ),
        ("", "secrets", "get"),
        *EVENTS,
        *KOPF_CRD_WATCH,
    },
    "headwater-image-controller": {
        *(
            ("image.toolkit.fluxcd.io", kind, v)
            for kind in IMAGE_KINDS
            for v in (*WATCHED, "patch")
        ),
        *(("image.toolkit.fluxcd.io", f"{kind}/status", "patch") for kind in IMAGE_KINDS),
        *(("source.toolkit.fluxcd.io", "gitrepositories", v) for v in WATCHED),
        ("", "secrets", "get"),
        ("", "namespaces", "get"),
        *EVENTS,
        *KOPF_CRD_WATCH,
    },
}


def expand(rules: list[dict[str, Any]]) -> set[Rule]:
    """Every (group, resource, verb) a role's rules grant; fails on anything not spelled out."""
    granted: set[Rule] = set()
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"a wildcard in {field}: {rule}"
        granted |= {
            (group, resource, verb)
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    return granted


def bindings_of(cluster: TestCluster, account: str) -> list[tuple[str, str, str]]:
    """(binding kind, namespace, role name) of every binding naming the ServiceAccount."""
    found = []
    for kind in ("clusterrolebindings", "rolebindings"):
        for item in kubectl_json(cluster, "get", kind, "-A")["items"]:
            subjects = item.get("subjects") or []
            if any(
                s.get("kind") == "ServiceAccount"
                and s.get("name") == account
                and s.get("namespace") == SYSTEM_NAMESPACE
                for s in subjects
            ):
                namespace = item["metadata"].get("namespace", "")
                found.append((kind, namespace, item["roleRef"]["name"]))
    return sorted(found)


@pytest.mark.parametrize("controller", ["source", "notification", "image"])
def test_source_notification_and_image_hold_exactly_the_rules_their_code_needs(
    cluster: TestCluster, installed: str, controller: str
) -> None:
    account = f"{controller}-controller"
    cluster_role = f"headwater-{account}"
    # Bound to nothing but its own ClusterRole and its Lease Role.
    assert bindings_of(cluster, account) == [
        ("clusterrolebindings", "", cluster_role),
        ("rolebindings", SYSTEM_NAMESPACE, f"{account}-leader-election"),
    ]
    granted = expand(kubectl_json(cluster, "get", "clusterrole", cluster_role)["rules"])
    assert granted == EXPECTED_CLUSTER_RULES[cluster_role]
    # Leases only in the controllers' own namespace, and only these verbs.
    lease_role = kubectl_json(
        cluster, "get", "role", f"{account}-leader-election", "-n", SYSTEM_NAMESPACE
    )
    assert expand(lease_role["rules"]) == LEASES


def test_what_the_rules_leave_out_is_refused_for_the_source_controllers_token(
    cluster: TestCluster, namespace: str, kubeconfigs: dict[str, Path]
) -> None:
    source = as_account(cluster, kubeconfigs["source"])
    apply(cluster, secret(namespace, "git-auth", {"username": "git", "password": "x"}))
    # Granted: reading one Secret by name (a secretRef).
    assert source.kubectl("get", "secret", "git-auth", "-n", namespace).returncode == 0
    refused = [
        ("list", "secrets", ["get", "secrets", "-n", namespace]),
        ("create", "configmaps", ["create", "configmap", "x", "-n", namespace]),
        ("delete", "secrets", ["delete", "secret", "git-auth", "-n", namespace]),
        ("delete", "gitrepositories", ["delete", "gitrepository", "any", "-n", namespace]),
        ("list", "kustomizations", ["get", "kustomizations", "-n", namespace]),
        ("create", "leases", ["create", "-n", namespace, "-f", "-"]),
    ]
    lease = (
        '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease",'
        '"metadata":{"name":"not-ours"},"spec":{}}'
    )
    for verb, resource, args in refused:
        result = source.kubectl(
            *args, input=lease if verb == "create" and resource == "leases" else None, check=False
        )
        assert result.returncode != 0, (verb, resource)
        assert "is forbidden" in result.stderr, result.stderr
        assert f'cannot {verb} resource "{resource}"' in result.stderr, result.stderr
        assert "system:serviceaccount:headwater-system:source-controller" in result.stderr
    # The kustomize controller applies arbitrary objects: like Flux, cluster-admin.
    kustomize = as_account(cluster, kubeconfigs["kustomize"])
    assert kustomize.kubectl("create", "configmap", "x", "-n", namespace).returncode == 0


def test_the_image_controller_reads_git_repositories_but_cannot_change_them(
    cluster: TestCluster, namespace: str, kubeconfigs: dict[str, Path]
) -> None:
    image = as_account(cluster, kubeconfigs["image"])
    assert image.kubectl("get", "gitrepositories", "-n", namespace).returncode == 0
    for args, verb, resource in [
        (["delete", "gitrepository", "any", "-n", namespace], "delete", "gitrepositories"),
        (["get", "secrets", "-n", namespace], "list", "secrets"),
        (["get", "kustomizations", "-n", namespace], "list", "kustomizations"),
    ]:
        result = image.kubectl(*args, check=False)
        assert result.returncode != 0, args
        assert f'cannot {verb} resource "{resource}"' in result.stderr, result.stderr
