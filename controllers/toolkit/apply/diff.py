"""Field-level differences between a live object and what applying would make it.

Drift is judged the way Flux does: the server-side dry-run result is
compared with the live object, looking at labels, annotations and everything
outside `metadata` and `status` (both are server outputs, so defaults the API
server fills in are the same on both sides and never show as drift). Beyond
Flux, finalizers and owner references count too; they differ only when the
manifest sets them.

Changes are reported per field (`spec.replicas: 3 → 5`). Values are rendered
short, and the values of a Secret's `data` and `stringData` (and the
last-applied annotation, which holds a copy of them) are never rendered.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

SENSITIVE = "(sensitive)"
ABSENT = "(none)"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# The parts of metadata that are the user's to set; the rest is the server's.
_COMPARED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")
_MAX_VALUE = 120
_MAX_CHANGES = 50
_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")

_MISSING: Any = object()

PathPart = str | int | tuple[str, str]


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One field that differs: where, and its old and new value, rendered short."""

    path: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.path}: {self.old} → {self.new}"


def is_secret(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object that drift is judged on (a shallow copy)."""
    view = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in _COMPARED_METADATA if meta.get(k)}
    if kept:
        view["metadata"] = kept
    return view


def has_drifted(live: Mapping[str, Any], merged: Mapping[str, Any]) -> bool:
    """True when applying would change the live object (`merged` is the dry-run result)."""
    return comparable(live) != comparable(merged)


def field_changes(
    live: Mapping[str, Any] | None,
    merged: Mapping[str, Any],
    *,
    limit: int = _MAX_CHANGES,
) -> list[FieldChange]:
    """What differs between `live` and `merged`, field by field (secret values masked).

    At most `limit` changes are listed; a last entry says how many more there were.
    """
    sensitive = is_secret(merged) or (live is not None and is_secret(live))
    changes: list[FieldChange] = []
    total = _walk(
        comparable(live) if live is not None else _MISSING,
        comparable(merged),
        [],
        changes,
        sensitive,
        limit,
    )
    if total > len(changes):
        changes.append(FieldChange("…", f"{total - len(changes)} more changes", "not shown"))
    return changes


def format_path(parts: Sequence[PathPart]) -> str:
    """`spec.template.spec.containers[name=app].image`, `metadata.labels["app.kubernetes.io/x"]`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, tuple):
            out += f"[{part[0]}={part[1]}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def render(value: Any, limit: int = _MAX_VALUE) -> str:
    """A short one-line rendering of a value."""
    if value is _MISSING:
        return ABSENT
    if value == SENSITIVE:
        return SENSITIVE
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_sensitive_path(parts: Sequence[PathPart]) -> bool:
    if len(parts) >= 2 and parts[0] in ("data", "stringData"):
        return True
    return len(parts) >= 3 and tuple(parts[:3]) == ("metadata", "annotations", LAST_APPLIED)


def _mask(parts: list[PathPart], value: Any) -> Any:
    """`value` (found at `parts` of a Secret) with every sensitive leaf replaced."""
    if value is _MISSING:
        return value
    if _is_sensitive_path(parts):
        return SENSITIVE
    if isinstance(value, Mapping):
        return {k: _mask([*parts, str(k)], v) for k, v in value.items()}
    return value


def _named(items: Sequence[Any]) -> dict[str, Any] | None:
    """Items keyed by `name` when every item is a mapping with a unique string name."""
    keyed: dict[str, Any] = {}
    for item in items:
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or name in keyed:
            return None
        keyed[name] = item
    return keyed


def _emit(
    parts: list[PathPart],
    old: Any,
    new: Any,
    out: list[FieldChange],
    sensitive: bool,
    limit: int,
) -> int:
    if len(out) < limit:
        if sensitive:
            old, new = _mask(parts, old), _mask(parts, new)
        out.append(FieldChange(format_path(parts) or "(object)", render(old), render(new)))
    return 1


def _walk(
    old: Any,
    new: Any,
    parts: list[PathPart],
    out: list[FieldChange],
    sensitive: bool,
    limit: int,
) -> int:
    """Append the changes between old and new under `parts`; returns how many there were."""
    if old is not _MISSING and new is not _MISSING and old == new:
        return 0
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        count = 0
        for key in sorted(set(old) | set(new), key=str):
            count += _walk(
                old.get(key, _MISSING), new.get(key, _MISSING), [*parts, key], out, sensitive, limit
            )
        return count
    if isinstance(old, list) and isinstance(new, list):
        return _walk_list(old, new, parts, out, sensitive, limit)
    return _emit(parts, old, new, out, sensitive, limit)


def _walk_list(
    old: list[Any],
    new: list[Any],
    parts: list[PathPart],
    out: list[FieldChange],
    sensitive: bool,
    limit: int,
) -> int:
    old_named, new_named = _named(old), _named(new)
    if old_named is not None and new_named is not None and (old_named or new_named):
        count = 0
        for name in [*old_named, *(n for n in new_named if n not in old_named)]:
            count += _walk(
                old_named.get(name, _MISSING),
                new_named.get(name, _MISSING),
                [*parts, ("name", name)],
                out,
                sensitive,
                limit,
            )
        if count:
            return count
        # Same items, other order: report the list as a whole.
        return _emit(parts, [i["name"] for i in old], [i["name"] for i in new], out, False, limit)
    count = 0
    for index in range(max(len(old), len(new))):
        count += _walk(
            old[index] if index < len(old) else _MISSING,
            new[index] if index < len(new) else _MISSING,
            [*parts, index],
            out,
            sensitive,
            limit,
        )
    return count
