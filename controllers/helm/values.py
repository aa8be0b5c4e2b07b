"""A release's values: `valuesFrom` in order, then `spec.values` merged last, as Flux does.

A reference without `targetPath` is a YAML document merged at the root; one
with `targetPath` puts its single value at that path, written in Helm's
`--set` path syntax (`a.b`, `list[0].name`, `dotted\\.key`) and typed as
`--set` types it (true/false, null, integers) unless `literal` is set.
Failures name the reference; the values themselves never reach a message,
as they may come from a Secret.

`config_digest` is the identity of a set of values: a changed digest is an
upgrade, an unchanged one (with an unchanged chart) is no helm call at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

DEFAULT_VALUES_KEY = "values.yaml"
KINDS = ("ConfigMap", "Secret")
_INDEX = re.compile(r"^(.*)\[(\d+)\]$")
_INT = re.compile(r"^-?[1-9][0-9]*$|^0$")

# (kind, namespace, name) -> the object's data as text, None when it does not exist.
ReadConfig = Callable[[str, str, str], Awaitable[Mapping[str, str] | None]]


class ValuesSpecError(ValueError):
    """`spec.valuesFrom` is malformed; the message names the entry."""


class ValuesError(Exception):
    """The values cannot be composed (missing object or key, bad YAML, bad path)."""


@dataclass(frozen=True)
class ValuesReference:
    kind: str
    name: str
    values_key: str = DEFAULT_VALUES_KEY
    target_path: str = ""
    optional: bool = False
    literal: bool = False

    def describe(self, namespace: str) -> str:
        return f"{self.kind} '{namespace}/{self.name}'"


def parse_values_from(items: Sequence[Mapping[str, Any]]) -> tuple[ValuesReference, ...]:
    refs = []
    for position, item in enumerate(items):
        where = f"spec.valuesFrom[{position}]"
        kind = str(item.get("kind") or "")
        if kind not in KINDS:
            raise ValuesSpecError(f"{where}.kind: {kind!r} is not ConfigMap or Secret")
        name = str(item.get("name") or "")
        if not name:
            raise ValuesSpecError(f"{where}.name: required")
        target = str(item.get("targetPath") or "")
        if target:
            try:
                parse_path(target)
            except ValuesError as exc:
                raise ValuesSpecError(f"{where}.targetPath: {exc}") from None
        refs.append(
            ValuesReference(
                kind=kind,
                name=name,
                values_key=str(item.get("valuesKey") or DEFAULT_VALUES_KEY),
                target_path=target,
                optional=bool(item.get("optional")),
                literal=bool(item.get("literal")),
            )
        )
    return tuple(refs)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: maps merge key by key, anything else in `override` replaces."""
    result = dict(base)
    for key, value in override.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = merge(current, value)
        else:
            result[key] = value
    return result


PathPart = str | int


def parse_path(path: str) -> list[PathPart]:
    """Helm's `--set` path: dot-separated keys, `\\.` for a literal dot, `[n]` for indexes."""
    keys: list[str] = []
    current = ""
    escaped = False
    for char in path:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            keys.append(current)
            current = ""
        else:
            current += char
    if escaped:
        raise ValuesError(f"path {path!r} ends with a lone backslash")
    keys.append(current)
    parts: list[PathPart] = []
    for key in keys:
        indexes: list[int] = []
        match = _INDEX.match(key)
        while match:
            indexes.insert(0, int(match.group(2)))
            key = match.group(1)
            match = _INDEX.match(key)
        if not key or "[" in key or "]" in key:
            raise ValuesError(f"path {path!r} has an empty or malformed key")
        parts.append(key)
        parts.extend(indexes)
    return parts


def typed_value(text: str) -> Any:
    """What `--set` makes of a value: booleans, null, integers; everything else a string."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _INT.match(text):
        return int(text)
    return text


def set_path(values: dict[str, Any], path: str, value: Any) -> None:
    """Put `value` at `path` in `values`, creating maps and list slots on the way."""
    parts = parse_path(path)
    node: Any = values
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        following: PathPart | None = None if last else parts[position + 1]
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValuesError(f"path {path!r}: index [{part}] of something not a list")
            while len(node) <= part:
                node.append(None)
            if last:
                node[part] = value
            else:
                if not isinstance(node[part], (dict, list)):
                    node[part] = [] if isinstance(following, int) else {}
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise ValuesError(f"path {path!r}: key {part!r} of something not a map")
            if last:
                node[part] = value
            else:
                child = node.get(part)
                wants_list = isinstance(following, int)
                if wants_list and not isinstance(child, list):
                    node[part] = []
                elif not wants_list and not isinstance(child, dict):
                    node[part] = {}
                node = node[part]


async def compose(
    namespace: str,
    refs: Sequence[ValuesReference],
    inline: Mapping[str, Any],
    read: ReadConfig,
) -> dict[str, Any]:
    """The release's values; ValuesError names the reference that failed."""
    result: dict[str, Any] = {}
    for ref in refs:
        where = ref.describe(namespace)
        data = await read(ref.kind, namespace, ref.name)
        if data is None:
            if ref.optional:
                continue
            raise ValuesError(f"could not find {where}")
        if ref.values_key not in data:
            if ref.optional:
                continue
            raise ValuesError(f"missing key '{ref.values_key}' in {where}")
        text = data[ref.values_key]
        if ref.target_path:
            value = text if ref.literal else typed_value(text)
            try:
                set_path(result, ref.target_path, value)
            except ValuesError as exc:
                raise ValuesError(
                    f"unable to merge value from key '{ref.values_key}' in {where}: {exc}"
                ) from None
            continue
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            # The YAML parser's message may quote the (possibly secret) text: say only where.
            raise ValuesError(
                f"unable to read values from key '{ref.values_key}' in {where}: invalid YAML{at}"
            ) from None
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise ValuesError(
                f"unable to read values from key '{ref.values_key}' in {where}: "
                "the document is not a map of values"
            )
        result = merge(result, document)
    return merge(result, inline)


def canonical(values: Mapping[str, Any]) -> bytes:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str).encode()


def config_digest(values: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of the values, independent of key order."""
    return "sha256:" + hashlib.sha256(canonical(values)).hexdigest()


def values_checksum(values: Mapping[str, Any]) -> str:
    """`lastAttemptedValuesChecksum`: the SHA-1 hex Flux's older API wrote, kept for readers."""
    return hashlib.sha1(canonical(values)).hexdigest()
