"""Fields the apply engine leaves alone: JSON pointers, optionally per selected objects.

An `IgnoreRule` names paths (RFC 6901 JSON pointers, `/spec/replicas`,
`/metadata/annotations/example.com~1owner`) and the objects they hold for
(a `Selector`; all objects without one). For a matching object the apply
engine

- leaves those paths out of drift detection: they are removed from both the
  live object and the dry-run result before the two are compared, so a
  change there is neither drift nor reported;
- leaves their live value in place when it applies: the applied object
  carries the live value at each ignored path the manifest sets (or not the
  path, when the live object lacks it), so applying never changes it. A
  new object is created with the manifest's value.

A path that an object does not have is simply not there to ignore.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

Pointer = tuple[str, ...]

_MISSING: Any = object()
_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")
_ESCAPE = re.compile(r"~(?![01])")


class IgnoreError(ValueError):
    """A pointer or selector that cannot be used; the message says what is wrong."""


def parse_pointer(text: str) -> Pointer:
    """`/a/b~1c/d~0e` -> ("a", "b/c", "d~e"); the whole object ("") is refused."""
    if not text:
        raise IgnoreError("an empty JSON pointer would ignore the whole object")
    if not text.startswith("/"):
        raise IgnoreError(f"JSON pointer {text!r} must start with '/'")
    if _ESCAPE.search(text):
        raise IgnoreError(f"JSON pointer {text!r}: '~' must be followed by 0 or 1")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/"))


def format_pointer(parts: Sequence[str]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


# -- label selectors ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key`, `!key`, `k=v`, `k!=v`, `k in (a,b)`, `k notin (a)`."""

    key: str
    operator: str  # exists | absent | in | notin
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "absent":
            return self.key not in labels
        if self.operator == "in":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


_SET_TERM = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$")
_EQUALITY_TERM = re.compile(r"^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$")
_KEY = re.compile(r"^[^\s!=(),]+$")


def parse_label_selector(expression: str) -> tuple[Requirement, ...]:
    """Kubernetes' label-selector syntax; every term must hold (an empty one matches all)."""
    terms, depth, current = [], 0, ""
    for char in expression:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    requirements = []
    for raw in terms:
        term = raw.strip()
        if not term and len(terms) == 1:
            break
        if match := _SET_TERM.match(term):
            values = frozenset(v.strip() for v in match[3].split(",") if v.strip())
            requirements.append(Requirement(match[1], match[2], values))
        elif match := _EQUALITY_TERM.match(term):
            operator = "notin" if match[2] == "!=" else "in"
            requirements.append(Requirement(match[1], operator, frozenset({match[3]})))
        elif term.startswith("!") and _KEY.match(term[1:].strip()):
            requirements.append(Requirement(term[1:].strip(), "absent"))
        elif _KEY.match(term):
            requirements.append(Requirement(term, "exists"))
        else:
            raise IgnoreError(f"{expression!r} is not a label selector (at {term!r})")
    return tuple(requirements)


# -- selectors and rules -------------------------------------------------------------------


