"""Every field a CRD accepts is handled by its controller or refused by name.

The walk covers every property under `spec` of every CRD in crds/, nested
objects and list items included. A field counts as handled when its JSON
name is a string constant (read from the AST, so comments and docstrings do
not count) in the code of the controller package that serves the kind or in
controllers/toolkit; otherwise its dotted path must be in that kind's
`UNSUPPORTED_FIELDS` (controllers/toolkit/runtime/fields.py), which its
parser refuses with Stalled=True. Each refusal must name a path the CRD has.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

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
