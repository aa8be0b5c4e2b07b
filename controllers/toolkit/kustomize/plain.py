"""Manifest files read as ``kustomize build`` reads and orders them: the fast path's reader.

A Kustomization whose path has no kustomization file gets a generated one listing every
manifest (`generate`); a kustomization that lists files of its own directory and adds
nothing else only concatenates them too, and kustomize's one visible effect is its
default ("legacy") order (`inprocess` decides which builds are of that shape, and sets
a namespace where that is all kustomize would do). Reading the files here gives the
same objects without a subprocess, a private copy of the tree and a second parse of
kustomize's output.

The same objects, in the same order, with the same field values once parsed: that is the
promise, so anything kustomize treats in a way not reproduced here raises NotPlain, and
the caller builds with kustomize as before (whose errors, too, stay as they were). What
is reproduced:

- the files (`plain_files`): ``*.yaml``/``*.yml`` below the directory in the generator's
  walk, links and special files left out;
- kustomize's reader: documents split at lines starting with ``---`` (a comment may
  follow), one YAML document per part, empty ones dropped;
- the order: kustomize's legacy sort (Namespace, ..., PodDisruptionBudget first; the
  webhook configurations last; then group_version_kind, then namespace|name).

What falls back (not exhaustive in the docs; the checks below are the list): in a plain
directory, any kustomization file or entry named like one (also in subdirectories), file
or directory names beyond ``[A-Za-z0-9._-]``; in any file read, not UTF-8, ``\\r`` or a
BOM, a separator line with content, a part holding more than one document, YAML beyond
plain JSON types (tags, merge keys, aliased keys, non-string or duplicate keys, nulls in lists,
plain scalars go-yaml v3 reads otherwise than PyYAML: ``yes``, ``1e3``, dates, floats), a
document that is not a named Kubernetes object, ``*List`` kinds (kustomize flattens
them), kustomize's own apiVersions and annotations (``config.kubernetes.io/``,
``config.k8s.io/``: it strips or acts on them), labels or annotations that are empty or
not strings, non-ASCII identities, two objects of one apiVersion and kind with the same
name, and inputs over half the build's output bound.

The text of each manifest is its part of the file, not kustomize's re-printing: only the
history digest reads it, and post-build substitution (which works on the text) is not
run on this path.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from controllers.toolkit.kustomize.build import Manifest
from controllers.toolkit.kustomize.generate import (
    KUSTOMIZATION_FILES,
    MANIFEST_SUFFIXES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    YamlLoader,
    check_node_graph,
)

__all__ = [
    "NotPlain",
    "check_plain_string",
    "group_version",
    "kustomize_order",
    "plain_documents",
    "plain_files",
    "read_bounded",
    "read_manifests",
]

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
# kyaml's ByteReader: any line starting with --- separates documents.
_KIO_SEPARATOR = re.compile(r"\n---.*\n")
_TAG = "tag:yaml.org,2002:"
_MAP_TAG = f"{_TAG}map"
_SEQ_TAG = f"{_TAG}seq"
_STR_TAG = f"{_TAG}str"
_NULL_TAG = f"{_TAG}null"
_FLOAT_TAG = f"{_TAG}float"
_INT_TAG = f"{_TAG}int"
_BOOL_TAG = f"{_TAG}bool"
# kustomize prints what it read through JSON, having read it with go-yaml v3 (YAML 1.2's
# core schema, plus 1.1's 0755 octals): a plain scalar PyYAML (YAML 1.1) reads otherwise
# is refused. Plain strings that v3 would take for a number or a date:
_V3_NUMBER = re.compile(
    r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+"
    r"|(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|\.(inf|Inf|INF|nan|NaN|NAN))"
)
# v3 also reads what follows a 0b or 0o prefix as a signed number ("0b-1" is -1).
_V3_DATE_OR_PREFIX = re.compile(r"[0-9]{4}-|[-+]?0[bBoOxX]")
_NUMERIC_START = frozenset("0123456789+-.")
_V3_BOOLS = frozenset(("true", "True", "TRUE", "false", "False", "FALSE"))
_V3_WORDS = _V3_BOOLS | {"null", "Null", "NULL", "~", ""}
# Line breaks in YAML 1.1 (PyYAML) but not in 1.2 (go-yaml v3).
_OLD_BREAKS = ("\x85", "\u2028", "\u2029")
# Annotation and label prefixes kustomize reads, writes or strips itself.
_KUSTOMIZE_KEYS = ("config.kubernetes.io/", "config.k8s.io/")
_KUSTOMIZE_API_GROUPS = ("kustomize.config.k8s.io", "config.kubernetes.io", "config.k8s.io")

# kustomize's legacy sort (api/internal/builtins/SortOrderTransformer.go, defaults).
_ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
_ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
_TYPE_ORDER = {
    **{kind: index - len(_ORDER_FIRST) for index, kind in enumerate(_ORDER_FIRST)},
    **{kind: index + 1 for index, kind in enumerate(_ORDER_LAST)},
}


class NotPlain(Exception):
    """Why this directory is left to kustomize (for the debug log)."""


class _PlainLoader(YamlLoader):
    """YamlLoader, refusing (as NotPlain) any YAML whose reading kustomize might not share."""

    def construct_document(self, node: yaml.Node) -> Any:
        if not _check_plain_node(node):
            return yaml.constructor.SafeConstructor.construct_document(self, node)
        # Aliases: bounded as everywhere (bombs, cycles), and expanded into copies, as
        # kustomize's JSON has them: a shared dict changed in one place must not change
        # the other (a Deployment's labels aliased into its selector).
        check_node_graph(node)
        document = yaml.constructor.SafeConstructor.construct_document(self, node)
        return json.loads(json.dumps(document))


def _check_plain_node(root: yaml.Node) -> bool:
    """Refuse (NotPlain) what the fast path cannot promise; True if aliases were seen."""
    seen: set[int] = set()
    aliased = False
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            aliased = True  # an alias: walked once, sized by check_node_graph
            continue
        seen.add(id(node))
        if len(seen) > MAX_YAML_NODES or depth > MAX_YAML_DEPTH:
            raise NotPlain("a document beyond the size or depth bounds")
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise NotPlain(f"the tag {node.tag}")
            for item in node.value:
                if isinstance(item, yaml.ScalarNode) and item.tag == _NULL_TAG:
                    raise NotPlain("a null list item")
                stack.append((item, depth + 1))
        elif isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise NotPlain(f"the tag {node.tag}")
            keys: set[str] = set()
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag != _STR_TAG:
                    raise NotPlain("a key that is not a string (or a merge key)")
                _check_scalar(key)
                if key.value in keys:
                    raise NotPlain("a duplicate key")
                if key.value == "<<":
                    raise NotPlain("a merge key, tagged or not")
                if id(key) in seen:
                    raise NotPlain("an alias")
                seen.add(id(key))
                keys.add(key.value)
                stack.append((value, depth + 1))
        else:
            raise NotPlain("an unknown node")
    return aliased


def _check_scalar(node: yaml.ScalarNode) -> None:
    """Refuse a scalar that go-yaml v3 and JSON would give another value than PyYAML."""
    tag, value = node.tag, node.value
    if node.style:  # quoted or block: a string to both, unless tagged otherwise
        if tag != _STR_TAG:
            raise NotPlain(f"a quoted scalar tagged {tag}")
        return
    if tag == _STR_TAG:
        check_plain_string(value)
    elif tag == _INT_TAG:
        if ":" in value or len(value.replace("_", "").lstrip("+-")) > 18:
            raise NotPlain("an integer YAML 1.2 or JSON reads otherwise")
    elif tag == _BOOL_TAG:
        if value not in _V3_BOOLS:
            raise NotPlain("a YAML 1.1 boolean, a string to YAML 1.2")
    elif tag == _FLOAT_TAG:
        raise NotPlain("a float (kustomize prints it through JSON)")
    elif tag != _NULL_TAG:
        raise NotPlain(f"the tag {tag}")


def check_plain_string(value: str) -> None:
    """Refuse a string that go-yaml v3 would read as another type, written unquoted."""
    if value[:1] in _NUMERIC_START and (
        _V3_NUMBER.fullmatch(value.replace("_", "")) or _V3_DATE_OR_PREFIX.match(value)
    ):
        raise NotPlain("a plain string YAML 1.2 reads as a number or a date")
    if value in _V3_WORDS:
        raise NotPlain("a plain string YAML 1.2 reads as a boolean or null")


def plain_files(directory: Path) -> list[Path]:
    """The generator's resources for `directory`, or NotPlain for anything beyond files."""
    found: list[Path] = []
    stack = [directory]
    while stack:
        current = stack.pop()
        with os.scandir(current) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        subdirectories = []
        for entry in entries:
            if entry.name in KUSTOMIZATION_FILES:
                raise NotPlain(f"an entry named {entry.name}")
            if entry.is_dir(follow_symlinks=False):
                if not _SAFE_NAME.fullmatch(entry.name):
                    raise NotPlain("a directory name kustomize may read otherwise")
                subdirectories.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                if os.path.splitext(entry.name)[1] not in MANIFEST_SUFFIXES:
                    continue
                if not _SAFE_NAME.fullmatch(entry.name):
                    raise NotPlain("a file name kustomize may read otherwise")
                found.append(Path(entry.path))
        stack.extend(reversed(subdirectories))
    return found


