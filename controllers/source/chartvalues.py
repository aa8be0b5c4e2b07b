"""`spec.valuesFiles`: load each file and merge them into the chart's new values.yaml.

Flux's rule: the listed files replace the chart's values.yaml, merged in order, a later
file overriding an earlier one; maps merge key by key, anything else (lists, scalars,
null) replaces. Paths are relative to the source (the chart archive for a
HelmRepository chart, the artifact root for a GitRepository one) and must stay inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controllers.toolkit.artifacts import PathError, clean_relative

# A values file larger than this is not a values file.
MAX_VALUES_FILE = 8 * 1024 * 1024


class ValuesFileError(ValueError):
    """A values file is missing, escapes its root, or is not a YAML mapping."""


@dataclass(frozen=True)
class MergedValues:
    values: dict[str, Any]
    files: tuple[str, ...]  # the files that were found and merged, in order


def merge_maps(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`: nested maps merge, other values from `overlay` win."""
    result = dict(base)
    for key, value in overlay.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = merge_maps(current, value)
        else:
            result[key] = value
    return result


def load_values(data: bytes, where: str) -> dict[str, Any]:
    """One values document; empty is {}; ValuesFileError names `where`."""
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ValuesFileError(f"failed to parse values file '{where}': {detail}") from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ValuesFileError(f"values file '{where}' is not a YAML mapping")
    return dict(doc)


def merge_values_files(root: Path, paths: Sequence[str], *, ignore_missing: bool) -> MergedValues:
    """Merge the files at `paths` (relative to `root`), first to last."""
    merged: dict[str, Any] = {}
    found: list[str] = []
    for raw in paths:
        try:
            rel = clean_relative(raw, "values file path")
        except PathError as exc:
            raise ValuesFileError(str(exc)) from None
        if not rel:
            raise ValuesFileError(f"invalid values file path '{raw}': it names no file")
        path = root / rel
        if not _regular_file_inside(root, rel):
            if ignore_missing:
                continue
            raise ValuesFileError(f"no values file found at path '{raw}'")
        if path.stat().st_size > MAX_VALUES_FILE:
            raise ValuesFileError(f"values file '{raw}' is larger than {MAX_VALUES_FILE} bytes")
        merged = merge_maps(merged, load_values(path.read_bytes(), raw))
        found.append(raw)
    return MergedValues(values=merged, files=tuple(found))


def _regular_file_inside(root: Path, rel: str) -> bool:
    """Whether `rel` is a regular file under `root`, reached without symlinks."""
    current = root
    for part in rel.split("/"):
        current = current / part
        if current.is_symlink():
            return False
    return current.is_file()
