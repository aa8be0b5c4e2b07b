"""The kustomization a Kustomization builds: found or generated, then the spec's overlays.

Flux's rules (fluxcd/pkg ``kustomize`` generator, as kustomize-controller calls it):

- The directory's own kustomization file (``kustomization.yaml``, ``kustomization.yml`` or
  ``Kustomization``, first found) is used when there is one.
- Otherwise one is generated: every ``*.yaml``/``*.yml`` below the directory, walked in
  lexical order, becomes a resource, except that a subdirectory holding a kustomization
  file becomes a directory resource and is not descended into. Every listed file must
  decode as Kubernetes objects (a ``kind`` and a ``metadata.name`` in each document):
  Flux fails the build on one that does not, and so do we, naming the file.
- The spec's overlays are then merged into that kustomization, in place, and the result
  is written back to the same file: ``targetNamespace`` replaces ``namespace``,
  ``namePrefix``/``nameSuffix`` replace theirs, ``patches`` and ``components`` are
  appended, ``images`` are merged by name, ``buildMetadata`` replaces its list.

Everything here works on a private copy of the artifact tree, never on the shared one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from controllers.toolkit.runtime.conditions import BUILD_FAILED
from controllers.toolkit.runtime.frame import ReconcileError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZE_API_VERSION = "kustomize.config.k8s.io/v1beta1"
MANIFEST_SUFFIXES = (".yaml", ".yml")

# Prefixes kustomize reads as remote git or HTTP locations (its repospec parsing).
_REMOTE_PREFIXES = (
    "git::",
    "gh:",
    "ssh://",
    "https://",
    "http://",
    "git@",
    "github.com:",
    "github.com/",
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SELECTOR_FIELDS = (
    "group",
    "version",
    "kind",
    "name",
    "namespace",
    "labelSelector",
    "annotationSelector",
)


class BuildError(ReconcileError):
    """The manifests could not be built; `reason` is Flux's ``BuildFailed``."""

    REASON: ClassVar[str] = BUILD_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.REASON, message)


# --- YAML ---------------------------------------------------------------------------------


# Bounds of one YAML document, counted with every alias expanded (what JSON will hold).
MAX_YAML_NODES = 1_000_000
MAX_YAML_DEPTH = 256
_JSON_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("map", "seq", "str", "int", "float", "bool", "null", "merge")
)