def _parts(text: str) -> list[str]:
    """The file split as kyaml's ByteReader splits it."""
    parts: list[str] = []
    previous = 0
    for match in _KIO_SEPARATOR.finditer(text):
        rest = match.group()[4:].strip()
        if rest and not rest.startswith("#"):
            raise NotPlain("a document separator with content")
        parts.append(text[previous : match.start()] + "\n")
        previous = match.end()
    parts.append(text[previous:])
    return parts


def _string_map(value: Any, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not value:
        raise NotPlain(f"{what} empty or not a mapping")
    for key, item in value.items():
        if not isinstance(item, str):
            raise NotPlain(f"{what} with a value that is not a string")
        if any(prefix in key for prefix in _KUSTOMIZE_KEYS):
            raise NotPlain(f"{what} kustomize acts on")


def _identity_part(value: Any) -> str:
    if not isinstance(value, str) or not value or not value.isascii():
        raise NotPlain("an identity field that is not a plain string")
    return value


def _manifest(part: str, document: Any) -> Manifest:
    if not isinstance(document, dict):
        raise NotPlain("a document that is not a mapping")
    api_version = _identity_part(document.get("apiVersion"))
    kind = _identity_part(document.get("kind"))
    if kind.endswith("List"):
        raise NotPlain("a List kind")
    if api_version.split("/", 1)[0] in _KUSTOMIZE_API_GROUPS or api_version == "builtin":
        raise NotPlain("one of kustomize's own kinds")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise NotPlain("no metadata")
    _identity_part(metadata.get("name"))
    if "namespace" in metadata:
        _identity_part(metadata["namespace"])
    _string_map(metadata.get("labels"), "labels")
    _string_map(metadata.get("annotations"), "annotations")
    if "labels" in metadata and metadata["labels"] is None:
        raise NotPlain("null labels")
    if "annotations" in metadata and metadata["annotations"] is None:
        raise NotPlain("null annotations")
    return Manifest(text=part, object=document)


def plain_documents(data: bytes) -> list[tuple[str, Any]]:
    """(text, document) for each non-empty document of a file, read as kustomize reads it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotPlain("a file that is not UTF-8") from None
    if "\r" in text or "\ufeff" in text:
        raise NotPlain("a file with carriage returns or a byte-order mark")
    if any(mark in text for mark in _OLD_BREAKS):
        raise NotPlain("a YAML 1.1 line break (NEL, LS, PS)")
    found = []
    for part in _parts(text):
        try:
            documents = list(yaml.load_all(part, Loader=_PlainLoader))
        except yaml.YAMLError:
            raise NotPlain("YAML that does not parse here") from None
        if len(documents) > 1:
            raise NotPlain("more than one document between separators")
        if documents and documents[0] is not None:
            found.append((part, documents[0]))
    return found


def read_bounded(path: Path, budget: int) -> bytes:
    """The regular file `path`, or NotPlain when it is larger than `budget` bytes."""
    size = path.stat(follow_symlinks=False).st_size
    if size > budget:
        raise NotPlain(f"more than {budget} bytes to read")
    with path.open("rb") as handle:
        data = handle.read(size + 1)
    if len(data) != size:
        raise NotPlain("a file that changed while read")
    return data


def read_manifests(paths: list[Path], *, max_bytes: int) -> list[Manifest]:
    """The objects of `paths`, in that order; NotPlain beyond `max_bytes` in all."""
    manifests: list[Manifest] = []
    budget = max_bytes
    for path in paths:
        data = read_bounded(path, budget)
        budget -= len(data)
        manifests.extend(_manifest(part, document) for part, document in plain_documents(data))
    return manifests


def group_version(api_version: str) -> tuple[str, str]:
    group, slash, version = api_version.partition("/")
    return (group, version) if slash else ("", api_version)


def kustomize_order(manifests: list[Manifest]) -> list[Manifest]:
    """`manifests` in kustomize's legacy order; NotPlain where that order is not total."""
    keyed = []
    gvk_strings: dict[str, tuple[str, str, str]] = {}
    identities: set[tuple[str, str, str, str]] = set()
    for manifest in manifests:
        group, version = group_version(str(manifest.object["apiVersion"]))
        kind = manifest.kind
        gvk = (group, version, kind)
        gvk_string = f"{group or '~G'}_{version or '~V'}_{kind}"
        if gvk_strings.setdefault(gvk_string, gvk) != gvk:
            raise NotPlain("two kinds kustomize sorts as one")
        identity = (group, version, kind, manifest.name)
        if identity in identities:
            raise NotPlain("two objects kustomize may take for one")
        identities.add(identity)
        resid = f"{kind}.{version or '[noVer]'}.{group or '[noGrp]'}"
        resid += f"|{manifest.namespace or '~X'}|{manifest.name}"
        keyed.append(((_TYPE_ORDER.get(kind, 0), gvk_string, resid), manifest))
    keyed.sort(key=lambda pair: pair[0])
    return [manifest for _, manifest in keyed]
