"""The CRD files in crds/: names, versions, columns and schema shape (no cluster).

These checks pin what Flux-compatibility needs from the files themselves; the
integration test (tests/integration/test_crds.py) checks that a real API
server accepts them and validates objects with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
READY_STATUS = '.status.conditions[?(@.type=="Ready")].status'
READY_MESSAGE = '.status.conditions[?(@.type=="Ready")].message'


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str
    short_names: tuple[str, ...]
    category: str
    has_status: bool
    extra_columns: tuple[tuple[str, str], ...] = ()

    @property
    def file_name(self) -> str:
        return f"{self.group}_{self.plural}.yaml"


KINDS = [
    Kind(
        "GitRepository",
        "source.toolkit.fluxcd.io",
        "v1",
        "gitrepositories",
        ("gitrepo",),
        "fluxcd-sources",
        True,
        (("URL", ".spec.url"),),
    ),
    Kind(
        "HelmRepository",
        "source.toolkit.fluxcd.io",
        "v1",
        "helmrepositories",
        ("helmrepo",),
        "fluxcd-sources",
        True,
        (("URL", ".spec.url"),),
    ),
    Kind(
        "HelmChart",
        "source.toolkit.fluxcd.io",
        "v1",
        "helmcharts",
        ("hc",),
        "fluxcd-sources",
        True,
        (
            ("Chart", ".spec.chart"),
            ("Version", ".spec.version"),
            ("Source Kind", ".spec.sourceRef.kind"),
            ("Source Name", ".spec.sourceRef.name"),
        ),
    ),
    Kind(
        "OCIRepository",
        "source.toolkit.fluxcd.io",
        "v1",
        "ocirepositories",
        ("ocirepo",),
        "fluxcd-sources",
        True,
        (("URL", ".spec.url"),),
    ),
    Kind(
        "Kustomization",
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
        ("ks",),
        "fluxcd-appliers",
        True,
    ),
    Kind(
        "HelmRelease",
        "helm.toolkit.fluxcd.io",
        "v2",
        "helmreleases",
        ("hr",),
        "fluxcd-appliers",
        True,
    ),
    # Flux's v1beta3 Provider and Alert have no status at all.
    Kind(
        "Provider",
        "notification.toolkit.fluxcd.io",
        "v1beta3",
        "providers",
        (),
        "fluxcd-notifications",
        False,
    ),
    Kind(
        "Alert",
        "notification.toolkit.fluxcd.io",
        "v1beta3",
        "alerts",
        (),
        "fluxcd-notifications",
        False,
    ),
    Kind(
        "Receiver",
        "notification.toolkit.fluxcd.io",
        "v1",
        "receivers",
        (),
        "fluxcd-notifications",
        True,
    ),
    Kind(
        "ImageRepository",
        "image.toolkit.fluxcd.io",
        "v1",
        "imagerepositories",
        (),
        "fluxcd-image",
        True,
        (
            ("Last scan", ".status.lastScanResult.scanTime"),
            ("Tags", ".status.lastScanResult.tagCount"),
        ),
    ),
    Kind(
        "ImagePolicy",
        "image.toolkit.fluxcd.io",
        "v1",
        "imagepolicies",
        ("imgpol", "imagepol"),
        "fluxcd-image",
        True,
        (("Image", ".status.latestRef.name"), ("Tag", ".status.latestRef.tag")),
    ),
    Kind(
        "ImageUpdateAutomation",
        "image.toolkit.fluxcd.io",
        "v1",
        "imageupdateautomations",
        (),
        "fluxcd-image",
        True,
        (("Last run", ".status.lastAutomationRunTime"),),
    ),
]
KIND_IDS = [k.kind for k in KINDS]

# Where a schema may stop pruning: only where Flux does (free-form Helm values).
PRESERVE_UNKNOWN_PATHS = {("HelmRelease", "spec.values")}


def load(kind: Kind) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((CRDS_DIR / kind.file_name).read_text()) if d]
    assert len(docs) == 1, f"{kind.file_name} must hold exactly one document"
    doc: dict[str, Any] = docs[0]
    return doc


def version_of(kind: Kind) -> dict[str, Any]:
    versions: list[dict[str, Any]] = load(kind)["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def root_schema(kind: Kind) -> dict[str, Any]:
    schema: dict[str, Any] = version_of(kind)["schema"]["openAPIV3Schema"]
    return schema


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema node at a dotted property path; `[]` steps into array items."""
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node under `node`, with its dotted path."""
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}.[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}.{{}}")
    return found


def test_every_kind_has_exactly_one_file_and_nothing_else_is_there() -> None:
    files = sorted(p.name for p in CRDS_DIR.glob("*.yaml"))
    assert files == sorted(k.file_name for k in KINDS)
    kinds_in_files = sorted(
        yaml.safe_load(p.read_text())["spec"]["names"]["kind"] for p in CRDS_DIR.glob("*.yaml")
    )
    assert kinds_in_files == sorted(KIND_IDS)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_identity_matches_flux(kind: Kind) -> None:
    crd = load(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{kind.plural}.{kind.group}"
    spec = crd["spec"]
    assert spec["group"] == kind.group
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == kind.kind
    assert names["listKind"] == f"{kind.kind}List"
    assert names["plural"] == kind.plural
    assert names["singular"] == kind.kind.lower()
    assert tuple(names.get("shortNames", ())) == kind.short_names
    assert names["categories"] == ["all", "fluxcd", kind.category]
    version = version_of(kind)
    assert version["name"] == kind.version
    assert version["served"] is True
    assert version["storage"] is True


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_printer_columns(kind: Kind) -> None:
    columns = [
        (c["name"], c["jsonPath"], c["type"]) for c in version_of(kind)["additionalPrinterColumns"]
    ]
    expected = [(name, path, "string") for name, path in kind.extra_columns]
    expected.append(("Age", ".metadata.creationTimestamp", "date"))
    if kind.has_status:
        expected += [("Ready", READY_STATUS, "string"), ("Status", READY_MESSAGE, "string")]
    assert columns == expected


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_status_subresource_only_where_flux_has_status(kind: Kind) -> None:
    version = version_of(kind)
    has_subresource = "status" in version.get("subresources", {})
    has_schema = "status" in root_schema(kind)["properties"]
    assert has_subresource is kind.has_status
    assert has_schema is kind.has_status


@pytest.mark.parametrize("kind", [k for k in KINDS if k.has_status], ids=lambda k: k.kind)
def test_status_has_the_common_fields(kind: Kind) -> None:
    status = at(root_schema(kind), "status")
    observed_generation = status["properties"]["observedGeneration"]
    assert (observed_generation["type"], observed_generation["format"]) == ("integer", "int64")
    assert status["properties"]["lastHandledReconcileAt"]["type"] == "string"
    condition = at(status, "conditions.[]")
    assert sorted(condition["required"]) == [
        "lastTransitionTime",
        "message",
        "reason",
        "status",
        "type",
    ]
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert condition["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert condition["properties"]["observedGeneration"]["minimum"] == 0


@pytest.mark.parametrize(
    "kind",
    [k for k in KINDS if k.kind in {"GitRepository", "HelmRepository", "HelmChart"}],
    ids=lambda k: k.kind,
)
def test_sources_publish_an_artifact(kind: Kind) -> None:
    artifact = at(root_schema(kind), "status.artifact")
    assert sorted(artifact["properties"]) == [
        "digest",
        "lastUpdateTime",
        "metadata",
        "path",
        "revision",
        "size",
        "url",
    ]
    assert set(artifact["required"]) >= {"path", "url", "revision", "lastUpdateTime"}
    assert artifact["properties"]["metadata"]["additionalProperties"] == {"type": "string"}


def test_kind_specific_status_fields() -> None:
    by_kind = {k.kind: at(root_schema(k), "status")["properties"] for k in KINDS if k.has_status}
    assert {
        "includedArtifacts",
        "observedIgnore",
        "observedRecurseSubmodules",
        "observedInclude",
        "observedSparseCheckout",
        "sourceVerificationMode",
    } <= set(by_kind["GitRepository"])
    ks = by_kind["Kustomization"]
    assert {
        "lastAppliedRevision",
        "lastAttemptedRevision",
        "lastAppliedOriginRevision",
        "inventory",
        "history",
    } <= set(ks)
    assert sorted(ks["inventory"]["properties"]["entries"]["items"]["required"]) == ["id", "v"]
    hr = by_kind["HelmRelease"]
    assert {
        "helmChart",
        "history",
        "inventory",
        "lastAttemptedReleaseAction",
        "lastAttemptedRevision",
        "lastAttemptedConfigDigest",
        "failures",
        "installFailures",
        "upgradeFailures",
        "lastHandledForceAt",
        "lastHandledResetAt",
    } <= set(hr)
    assert by_kind["Receiver"]["webhookPath"]["type"] == "string"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_schema_is_structural(kind: Kind) -> None:
    """What the API server demands of a structural schema, checked early."""
    for path, node in walk(root_schema(kind)):
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        if preserve:
            assert (kind.kind, path) in PRESERVE_UNKNOWN_PATHS, path
        else:
            assert "type" in node, f"{path or '<root>'} has no type"
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{path}: required {name} is not a property"
        if "pattern" in node:
            re.compile(node["pattern"])
        if "default" in node:
            check_value(node, node["default"], path)
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["rule"].strip() and rule["message"].strip()


def check_value(node: dict[str, Any], value: Any, path: str) -> None:
    """A default must itself be valid, or the API server refuses the CRD."""
    types = {"string": str, "boolean": bool, "integer": int, "object": dict, "array": list}
    assert isinstance(value, types[node["type"]]), f"{path}: default {value!r}"
    if "enum" in node:
        assert value in node["enum"], f"{path}: default {value!r} not in enum"
    if "pattern" in node:
        assert re.search(node["pattern"], value), f"{path}: default {value!r} fails pattern"
    if isinstance(value, dict):
        for key, item in value.items():
            check_value(node["properties"][key], item, f"{path}.{key}")


# Every Go-duration field Flux declares, and the pattern it uses; `ms|s|m` for
# the fields Flux limits to less than an hour.
SHORT_DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"
DURATIONS = [
    ("GitRepository", "spec.interval", DURATION_PATTERN),
    ("GitRepository", "spec.timeout", SHORT_DURATION_PATTERN),
    ("HelmRepository", "spec.interval", DURATION_PATTERN),
    ("HelmRepository", "spec.timeout", SHORT_DURATION_PATTERN),
    ("HelmChart", "spec.interval", DURATION_PATTERN),
    ("Kustomization", "spec.interval", DURATION_PATTERN),
    ("Kustomization", "spec.retryInterval", DURATION_PATTERN),
    ("Kustomization", "spec.timeout", DURATION_PATTERN),
    ("HelmRelease", "spec.interval", DURATION_PATTERN),
    ("HelmRelease", "spec.timeout", DURATION_PATTERN),
    ("HelmRelease", "spec.chart.spec.interval", DURATION_PATTERN),
    ("HelmRelease", "spec.install.strategy.retryInterval", DURATION_PATTERN),
    ("HelmRelease", "spec.upgrade.strategy.retryInterval", DURATION_PATTERN),
    ("HelmRelease", "spec.test.timeout", DURATION_PATTERN),
    ("Provider", "spec.timeout", SHORT_DURATION_PATTERN),
    ("Receiver", "spec.interval", DURATION_PATTERN),
    ("ImageRepository", "spec.interval", DURATION_PATTERN),
    ("ImageRepository", "spec.timeout", DURATION_PATTERN),
    ("ImagePolicy", "spec.interval", DURATION_PATTERN),
    ("ImageUpdateAutomation", "spec.interval", DURATION_PATTERN),
]


@pytest.mark.parametrize(("kind_name", "path", "pattern"), DURATIONS)
def test_durations_use_flux_pattern(kind_name: str, path: str, pattern: str) -> None:
    kind = next(k for k in KINDS if k.kind == kind_name)
    node = at(root_schema(kind), path)
    assert node["type"] == "string"
    assert node["pattern"] == pattern
    assert re.search(pattern, "1m30s")
    assert not re.search(pattern, "5 minutes")


@pytest.mark.parametrize(
    ("kind_name", "required"),
    [
        ("GitRepository", {"interval", "url"}),
        ("HelmRepository", {"url"}),
        ("HelmChart", {"chart", "interval", "sourceRef"}),
        ("Kustomization", {"interval", "prune", "sourceRef"}),
        ("HelmRelease", {"interval"}),
        ("Provider", {"type"}),
        ("Alert", {"eventSources", "providerRef"}),
        ("Receiver", {"resources", "type"}),
        ("ImageRepository", {"image", "interval"}),
        ("ImagePolicy", {"imageRepositoryRef", "policy"}),
        ("ImageUpdateAutomation", {"interval", "sourceRef"}),
    ],
)
def test_required_spec_fields(kind_name: str, required: set[str]) -> None:
    kind = next(k for k in KINDS if k.kind == kind_name)
    assert set(at(root_schema(kind), "spec")["required"]) == required


def test_git_url_pattern_refuses_scp_syntax() -> None:
    pattern = at(root_schema(KINDS[0]), "spec.url")["pattern"]
    assert re.search(pattern, "https://github.com/stefanprodan/podinfo")
    assert re.search(pattern, "ssh://git@github.com/stefanprodan/podinfo")
    assert not re.search(pattern, "git@github.com:stefanprodan/podinfo")


def test_enums_and_defaults_follow_flux() -> None:
    schemas = {k.kind: root_schema(k) for k in KINDS}
    ks = schemas["Kustomization"]
    # sealedsecrets is headwater's additive extension; Flux's value stays first.
    assert at(ks, "spec.decryption.provider")["enum"] == ["sops", "sealedsecrets"]
    assert at(ks, "spec.sourceRef.kind")["enum"] == [
        "OCIRepository",
        "GitRepository",
        "Bucket",
        "ExternalArtifact",
    ]
    alert = schemas["Alert"]
    assert at(alert, "spec.eventSeverity")["enum"] == ["info", "error"]
    assert at(alert, "spec.eventSeverity")["default"] == "info"
    assert at(schemas["GitRepository"], "spec.timeout")["default"] == "60s"
    assert at(schemas["GitRepository"], "spec.verify.mode")["default"] == "HEAD"
    assert at(schemas["HelmChart"], "spec.version")["default"] == "*"
    assert at(schemas["HelmChart"], "spec.reconcileStrategy")["default"] == "ChartVersion"
    assert at(schemas["Receiver"], "spec.interval")["default"] == "10m"
    for name in ("GitRepository", "HelmRepository", "HelmChart", "Kustomization", "Receiver"):
        assert at(schemas[name], "status")["default"] == {"observedGeneration": -1}


def test_helmrelease_needs_exactly_one_of_chart_and_chart_ref() -> None:
    spec = at(root_schema(next(k for k in KINDS if k.kind == "HelmRelease")), "spec")
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert rules == [
        "(has(self.chart) && !has(self.chartRef)) || (!has(self.chart) && has(self.chartRef))"
    ]
    assert at(spec, "values")["x-kubernetes-preserve-unknown-fields"] is True
