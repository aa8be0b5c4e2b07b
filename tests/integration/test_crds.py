"""The CRDs in crds/ against a real API server.

Flux's documented examples must be accepted unchanged (nothing pruned, nothing
refused), and objects Flux would refuse must be refused here too, with an
error that names the offending field. The session fixture has installed
crds/ already.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import TestCluster

pytestmark = pytest.mark.integration

EXAMPLES_DIR = Path(__file__).parent / "data" / "flux-examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))

PLURALS = {
    "GitRepository": "gitrepositories",
    "HelmRepository": "helmrepositories",
    "HelmChart": "helmcharts",
    "OCIRepository": "ocirepositories",
    "Kustomization": "kustomizations",
    "HelmRelease": "helmreleases",
    "Provider": "providers",
    "Alert": "alerts",
    "Receiver": "receivers",
}

Manifest = dict[str, Any]


def load_examples(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def create(api: client.CustomObjectsApi, namespace: str, manifest: Manifest) -> Manifest:
    """Create `manifest` in `namespace`, refusing unknown fields instead of pruning them."""
    group, version = manifest["apiVersion"].split("/")
    body = copy.deepcopy(manifest)
    body["metadata"]["namespace"] = namespace
    created: Manifest = api.create_namespaced_custom_object(
        group,
        version,
        namespace,
        PLURALS[manifest["kind"]],
        body,
        field_validation="Strict",
    )
    return created


def read(api: client.CustomObjectsApi, namespace: str, manifest: Manifest) -> Manifest:
    group, version = manifest["apiVersion"].split("/")
    found: Manifest = api.get_namespaced_custom_object(
        group, version, namespace, PLURALS[manifest["kind"]], manifest["metadata"]["name"]
    )
    return found


def assert_contains(actual: Any, expected: Any, path: str = "spec") -> None:
    """Every value of `expected` is in `actual` unchanged; `actual` may add defaults."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} was dropped by the API server"
            assert_contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_contains(got, want, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: sent {expected!r}, read back {actual!r}"


def test_examples_cover_every_kind() -> None:
    kinds = {doc["kind"] for path in EXAMPLES for doc in load_examples(path)}
    assert kinds == set(PLURALS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_flux_example_is_accepted_unchanged(
    path: Path, api_client: client.ApiClient, namespace: str
) -> None:
    api = client.CustomObjectsApi(api_client)
    examples = load_examples(path)
    assert examples, f"{path.name} holds no manifest"
    for manifest in examples:
        create(api, namespace, manifest)
        stored = read(api, namespace, manifest)
        assert stored["kind"] == manifest["kind"]
        assert stored["metadata"]["name"] == manifest["metadata"]["name"]
        assert_contains(stored["spec"], manifest["spec"])


# --- objects Flux refuses -------------------------------------------------

GIT_REPOSITORY: Manifest = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "GitRepository",
    "metadata": {"name": "podinfo"},
    "spec": {
        "interval": "5m0s",
        "url": "https://github.com/stefanprodan/podinfo",
        "ref": {"branch": "master"},
    },
}
HELM_CHART: Manifest = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "HelmChart",
    "metadata": {"name": "podinfo"},
    "spec": {
        "interval": "5m0s",
        "chart": "podinfo",
        "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
    },
}
KUSTOMIZATION: Manifest = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": "podinfo"},
    "spec": {
        "interval": "10m",
        "path": "./kustomize",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "podinfo"},
    },
}
HELM_RELEASE: Manifest = {
    "apiVersion": "helm.toolkit.fluxcd.io/v2",
    "kind": "HelmRelease",
    "metadata": {"name": "podinfo"},
    "spec": {
        "interval": "10m",
        "chart": {
            "spec": {
                "chart": "podinfo",
                "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
            }
        },
    },
}
PROVIDER: Manifest = {
    "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
    "kind": "Provider",
    "metadata": {"name": "slack"},
    "spec": {"type": "slack", "channel": "general", "secretRef": {"name": "slack-url"}},
}
ALERT: Manifest = {
    "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
    "kind": "Alert",
    "metadata": {"name": "slack"},
    "spec": {
        "providerRef": {"name": "slack"},
        "eventSources": [{"kind": "Kustomization", "name": "*"}],
    },
}
RECEIVER: Manifest = {
    "apiVersion": "notification.toolkit.fluxcd.io/v1",
    "kind": "Receiver",
    "metadata": {"name": "github"},
    "spec": {
        "type": "github",
        "events": ["push"],
        "secretRef": {"name": "webhook-token"},
        "resources": [{"kind": "GitRepository", "name": "podinfo"}],
    },
}


def changed(base: Manifest, edit: Callable[[dict[str, Any]], None]) -> Manifest:
    manifest = copy.deepcopy(base)
    edit(manifest["spec"])
    return manifest


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return edit


def dropping(name: str) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        del spec[name]

    return edit


@dataclass(frozen=True)
class Invalid:
    id: str
    manifest: Manifest
    field: str  # the field path the API server must name
    says: str  # and a fragment of what it must say about it


