"""Rewriting the fields marked with Flux's setter comments, leaving every other byte alone.

A setter is a comment at the end of a line naming an ImagePolicy, and optionally which
part of its latest image goes there:

    image: ghcr.io/org/app:1.0.0 # {"$imagepolicy": "apps:app"}         name:tag[@digest]
    repository: ghcr.io/org/app # {"$imagepolicy": "apps:app:name"}
    tag: 1.0.0 # {"$imagepolicy": "apps:app:tag"}
    digest: sha256:... # {"$imagepolicy": "apps:app:digest"}

The edit is line-level: only the scalar on a marked line is replaced, its quoting kept
(a plain value that would no longer read back as the same string is double-quoted).
It is checked, not trusted: each edited line is re-parsed with the whole file, and the
parsed file must differ from the original in exactly that one scalar, from the old value
to the new one. A marker that is not a YAML comment (inside a block scalar, say) fails
that check and is left alone, as a YAML-aware tool would leave it. A marked file that
is not valid YAML, a marker naming a policy that is missing or has no latest image, and
a malformed marker are `SetterError`s: the caller commits nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MARKER_KEY = "$imagepolicy"
# The largest file read; bigger ones are not manifests anyone edits by hand.
MAX_FILE_BYTES = 4 * 1024 * 1024
_SUFFIXES = (".yaml", ".yml")

_LINE = re.compile(
    r"^(?P<head>[ \t]*(?:-[ \t]+)*"
    r"(?:(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'|[^\s#'\"\-][^#]*?|-[^\s#][^#]*?):[ \t]+)?)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'|[^\s#'\"][^#]*?)"
    r"(?P<tail>[ \t]+#[ \t]*(?P<comment>\{.*\})[ \t]*)$"
)
_DOC_SEPARATOR = re.compile(r"^(---|\.\.\.)(\s|$)")


class SetterError(Exception):
    """The update cannot be made safely; nothing may be written."""


@dataclass(frozen=True)
class LatestImage:
    """An ImagePolicy's status.latestRef."""

    name: str
    tag: str
    digest: str = ""

    def value_for(self, part: str) -> str:
        if part == "tag":
            return self.tag
        if part == "name":
            return self.name
        if part == "digest":
            return self.digest
        image = f"{self.name}:{self.tag}"
        return f"{image}@{self.digest}" if self.digest else image


@dataclass(frozen=True, order=True)
class ObjectId:
    """Flux's ObjectIdentifier: which object of a file a change is in (may be nameless)."""

    kind: str = ""
    name: str = ""
    namespace: str = ""
    api_version: str = ""


@dataclass(frozen=True)
class Change:
    old_value: str
    new_value: str
    setter: str


@dataclass
class Result:
    """Flux's update.Result: file -> object -> changes."""

    files: dict[str, dict[ObjectId, list[Change]]] = field(default_factory=dict)

    def add(self, path: str, obj: ObjectId, change: Change) -> None:
        self.files.setdefault(path, {}).setdefault(obj, []).append(change)

    def objects(self) -> dict[ObjectId, list[Change]]:
        merged: dict[ObjectId, list[Change]] = {}
        for objects in self.files.values():
            for obj, changes in objects.items():
                merged.setdefault(obj, []).extend(changes)
        return merged

    def changes(self) -> list[Change]:
        return [c for objects in self.files.values() for cs in objects.values() for c in cs]

    def __bool__(self) -> bool:
        return bool(self.files)


@dataclass(frozen=True)
class Marker:
    namespace: str
    name: str
    part: str  # "", "tag", "name" or "digest"
    text: str  # the setter as written, "ns:name[:part]"


def parse_marker(comment: str) -> Marker | None:
    """The setter a comment holds, None if it is some other comment."""
    try:
        data = json.loads(comment)
    except ValueError:
        return None
    if not isinstance(data, dict) or MARKER_KEY not in data:
        return None
    text = data[MARKER_KEY]
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) in (2, 3) and all(parts[:2]) and (len(parts) == 2 or parts[2] in _PARTS):
        return Marker(parts[0], parts[1], parts[2] if len(parts) == 3 else "", text)
    raise SetterError(
        f"setter {json.dumps(data)} is not of the form 'namespace:policy[:tag|:name|:digest]'"
    )


_PARTS = ("tag", "name", "digest")


def _decode(token: str) -> Any:
    return yaml.safe_load(token)


def _encode(new: str, old_token: str) -> str:
    if old_token.startswith('"'):
        return json.dumps(new)
    if old_token.startswith("'"):
        return "'" + new.replace("'", "''") + "'"
    try:
        plain_ok = yaml.safe_load(new) == new and "#" not in new and ": " not in new
    except yaml.YAMLError:
        plain_ok = False
    return new if plain_ok else json.dumps(new)


def _load_all(text: str) -> list[Any]:
    return list(yaml.safe_load_all(text))