def _anchored(pattern: str | None, field: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(f"^(?:{pattern})$")
    except re.error as exc:
        raise IgnoreError(f"{field}: {pattern!r} is not a regular expression: {exc}") from None


@dataclasses.dataclass(frozen=True)
class Selector:
    """Which objects a rule holds for; every field given must match (kustomize's selector:
    group, version, kind, name and namespace are regular expressions matched in full)."""

    group: re.Pattern[str] | None = None
    version: re.Pattern[str] | None = None
    kind: re.Pattern[str] | None = None
    name: re.Pattern[str] | None = None
    namespace: re.Pattern[str] | None = None
    labels: tuple[Requirement, ...] = ()
    annotations: tuple[Requirement, ...] = ()

    @classmethod
    def parse(
        cls,
        *,
        group: str | None = None,
        version: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
        annotation_selector: str | None = None,
    ) -> Selector:
        """Raises IgnoreError naming the field (`kind`, `labelSelector`, ...) that is wrong."""

        def selector(expression: str | None, field: str) -> tuple[Requirement, ...]:
            try:
                return parse_label_selector(expression or "")
            except IgnoreError as exc:
                raise IgnoreError(f"{field}: {exc}") from None

        return cls(
            group=_anchored(group, "group"),
            version=_anchored(version, "version"),
            kind=_anchored(kind, "kind"),
            name=_anchored(name, "name"),
            namespace=_anchored(namespace, "namespace"),
            labels=selector(label_selector, "labelSelector"),
            annotations=selector(annotation_selector, "annotationSelector"),
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        api_version = str(obj.get("apiVersion") or "")
        group, _, version = api_version.rpartition("/")
        meta = obj.get("metadata") or {}
        for pattern, value in (
            (self.group, group),
            (self.version, version),
            (self.kind, str(obj.get("kind") or "")),
            (self.name, str(meta.get("name") or "")),
            (self.namespace, str(meta.get("namespace") or "")),
        ):
            if pattern is not None and not pattern.match(value):
                return False
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        return all(r.matches(labels) for r in self.labels) and all(
            r.matches(annotations) for r in self.annotations
        )


@dataclasses.dataclass(frozen=True)
class IgnoreRule:
    paths: tuple[Pointer, ...]
    target: Selector | None = None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return self.target is None or self.target.matches(obj)


def ignored_paths(obj: Mapping[str, Any], rules: Sequence[IgnoreRule]) -> tuple[Pointer, ...]:
    """The paths the rules ignore on `obj`, each once, in rule order."""
    found: dict[Pointer, None] = {}
    for rule in rules:
        if rule.matches(obj):
            found.update(dict.fromkeys(rule.paths))
    return tuple(found)


# -- paths in objects ----------------------------------------------------------------------


def _step(container: Any, part: str) -> Any:
    if isinstance(container, Mapping):
        return container.get(part, _MISSING)
    if isinstance(container, list) and _INDEX.match(part) and int(part) < len(container):
        return container[int(part)]
    return _MISSING


def value_at(obj: Any, path: Pointer) -> Any:
    """The value at `path`, or `MISSING`."""
    for part in path:
        obj = _step(obj, part)
        if obj is _MISSING:
            break
    return obj


def has_path(obj: Any, path: Pointer) -> bool:
    return value_at(obj, path) is not _MISSING


def _remove(obj: Any, path: Pointer) -> None:
    parent = value_at(obj, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and _step(parent, last) is not _MISSING:
        del parent[int(last)]


def without_paths(obj: Mapping[str, Any], paths: Sequence[Pointer]) -> dict[str, Any]:
    """A copy of `obj` without the values at `paths` (missing ones are skipped)."""
    out: dict[str, Any] = copy.deepcopy(dict(obj))
    # The deepest list indexes first, so removing one does not shift another.
    for path in sorted(paths, key=lambda p: [int(x) if _INDEX.match(x) else -1 for x in p])[::-1]:
        _remove(out, path)
    return out


def keep_live(
    desired: Mapping[str, Any], live: Mapping[str, Any], paths: Sequence[Pointer]
) -> dict[str, Any]:
    """`desired` with each ignored path it sets holding the live value instead.

    Where the live object lacks the path, the path is left out, so applying
    neither changes nor adds it; paths the manifest does not set stay unset.
    """
    out: dict[str, Any] = copy.deepcopy(dict(desired))
    removed = []
    for path in paths:
        if not has_path(out, path):
            continue
        current = value_at(live, path)
        if current is _MISSING:
            removed.append(path)
            continue
        parent = value_at(out, path[:-1])
        last = path[-1]
        if isinstance(parent, dict):
            parent[last] = copy.deepcopy(current)
        else:
            parent[int(last)] = copy.deepcopy(current)
    return without_paths(out, removed) if removed else out


def parse_rules(items: Any, field: str) -> tuple[IgnoreRule, ...]:
    """Flux's `ignore` list (`paths` + optional `target`) as rules.

    IgnoreError names the entry's field (`spec.ignore[0].paths[1]: ...`).
    """
    if items in (None, []):
        return ()
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise IgnoreError(f"{field}: must be a list")
    rules = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(item, Mapping):
            raise IgnoreError(f"{where}: must be an object with paths")
        paths = []
        for number, path in enumerate(item.get("paths") or []):
            try:
                paths.append(parse_pointer(str(path)))
            except IgnoreError as exc:
                raise IgnoreError(f"{where}.paths[{number}]: {exc}") from None
        if not paths:
            raise IgnoreError(f"{where}.paths: at least one JSON pointer is required")
        target = item.get("target")
        try:
            selector = (
                Selector.parse(
                    group=target.get("group"),
                    version=target.get("version"),
                    kind=target.get("kind"),
                    name=target.get("name"),
                    namespace=target.get("namespace"),
                    label_selector=target.get("labelSelector"),
                    annotation_selector=target.get("annotationSelector"),
                )
                if target
                else None
            )
        except IgnoreError as exc:
            raise IgnoreError(f"{where}.target.{exc}") from None
        rules.append(IgnoreRule(tuple(paths), selector))
    return tuple(rules)


MISSING = _MISSING

__all__ = [
    "MISSING",
    "IgnoreError",
    "IgnoreRule",
    "Pointer",
    "Requirement",
    "Selector",
    "format_pointer",
    "has_path",
    "ignored_paths",
    "keep_live",
    "parse_label_selector",
    "parse_pointer",
    "parse_rules",
    "value_at",
    "without_paths",
]
