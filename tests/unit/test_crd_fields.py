"""Every field a CRD accepts is handled by its controller or refused by name.

The walk covers every property under `spec` of every CRD in crds/, nested
objects and list items included. A field counts as handled when its JSON
name is a string constant (read from the AST, so comments and docstrings do
not count) in the code of the controller package that serves the kind or in
controllers/toolkit; otherwise its dotted path must be in that kind's
`UNSUPPORTED_FIELDS` (controllers/toolkit/runtime/fields.py), which its
parser refuses with Stalled=True. Each refusal must name a path the CRD has,
and, for the kinds whose spec parser runs without the cluster (`PARSERS`), an
object setting it must stall naming it; so must the values of Flux's enums that
are refused by value (`REFUSED_VALUES`).
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD

ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = ROOT / "crds"
TOOLKIT = ROOT / "controllers" / "toolkit"


@dataclass(frozen=True)
class Served:
    package: str  # the controller package, relative to the repository root
    spec_module: str  # where UNSUPPORTED_FIELDS lives (the module that parses the spec)


SERVED: dict[str, Served] = {
    "GitRepository": Served("controllers/source", "controllers.source.spec"),
    "HelmRepository": Served("controllers/source", "controllers.source.helmrepository"),
    "HelmChart": Served("controllers/source", "controllers.source.helmchart"),
    "OCIRepository": Served("controllers/source", "controllers.source.ocirepository"),
    "Kustomization": Served("controllers/kustomize", "controllers.kustomize.spec"),
    "Provider": Served("controllers/notification", "controllers.notification.providers.config"),
    "Alert": Served("controllers/notification", "controllers.notification.matching"),
    "Receiver": Served("controllers/notification", "controllers.notification.receiver"),
    "HelmRelease": Served("controllers/helm", "controllers.helm.spec"),
    "ImageRepository": Served("controllers/image", "controllers.image.repositoryspec"),
    "ImagePolicy": Served("controllers/image", "controllers.image.policyspec"),
    "ImageUpdateAutomation": Served("controllers/image", "controllers.image.automationspec"),
}

# Kinds a CRD is installed for that no controller serves yet: their fields are
# not walked, and the README must not claim them. Empty: every kind is served.
NOT_SERVED_YET: set[str] = set()


def crd_documents() -> Iterator[Mapping[str, Any]]:
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield document


def spec_paths(schema: Mapping[str, Any], prefix: str = "spec") -> Iterator[str]:
    """Every property path under `schema`, list items walked as their list (`spec.a.b`)."""
    for name, child in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        yield path
        yield from spec_paths(child, path)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from spec_paths(items, prefix)


def schema_fields() -> dict[str, set[str]]:
    """Kind -> every spec path of its served versions."""
    fields: dict[str, set[str]] = {}
    for crd in crd_documents():
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            fields.setdefault(kind, set()).update(spec_paths(spec))
    return fields


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are bare expression statements (docstrings and the like)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


@cache
def string_constants(package: str) -> frozenset[str]:
    """The string constants in the code of `package` and the toolkit, docstrings excluded."""
    found: set[str] = set()
    for directory in (ROOT / package, TOOLKIT):
        for path in sorted(directory.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            skip = _docstring_nodes(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in skip
                ):
                    found.add(node.value)
    return frozenset(found)


def covered(path: str, listed: Collection[str]) -> bool:
    """`path` or one of its parents is listed (a refused object refuses its fields)."""
    parts = path.split(".")
    return any(".".join(parts[:end]) in listed for end in range(2, len(parts) + 1))


def unsupported_fields(kind: str) -> Mapping[str, str]:
    module = importlib.import_module(SERVED[kind].spec_module)
    refused: Mapping[str, str] = getattr(module, "UNSUPPORTED_FIELDS", {})
    return refused


def test_every_crd_kind_is_served_or_listed_as_not_served_yet() -> None:
    kinds = set(schema_fields())
    assert kinds == set(SERVED) | NOT_SERVED_YET


def test_every_spec_field_is_handled_or_refused() -> None:
    offending = []
    for kind, paths in sorted(schema_fields().items()):
        if kind in NOT_SERVED_YET:
            continue
        constants = string_constants(SERVED[kind].package)
        refused = unsupported_fields(kind)
        for path in sorted(paths):
            name = path.rsplit(".", 1)[-1]
            if name in constants or covered(path, refused):
                continue
            offending.append(f"{kind} {path}")
    assert not offending, "neither handled nor in UNSUPPORTED_FIELDS:\n" + "\n".join(offending)


def test_every_refusal_names_a_field_of_its_crd() -> None:
    fields = schema_fields()
    stale = [
        f"{kind} {path}"
        for kind in sorted(SERVED)
        for path in sorted(unsupported_fields(kind))
        if path not in fields[kind]
    ]
    assert not stale, "UNSUPPORTED_FIELDS names paths the CRD does not have:\n" + "\n".join(stale)


def test_every_refusal_says_why() -> None:
    silent = [
        f"{kind} {path}"
        for kind in sorted(SERVED)
        for path, why in unsupported_fields(kind).items()
        if not why.strip()
    ]
    assert not silent


def test_no_refusal_list_outside_the_spec_modules_the_walk_reads() -> None:
    """A refusal list in a module this test does not read would be silently skipped."""
    known = {SERVED[kind].spec_module for kind in SERVED}
    unread = []
    for package in sorted({served.package for served in SERVED.values()}):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in tree.body:
                targets = (
                    [node.target]
                    if isinstance(node, ast.AnnAssign)
                    else node.targets
                    if isinstance(node, ast.Assign)
                    else []
                )
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if "UNSUPPORTED_FIELDS" in names and module not in known:
                    unread.append(module)
    assert not unread


def readme_blocks(text: str) -> list[str]:
    """Paragraphs and list items of a Markdown text."""
    return [block for block in re.split(r"\n\s*\n|\n(?=\s*[-*] )", text) if block.strip()]


def test_readme_does_not_claim_kinds_not_served_yet() -> None:
    """A kind no controller serves may be named only where the README says so."""
    blocks = readme_blocks((ROOT / "README.md").read_text())
    claims = [
        block.strip()
        for block in blocks
        if any(kind in block for kind in NOT_SERVED_YET) and "not served yet" not in block
    ]
    assert not claims, "README.md names kinds no controller serves yet:\n" + "\n".join(claims)


def test_a_listed_parent_covers_its_fields() -> None:
    assert covered("spec.oidcProviders.variables.name", {"spec.oidcProviders"})
    assert covered("spec.oidcProviders", {"spec.oidcProviders"})
    assert not covered("spec.oidcProvidersX", {"spec.oidcProviders"})
    assert not covered("spec.secretRef.name", {"spec.oidcProviders"})


def test_readme_blocks_split_list_items() -> None:
    text = "- **source** (`GitRepository`);\n- **helm** (`HelmRelease`);\n\nMore."
    assert readme_blocks(text) == [
        "- **source** (`GitRepository`);",
        "- **helm** (`HelmRelease`);",
        "More.",
    ]


# -- each refusal, set on an object, stalls naming it ----------------------------------------


def _git_repository(obj: Mapping[str, Any]) -> object:
    from controllers.source.spec import GitRepositorySpec

    return GitRepositorySpec.parse(obj["spec"])


def _helm_repository(obj: Mapping[str, Any]) -> object:
    from controllers.source.helmrepository import HelmRepositorySpec

    return HelmRepositorySpec.parse(obj)


def _helm_chart(obj: Mapping[str, Any]) -> object:
    from controllers.source.helmchart import HelmChartSpec

    return HelmChartSpec.parse(obj)


def _oci_repository(obj: Mapping[str, Any]) -> object:
    from controllers.source.ocirepository import OCIRepositorySpec

    return OCIRepositorySpec.parse(obj)


def _helm_release(obj: Mapping[str, Any]) -> object:
    from controllers.helm.helmrelease import INVALID_CHART_REFERENCE
    from controllers.helm.spec import SpecError, parse
    from controllers.toolkit.runtime.frame import ReconcileError

    try:
        return parse(obj)
    except SpecError as exc:  # the reconcile stalls on it with Flux's reason
        raise ReconcileError(INVALID_CHART_REFERENCE, str(exc), stalled=True) from None


def _image_repository(obj: Mapping[str, Any]) -> object:
    from controllers.image.repositoryspec import ImageRepositorySpec

    return ImageRepositorySpec.parse(obj["spec"])


def _image_policy(obj: Mapping[str, Any]) -> object:
    from controllers.image.policyspec import ImagePolicySpec

    return ImagePolicySpec.parse(obj["spec"])


def _image_update_automation(obj: Mapping[str, Any]) -> object:
    from controllers.image.automationspec import ImageUpdateAutomationSpec

    return ImageUpdateAutomationSpec.parse(obj["spec"])


# Kind -> its spec parser, called with the whole object; each kind's refusals are checked
# against it. (Provider and Receiver refuse inside their reconcile, which reads Secrets.)
PARSERS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "GitRepository": _git_repository,
    "HelmRepository": _helm_repository,
    "HelmChart": _helm_chart,
    "OCIRepository": _oci_repository,
    "HelmRelease": _helm_release,
    "ImageRepository": _image_repository,
    "ImagePolicy": _image_policy,
    "ImageUpdateAutomation": _image_update_automation,
}

# Fields refused by value, not by presence: (kind, path, value) -> what the refusal says.
# Flux's own values that headwater does not implement; the refusal names the field.
REFUSED_VALUES: list[tuple[str, str, Any]] = [
    ("OCIRepository", "spec.provider", "aws"),
    ("OCIRepository", "spec.provider", "azure"),
    ("OCIRepository", "spec.provider", "gcp"),
    ("ImageRepository", "spec.provider", "aws"),
    ("ImageRepository", "spec.provider", "azure"),
    ("ImageRepository", "spec.provider", "gcp"),
    ("ImagePolicy", "spec.digestReflectionPolicy", "IfNotPresent"),
    ("ImagePolicy", "spec.digestReflectionPolicy", "Always"),
    ("ImageUpdateAutomation", "spec.git.commit.signingKey.type", "ssh"),
    ("HelmRelease", "spec.chartRef.kind", "ExternalArtifact"),
]

# The least each kind needs to get past its required fields.
MINIMAL_SPECS: dict[str, dict[str, Any]] = {
    "GitRepository": {"url": "https://git.example/a.git", "interval": "1m"},
    "HelmRepository": {"url": "https://charts.example", "interval": "1m"},
    "HelmChart": {
        "chart": "app",
        "interval": "1m",
        "sourceRef": {"kind": "HelmRepository", "name": "r"},
    },
    "OCIRepository": {"url": "oci://registry.example/app", "interval": "1m"},
    "HelmRelease": {"interval": "1m", "chartRef": {"kind": "OCIRepository", "name": "c"}},
    "ImageRepository": {"image": "registry.example/app", "interval": "1m"},
    "ImagePolicy": {"imageRepositoryRef": {"name": "r"}, "policy": {"semver": {"range": "*"}}},
    "ImageUpdateAutomation": {
        "interval": "1m",
        "sourceRef": {"kind": "GitRepository", "name": "g"},
        "git": {
            "commit": {"author": {"email": "bot@example.com"}},
            "push": {"branch": "main"},
        },
    },
}


def schema_nodes(schema: Mapping[str, Any], prefix: str = "spec") -> Iterator[tuple[str, Any]]:
    """(path, schema) for every property under `schema`, list items walked as their list."""
    for name, child in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        yield path, child
        yield from schema_nodes(child, path)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from schema_nodes(items, prefix)


@cache
def spec_schemas() -> dict[str, dict[str, Any]]:
    """Kind -> the `spec` schema of its storage version."""
    found: dict[str, dict[str, Any]] = {}
    for crd in crd_documents():
        for version in crd["spec"]["versions"]:
            if version.get("storage"):
                spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                found[crd["spec"]["names"]["kind"]] = spec
    return found


def _sample(schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "boolean":
        return True
    if kind == "integer":
        return 1
    if kind == "array":
        return [_sample(schema.get("items") or {"type": "string"})]
    if kind == "object" or "properties" in schema:
        required = schema.get("required") or []
        props = schema.get("properties") or {}
        return {name: _sample(props[name]) for name in required if name in props}
    return (schema.get("enum") or ["x"])[0]


def minimal_object(kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "x/v1",
        "kind": kind,
        "metadata": {"name": "obj", "namespace": "ns"},
        "spec": json_copy(MINIMAL_SPECS[kind]),
    }


def object_setting(kind: str, path: str, value: Any = None) -> dict[str, Any]:
    """A minimal object of `kind` with `path` set (to `value`, or a sample of its type)."""
    nodes = dict(schema_nodes(spec_schemas()[kind]))
    obj = minimal_object(kind)
    parts = path.split(".")[1:]
    here: Any = obj["spec"]
    for depth, part in enumerate(parts):
        node = nodes[".".join(["spec", *parts[: depth + 1]])]
        if depth == len(parts) - 1:
            here[part] = _sample(node) if value is None else value
            break
        child = here.get(part)
        if node.get("type") == "array":
            if not isinstance(child, list) or not child:
                child = here[part] = [{}]
            here = child[0]
        else:
            if not isinstance(child, dict):
                child = here[part] = {}
            here = child
    return obj


def json_copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


def refusal_of(kind: str, obj: Mapping[str, Any]) -> Exception | None:
    try:
        PARSERS[kind](obj)
    except Exception as exc:  # each parser has its own error type
        return exc
    return None


def test_the_minimal_objects_parse() -> None:
    """So that a refusal below is the refused field's doing, not a missing one's."""
    failing = {kind: refusal_of(kind, minimal_object(kind)) for kind in PARSERS}
    assert {kind: str(exc) for kind, exc in failing.items() if exc} == {}


def _refusals() -> list[tuple[str, str, Any]]:
    cases: list[tuple[str, str, Any]] = [
        (kind, path, None) for kind in sorted(PARSERS) for path in sorted(unsupported_fields(kind))
    ]
    return cases + REFUSED_VALUES


@pytest.mark.parametrize(("kind", "path", "value"), _refusals())
def test_a_refused_field_stalls_naming_it(kind: str, path: str, value: Any) -> None:
    error = refusal_of(kind, object_setting(kind, path, value))
    assert error is not None, f"{kind} {path} set, and nothing refused it"
    assert path in str(error), f"the refusal does not name {path}: {error}"
    assert "not supported" in str(error)
    assert getattr(error, "stalled", False), f"{kind} {path}: refused but not stalled"
    reason = getattr(error, "reason", None)
    assert reason in (UNSUPPORTED_FIELD, "InvalidChartReference"), reason


def test_every_kind_with_refusals_has_a_parser_or_says_why() -> None:
    untested = {"Provider", "Receiver"}  # refused in their reconcile (tests/unit/notification)
    with_refusals = {kind for kind in SERVED if unsupported_fields(kind)}
    assert with_refusals <= set(PARSERS) | untested