def _leaf_diffs(a: Any, b: Any, out: list[tuple[Any, Any]]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if list(a.keys()) != list(b.keys()):
            out.append((a, b))
            return
        for key in a:
            _leaf_diffs(a[key], b[key], out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((a, b))
            return
        for x, y in zip(a, b, strict=True):
            _leaf_diffs(x, y, out)
    elif type(a) is not type(b) or a != b:
        out.append((a, b))


def _documents(lines: Sequence[str]) -> list[tuple[int, ObjectId]]:
    """(first line index, object) of each YAML document in the file."""
    starts = [0] + [i + 1 for i, ln in enumerate(lines) if _DOC_SEPARATOR.match(ln)]
    docs: list[tuple[int, ObjectId]] = []
    for n, start in enumerate(starts):
        end = starts[n + 1] - 1 if n + 1 < len(starts) else len(lines)
        try:
            body = yaml.safe_load("".join(lines[start:end]))
        except yaml.YAMLError:
            body = None
        obj = ObjectId()
        if isinstance(body, Mapping):
            raw_meta = body.get("metadata")
            meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
            obj = ObjectId(
                kind=str(body.get("kind") or ""),
                name=str(meta.get("name") or ""),
                namespace=str(meta.get("namespace") or ""),
                api_version=str(body.get("apiVersion") or ""),
            )
        docs.append((start, obj))
    return docs


def _object_at(docs: Sequence[tuple[int, ObjectId]], line: int) -> ObjectId:
    found = ObjectId()
    for start, obj in docs:
        if start <= line:
            found = obj
    return found


def rewrite_text(
    text: str, policies: Mapping[tuple[str, str], LatestImage | None], where: str
) -> tuple[str, list[tuple[ObjectId, Change]]]:
    """The file with its marked fields set, and what changed.

    `policies` maps (namespace, name) to the policy's latest image (None: the policy
    exists but has chosen nothing yet).
    """
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, str, Change]] = []
    for i, line in enumerate(lines):
        if MARKER_KEY not in line:
            continue
        body = line.rstrip("\r\n")
        m = _LINE.match(body)
        if m is None:
            continue
        marker = parse_marker(m.group("comment"))
        if marker is None:
            continue
        key = (marker.namespace, marker.name)
        if key not in policies:
            raise SetterError(
                f"{where}:{i + 1}: setter '{marker.text}' names ImagePolicy "
                f"'{marker.namespace}/{marker.name}', which does not exist or is not "
                "selected by spec.policySelector"
            )
        latest = policies[key]
        if latest is None:
            raise SetterError(
                f"{where}:{i + 1}: ImagePolicy '{marker.namespace}/{marker.name}' has no "
                "latest image yet (status.latestRef)"
            )
        new = latest.value_for(marker.part)
        if not new:
            raise SetterError(
                f"{where}:{i + 1}: setter '{marker.text}' wants a digest, but ImagePolicy "
                f"'{marker.namespace}/{marker.name}' reflects none (spec.digestReflectionPolicy)"
            )
        token = m.group("value")
        try:
            old = _decode(token)
        except yaml.YAMLError:
            continue
        old_text = _as_text(old)
        if old_text is None or old_text == new:
            continue
        ending = line[len(body) :]
        replaced = m.group("head") + _encode(new, token) + m.group("tail") + ending
        edits.append((i, replaced, Change(old_text, new, marker.text)))
    if not edits:
        return text, []
    try:
        original = _load_all(text)
    except yaml.YAMLError as exc:
        raise SetterError(f"{where} holds setters but is not valid YAML: {exc}") from None
    docs = _documents(lines)
    accepted: list[tuple[int, str, Change]] = []
    for i, replaced, change in edits:
        trial = lines.copy()
        trial[i] = replaced
        try:
            parsed = _load_all("".join(trial))
        except yaml.YAMLError:
            continue
        diffs: list[tuple[Any, Any]] = []
        _leaf_diffs(original, parsed, diffs)
        if len(diffs) == 1:
            before, after = diffs[0]
            if _as_text(before) == change.old_value and after == change.new_value:
                accepted.append((i, replaced, change))
    for i, replaced, _ in accepted:
        lines[i] = replaced
    return "".join(lines), [(_object_at(docs, i), change) for i, _, change in accepted]


def _as_text(value: Any) -> str | None:
    if isinstance(value, (Mapping, list)):
        return None
    return "" if value is None else str(value)


def manifest_files(root: Path) -> Iterator[Path]:
    """YAML files under `root`, sorted, never through a symlink, never inside .git."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.endswith(_SUFFIXES) and not path.is_symlink() and path.is_file():
                yield path


def update_tree(
    repo_root: Path, path: str, policies: Mapping[tuple[str, str], LatestImage | None]
) -> Result:
    """Apply every setter under `repo_root/path` in place; what changed, per file."""
    root = (repo_root / path).resolve()
    if root != repo_root.resolve() and repo_root.resolve() not in root.parents:
        raise SetterError(f"spec.update.path '{path}' leaves the repository")
    if not root.is_dir():
        raise SetterError(f"spec.update.path '{path}' is not a directory in the repository")
    result = Result()
    pending: list[tuple[Path, str]] = []
    for file in manifest_files(root):
        rel = file.relative_to(repo_root).as_posix()
        if file.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if MARKER_KEY not in text:
            continue
        new_text, changes = rewrite_text(text, policies, rel)
        for obj, change in changes:
            result.add(rel, obj, change)
        if new_text != text:
            pending.append((file, new_text))
    # Written only once every file is known to be good: a SetterError leaves none changed.
    for file, new_text in pending:
        file.write_text(new_text, encoding="utf-8")
    return result