INVALID = [
    Invalid(
        "interval-not-a-duration",
        changed(GIT_REPOSITORY, setting("interval", "5 minutes")),
        "spec.interval",
        "should match",
    ),
    Invalid(
        "git-url-scp-syntax",
        changed(GIT_REPOSITORY, setting("url", "git@github.com:x/y")),
        "spec.url",
        "should match",
    ),
    Invalid(
        "git-timeout-in-hours",
        changed(GIT_REPOSITORY, setting("timeout", "1h")),
        "spec.timeout",
        "should match",
    ),
    Invalid(
        "git-verify-mode-unknown",
        changed(GIT_REPOSITORY, setting("verify", {"mode": "All", "secretRef": {"name": "k"}})),
        "spec.verify.mode",
        "Unsupported value",
    ),
    Invalid(
        "git-service-account-without-cloud-provider",
        changed(GIT_REPOSITORY, setting("serviceAccountName", "sa")),
        "spec",
        "serviceAccountName can only be set when provider is 'azure' or 'aws'",
    ),
    Invalid(
        "helmchart-verify-from-git",
        changed(
            HELM_CHART,
            lambda spec: spec.update(
                sourceRef={"kind": "GitRepository", "name": "podinfo"},
                verify={"provider": "cosign"},
            ),
        ),
        "spec",
        "spec.verify is only supported when spec.sourceRef.kind is 'HelmRepository'",
    ),
    Invalid(
        "kustomization-without-prune",
        changed(KUSTOMIZATION, dropping("prune")),
        "spec.prune",
        "Required value",
    ),
    Invalid(
        "kustomization-without-sourceref",
        changed(KUSTOMIZATION, dropping("sourceRef")),
        "spec.sourceRef",
        "Required value",
    ),
    Invalid(
        "kustomization-source-kind-not-a-source",
        changed(KUSTOMIZATION, setting("sourceRef.kind", "HelmRepository")),
        "spec.sourceRef.kind",
        "Unsupported value",
    ),
    Invalid(
        "kustomization-two-kubeconfigs",
        changed(
            KUSTOMIZATION,
            setting("kubeConfig", {"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}),
        ),
        "spec.kubeConfig",
        "exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef",
    ),
    Invalid(
        "kustomization-empty-name-prefix",
        changed(KUSTOMIZATION, setting("namePrefix", "")),
        "spec.namePrefix",
        "at least 1 chars long",
    ),
    Invalid(
        "helmrelease-chart-and-chartref",
        changed(HELM_RELEASE, setting("chartRef", {"kind": "OCIRepository", "name": "podinfo"})),
        "spec",
        "either chart or chartRef must be set",
    ),
    Invalid(
        "helmrelease-neither-chart-nor-chartref",
        changed(HELM_RELEASE, dropping("chart")),
        "spec",
        "either chart or chartRef must be set",
    ),
    Invalid(
        "helmrelease-release-name-too-long",
        changed(HELM_RELEASE, setting("releaseName", "r" * 54)),
        "spec.releaseName",
        "may not be more than 53",
    ),
    Invalid(
        "helmrelease-retry-interval-with-remediate",
        changed(
            HELM_RELEASE,
            setting("install.strategy", {"name": "RemediateOnFailure", "retryInterval": "1m"}),
        ),
        "spec.install.strategy",
        ".retryInterval cannot be set when .name is 'RemediateOnFailure'",
    ),
    Invalid(
        "helmrelease-values-key-pattern",
        changed(
            HELM_RELEASE,
            setting("valuesFrom", [{"kind": "ConfigMap", "name": "v", "valuesKey": "a b"}]),
        ),
        "spec.valuesFrom[0].valuesKey",
        "should match",
    ),
    Invalid(
        "provider-type-unknown",
        changed(PROVIDER, setting("type", "carrier-pigeon")),
        "spec.type",
        "Unsupported value",
    ),
    Invalid(
        "provider-commit-status-on-slack",
        changed(PROVIDER, setting("commitStatusExpr", "'ok'")),
        "spec",
        "spec.commitStatusExpr is only supported",
    ),
    Invalid(
        "alert-severity-fatal",
        changed(ALERT, setting("eventSeverity", "fatal")),
        "spec.eventSeverity",
        "Unsupported value",
    ),
    Invalid(
        "alert-without-provider",
        changed(ALERT, dropping("providerRef")),
        "spec.providerRef",
        "Required value",
    ),
    Invalid(
        "alert-summary-too-long",
        changed(ALERT, setting("summary", "s" * 256)),
        "spec.summary",
        "may not be more than 255",
    ),
    Invalid(
        "receiver-without-secret",
        changed(RECEIVER, dropping("secretRef")),
        "spec",
        "secretRef is required when type is not generic-oidc",
    ),
    Invalid(
        "receiver-resource-kind-unknown",
        changed(RECEIVER, setting("resources", [{"kind": "Deployment", "name": "x"}])),
        "spec.resources[0].kind",
        "Unsupported value",
    ),
]


def error_of(exc: ApiException) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(exc.body)
    return status


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_object_is_refused_naming_the_field(
    case: Invalid, api_client: client.ApiClient, namespace: str
) -> None:
    api = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as raised:
        create(api, namespace, case.manifest)
    assert raised.value.status == 422, raised.value.body
    error = error_of(raised.value)
    assert error["reason"] == "Invalid"
    causes = error["details"]["causes"]
    matching = [c for c in causes if c.get("field") == case.field]
    assert matching, f"no cause names {case.field}: {causes}"
    assert any(case.says in c["message"] for c in matching), causes
    assert f"{case.field}:" in error["message"] or f"{case.field} " in error["message"]


def test_the_valid_bases_of_the_invalid_cases_are_accepted(
    api_client: client.ApiClient, namespace: str
) -> None:
    """So each refusal above is caused by its one change, not by the base object."""
    api = client.CustomObjectsApi(api_client)
    for manifest in (
        GIT_REPOSITORY,
        HELM_CHART,
        KUSTOMIZATION,
        HELM_RELEASE,
        PROVIDER,
        ALERT,
        RECEIVER,
    ):
        create(api, namespace, manifest)


# --- what the server adds and serves --------------------------------------


def test_defaults_are_filled_in_like_flux(api_client: client.ApiClient, namespace: str) -> None:
    api = client.CustomObjectsApi(api_client)
    git = create(api, namespace, GIT_REPOSITORY)
    assert git["spec"]["timeout"] == "60s"
    chart = create(api, namespace, HELM_CHART)
    assert chart["spec"]["version"] == "*"
    assert chart["spec"]["reconcileStrategy"] == "ChartVersion"
    release = create(api, namespace, HELM_RELEASE)
    assert release["spec"]["chart"]["spec"]["version"] == "*"
    alert = create(api, namespace, ALERT)
    assert alert["spec"]["eventSeverity"] == "info"
    receiver = create(api, namespace, RECEIVER)
    assert receiver["spec"]["interval"] == "10m"
    # Flux's sources, Kustomization and Receiver start with observedGeneration -1
    # (read from the create response: a running controller may reconcile it at once).
    assert git["status"] == {"observedGeneration": -1}


def test_status_is_a_subresource(api_client: client.ApiClient, namespace: str) -> None:
    api = client.CustomObjectsApi(api_client)
    # Suspended: the running kustomize controller must not write this status too.
    suspended = {**KUSTOMIZATION, "spec": {**KUSTOMIZATION["spec"], "suspend": True}}
    created = create(api, namespace, suspended)
    name = created["metadata"]["name"]
    status = {
        "observedGeneration": 1,
        "lastAppliedRevision": "main@sha1:0123456789abcdef0123456789abcdef01234567",
        "lastHandledReconcileAt": "2026-01-01T00:00:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "ReconciliationSucceeded",
                "message": "Applied revision: main@sha1:0123456789abcdef",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "inventory": {"entries": [{"id": "default_podinfo__Service", "v": "v1"}]},
    }
    api.patch_namespaced_custom_object_status(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        namespace,
        "kustomizations",
        name,
        {"status": status},
    )
    stored = read(api, namespace, KUSTOMIZATION)
    assert stored["status"] == status
    # A write to the main resource cannot change status.
    api.patch_namespaced_custom_object(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        namespace,
        "kustomizations",
        name,
        {"spec": {"suspend": True}, "status": {"lastAppliedRevision": "forged"}},
    )
    assert read(api, namespace, KUSTOMIZATION)["status"] == status


def test_kubectl_shows_flux_columns_short_names_and_categories(
    cluster: TestCluster, api_client: client.ApiClient, namespace: str
) -> None:
    api = client.CustomObjectsApi(api_client)
    for manifest in (GIT_REPOSITORY, HELM_CHART, KUSTOMIZATION, HELM_RELEASE, ALERT, RECEIVER):
        create(api, namespace, manifest)
    header = cluster.kubectl("get", "gitrepo", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "URL", "AGE", "READY", "STATUS"]
    header = cluster.kubectl("get", "ks", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "AGE", "READY", "STATUS"]
    header = cluster.kubectl("get", "alerts", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "AGE"]
    # The helm controller may already have created the HelmChart the release owns
    # (`<namespace>-<name>`, as Flux names it): not one of the objects made here.
    owned = f"helmchart.source.toolkit.fluxcd.io/{namespace}-podinfo"
    listed = cluster.kubectl("get", "gitrepo,hc,ks,hr", "-n", namespace, "-o", "name").stdout
    assert sorted(set(listed.split()) - {owned}) == [
        "gitrepository.source.toolkit.fluxcd.io/podinfo",
        "helmchart.source.toolkit.fluxcd.io/podinfo",
        "helmrelease.helm.toolkit.fluxcd.io/podinfo",
        "kustomization.kustomize.toolkit.fluxcd.io/podinfo",
    ]
    listed = cluster.kubectl("get", "fluxcd", "-n", namespace, "-o", "name").stdout
    assert len(set(listed.split()) - {owned}) == 6