class YamlLoader(yaml.CSafeLoader):
    """Safe YAML limited to what JSON (and so the API server) can hold.

    Timestamps stay strings (a date-looking label value is a string to the API server), and
    a lone ``=`` is a string rather than PyYAML's unconstructable ``value`` tag. Before a
    document is built, its node graph is checked: no tags beyond JSON's types (``!!binary``,
    ``!!set``, ``!!timestamp`` ... would not serialise), no alias cycles, at most
    MAX_YAML_DEPTH levels and MAX_YAML_NODES nodes with aliases expanded, so an alias bomb
    (a few hundred bytes that expand to billions of nodes) is refused here rather than
    exhausting memory when the objects are serialised.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        check_node_graph(node)
        return super().construct_document(node)


def check_node_graph(root: yaml.Node) -> None:
    """Refuse a YAML node graph beyond JSON's types or the size and depth bounds."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # (node, depth, children pushed?) -- iterative, so depth is our bound, not Python's.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if expanded:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > MAX_YAML_NODES:
                raise _yaml_refusal(
                    node, f"the document expands to more than {MAX_YAML_NODES} nodes"
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _yaml_refusal(node, "an alias refers to the node that contains it")
        if node.tag not in _JSON_TAGS:
            raise _yaml_refusal(node, f"the tag {node.tag!r} has no JSON equivalent")
        if depth > MAX_YAML_DEPTH:
            raise _yaml_refusal(node, f"the document nests deeper than {MAX_YAML_DEPTH} levels")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _yaml_refusal(node: yaml.Node, problem: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


YamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as "line L, column C: problem", without echoing the document's text.

    PyYAML's own message quotes the offending line, which may hold a secret value.
    """
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"position {exc.position}: {exc.reason}"
    return type(exc).__name__


def load_documents(data: bytes | str) -> list[Any]:
    """Every document of a YAML stream (None for empty ones); raises yaml.YAMLError."""
    return list(yaml.load_all(data, Loader=YamlLoader))


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


# --- finding and generating ---------------------------------------------------------------


def find_kustomization(directory: Path) -> Path | None:
    """The directory's kustomization file, in kustomize's order of preference."""
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def _display(path: Path, root: Path) -> str:
    """`path` as the repository knows it, for messages."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return path.name
    return rel or "."


def check_manifest_file(path: Path, root: Path) -> None:
    """Refuse a file that does not decode as Kubernetes objects, as Flux's generator does."""
    shown = _display(path, root)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"reading '{shown}' failed: {exc.strerror or exc}") from None
    try:
        documents = load_documents(data)
    except yaml.YAMLError as exc:
        raise BuildError(f"invalid YAML in '{shown}': {yaml_problem(exc)}") from None
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        where = f"'{shown}'" if len(documents) == 1 else f"'{shown}' (document {index})"
        _check_object(document, where)


def _check_object(document: Any, where: str) -> None:
    if not isinstance(document, dict):
        raise BuildError(f"{where} is not a Kubernetes object: expected a mapping")
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BuildError(f"{where} is not a Kubernetes object: missing kind")
    if kind.endswith("List"):
        # A list needs no name; its items are objects in their own right.
        items = document.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise BuildError(f"{where}: expected an array in {kind}/items")
        for position, item in enumerate(items):
            _check_object(item, f"{where} {kind}/items[{position}]")
        return
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise BuildError(f"{where} is not a Kubernetes object: missing metadata.name")


def scan_manifests(directory: Path, root: Path) -> list[str]:
    """The resources of a generated kustomization for `directory`, as ``./``-relative paths.

    Lexical order, depth first, like Go's filepath.Walk; a subdirectory with its own
    kustomization file is one directory resource. `root` is the artifact root, used to name
    files in messages.
    """
    resources: list[str] = []

    def walk(current: Path, rel: str) -> None:
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            shown = _display(current, root)
            raise BuildError(f"reading directory '{shown}' failed: {exc.strerror}") from None
        for entry in entries:
            child_rel = f"{rel}/{entry.name}"
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if find_kustomization(path) is not None:
                    resources.append(child_rel)
                else:
                    walk(path, child_rel)
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            if os.path.splitext(entry.name)[1] not in MANIFEST_SUFFIXES:
                continue
            check_manifest_file(path, root)
            resources.append(child_rel)

    walk(directory, ".")
    return resources


def generated_kustomization(directory: Path, root: Path) -> dict[str, Any]:
    """The kustomization Flux writes for a directory that has none."""
    kustomization: dict[str, Any] = {
        "apiVersion": KUSTOMIZE_API_VERSION,
        "kind": "Kustomization",
    }
    resources = scan_manifests(directory, root)
    if resources:
        kustomization["resources"] = resources
    else:
        # kustomize refuses an empty kustomization; Flux sets a namespace no object gets.
        kustomization["namespace"] = "_placeholder"
    return kustomization


def read_kustomization(path: Path, root: Path) -> dict[str, Any]:
    shown = _display(path, root)
    try:
        documents = load_documents(path.read_bytes())
    except OSError as exc:
        raise BuildError(f"reading '{shown}' failed: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise BuildError(f"invalid YAML in '{shown}': {yaml_problem(exc)}") from None
    documents = [d for d in documents if d is not None]
    if not documents:
        return {}
    if len(documents) > 1 or not isinstance(documents[0], dict):
        raise BuildError(f"'{shown}' must hold exactly one kustomization mapping")
    return documents[0]


# --- the spec's overlays ------------------------------------------------------------------


def is_local_relative(path: str) -> bool:
    """False for anything kustomize would fetch (git or HTTP) and for absolute paths."""
    lowered = path.lower()
    for prefix in _REMOTE_PREFIXES:
        if len(prefix) < len(path) and lowered.startswith(prefix):
            return False
    if _SCHEME.match(path):
        return False
    return not (path.startswith("/") or lowered.startswith("file:///"))


def _spec_string(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BuildError(f"spec.{key} must be a string")
    return value


def _spec_list(spec: Mapping[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BuildError(f"spec.{key} must be a list")
    return value


@dataclass(frozen=True)
class Patch:
    """One `spec.patches[]` entry: the patch text and its target selector (if any)."""

    patch: str
    target: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, index: int, item: Any) -> Patch:
        if not isinstance(item, Mapping) or not isinstance(item.get("patch"), str):
            raise BuildError(f"spec.patches[{index}] must have a 'patch' string")
        target = item.get("target")
        if target is None:
            return cls(item["patch"])
        if not isinstance(target, Mapping):
            raise BuildError(f"spec.patches[{index}].target must be a mapping")
        return cls(item["patch"], {k: target[k] for k in _SELECTOR_FIELDS if target.get(k)})

    def to_kustomize(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"patch": self.patch}
        if self.target is not None:
            entry["target"] = dict(self.target)
        return entry


@dataclass(frozen=True)
class Image:
    """One `spec.images[]` override; empty strings are fields left out."""

    name: str
    new_name: str = ""
    new_tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, index: int, item: Any) -> Image:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise BuildError(f"spec.images[{index}] must have a 'name'")
        return cls(
            name=item["name"],
            new_name=str(item.get("newName") or ""),
            new_tag=str(item.get("newTag") or ""),
            digest=str(item.get("digest") or ""),
        )


@dataclass(frozen=True)
class BuildOptions:
    """The Kustomization spec's build fields, checked: what `merge_overlays` merges in."""

    target_namespace: str | None = None
    name_prefix: str | None = None
    name_suffix: str | None = None
    patches: tuple[Patch, ...] = ()
    images: tuple[Image, ...] = ()
    components: tuple[str, ...] = ()
    ignore_missing_components: bool = False
    build_metadata: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> BuildOptions:
        """From the Kustomization spec; BuildError (BuildFailed) names a malformed field."""
        components = []
        for index, component in enumerate(_spec_list(spec, "components")):
            if not isinstance(component, str) or not component:
                raise BuildError(f"spec.components[{index}] must be a path")
            if not is_local_relative(component):
                raise BuildError(f"component path '{component}' must be local and relative")
            components.append(component)
        return cls(
            target_namespace=_spec_string(spec, "targetNamespace"),
            name_prefix=_spec_string(spec, "namePrefix"),
            name_suffix=_spec_string(spec, "nameSuffix"),
            patches=tuple(Patch.parse(i, p) for i, p in enumerate(_spec_list(spec, "patches"))),
            images=tuple(Image.parse(i, m) for i, m in enumerate(_spec_list(spec, "images"))),
            components=tuple(components),
            ignore_missing_components=spec.get("ignoreMissingComponents") is True,
            build_metadata=tuple(str(item) for item in _spec_list(spec, "buildMetadata")),
        )

    def any(self) -> bool:
        """Is there anything to merge into the kustomization?"""
        return (
            self.target_namespace is not None
            or self.name_prefix is not None
            or self.name_suffix is not None
            or bool(self.patches or self.components or self.images or self.build_metadata)
        )


def _merge_images(existing: Any, overrides: Sequence[Image]) -> list[Any]:
    images = [dict(i) if isinstance(i, Mapping) else i for i in (existing or [])]
    for override in overrides:
        match = next(
            (i for i in images if isinstance(i, dict) and i.get("name") == override.name),
            None,
        )
        if match is None:
            image = {"name": override.name}
            for key, value in (
                ("newName", override.new_name),
                ("newTag", override.new_tag),
                ("digest", override.digest),
            ):
                if value:
                    image[key] = value
            images.append(image)
            continue
        # Fields the Kustomization leaves out keep the kustomization file's values; tag and
        # digest both pick the version, so setting either replaces both (Flux, and
        # kustomize's own image transformer).
        if override.new_name:
            match["newName"] = override.new_name
        if override.new_tag or override.digest:
            match.pop("newTag", None)
            match.pop("digest", None)
            if override.new_tag:
                match["newTag"] = override.new_tag
            if override.digest:
                match["digest"] = override.digest
    return images


def merge_overlays(
    kustomization: Mapping[str, Any],
    options: BuildOptions,
    directory: Path,
    *,
    generated: bool,
) -> dict[str, Any]:
    """`kustomization` with the Kustomization spec's overlays merged in, as Flux merges them."""
    result: dict[str, Any] = {
        "apiVersion": KUSTOMIZE_API_VERSION,
        "kind": "Kustomization",
        **kustomization,
    }
    if not generated and not result.get("resources"):
        # Flux's guard against kustomize's "kustomization is empty" error.
        result["buildMetadata"] = ["originAnnotations"]

    if options.target_namespace is not None:
        result["namespace"] = options.target_namespace
    for key, value in (("namePrefix", options.name_prefix), ("nameSuffix", options.name_suffix)):
        if value is not None:
            result[key] = value

    if options.patches:
        patches = [patch.to_kustomize() for patch in options.patches]
        result["patches"] = [*(result.get("patches") or []), *patches]

    components = [
        component
        for component in options.components
        if not (options.ignore_missing_components and not (directory / component).exists())
    ]
    if components:
        result["components"] = [*(result.get("components") or []), *components]

    if options.images:
        result["images"] = _merge_images(result.get("images"), options.images)

    if options.build_metadata:
        result["buildMetadata"] = list(options.build_metadata)
    return result


def write_kustomization(directory: Path, options: BuildOptions, root: Path) -> Path:
    """Find or generate the kustomization of `directory`, merge the overlays, write it.

    `directory` must be inside the private copy `root`. Returns the file written (or the
    user's file, untouched, when there is nothing to merge).
    """
    existing = find_kustomization(directory)
    if existing is not None:
        current = read_kustomization(existing, root)
        generated = False
        target = existing
        if current.get("resources") and not options.any():
            return existing
    else:
        current = generated_kustomization(directory, root)
        generated = True
        target = directory / KUSTOMIZATION_FILES[0]
    for key in ("patches", "components", "images"):
        if current.get(key) is not None and not isinstance(current[key], list):
            shown = _display(target, root)
            raise BuildError(f"'{shown}': {key} must be a list, not {type(current[key]).__name__}")
    merged = merge_overlays(current, options, directory, generated=generated)
    text = dump_yaml(merged)
    try:
        # A new inode: the copy may share files with the cache, which must not change.
        if target.exists():
            target.unlink()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        shown = _display(target, root)
        raise BuildError(f"writing '{shown}' failed: {exc.strerror or exc}") from None
    return target
