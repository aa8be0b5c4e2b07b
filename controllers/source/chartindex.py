"""A Helm chart repository's ``index.yaml``: parsed, checked, normalised and searched.

Pure steps, no I/O:

- `parse_index` reads the document (YAML or JSON) with anchors and aliases refused,
  so a small file cannot expand into a huge structure ("billion laughs") once it is
  written back out; it checks the shape Helm requires (an ``apiVersion``, ``entries``
  mapping chart names to lists of versions) and drops versions that are not semver,
  as Helm does.
- `canonical_json` is what the HelmRepository publishes: the index with each chart's
  versions sorted newest first and keys sorted, as JSON (which is YAML). Flux stores
  the index as JSON too; its sha256 is the artifact's revision and digest (an index
  whose only change is its ``generated`` time still gets a new revision, as in Flux).
- `select_version` picks the newest version of a chart matching a semver range.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import yaml

from controllers.toolkit.semverrange import Constraint, ConstraintError, Version

DEFAULT_VERSION = "*"


class ChartIndexError(ValueError):
    """The index cannot be used: bad YAML or not the shape of a Helm repository index."""


class ChartReferenceError(LookupError):
    """No such chart, or no version matching the range (Flux: InvalidChartReference)."""


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases (no index needs them)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ChartIndexError(
                "YAML aliases are not allowed in a repository index "
                f"(line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)


@dataclass(frozen=True)
class ChartVersion:
    """One entry of ``entries.<name>[]``."""

    name: str
    version: str
    parsed: Version
    urls: tuple[str, ...]
    digest: str  # hex sha256 of the chart archive, "" when the index has none
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    def download_url(self, repository_url: str) -> str:
        """The first URL, resolved against the repository URL when relative (as Helm does)."""
        if not self.urls:
            raise ChartReferenceError(f"chart '{self.name}' version '{self.version}' has no URL")
        base = repository_url if repository_url.endswith("/") else repository_url + "/"
        return urljoin(base, self.urls[0])


@dataclass(frozen=True)
class ChartIndex:
    api_version: str
    entries: Mapping[str, tuple[ChartVersion, ...]]  # newest first
    extra: Mapping[str, Any] = field(repr=False, compare=False)

    def versions(self, name: str) -> tuple[ChartVersion, ...]:
        return self.entries.get(name, ())


def parse_index(data: bytes) -> ChartIndex:
    """The index in `data`; ChartIndexError says what is wrong with it."""
    try:
        doc = yaml.load(data, Loader=_NoAliasLoader)
    except ChartIndexError:
        raise
    except yaml.YAMLError as exc:
        raise ChartIndexError(f"invalid YAML: {_first_line(str(exc))}") from None
    if not isinstance(doc, Mapping):
        raise ChartIndexError("the index is not a YAML mapping")
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or not api_version:
        raise ChartIndexError("no API version specified")
    raw_entries = doc.get("entries") or {}
    if not isinstance(raw_entries, Mapping):
        raise ChartIndexError("'entries' must map chart names to lists of versions")
    entries: dict[str, tuple[ChartVersion, ...]] = {}
    for name, items in raw_entries.items():
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise ChartIndexError(f"entries.{name} must be a list of chart versions")
        versions = []
        for item in items:
            if not isinstance(item, Mapping):
                raise ChartIndexError(f"entries.{name} holds an item that is not a mapping")
            text = item.get("version")
            parsed = Version.parse(str(text)) if text is not None else None
            if parsed is None:
                continue  # Helm skips versions that are not semver
            urls = item.get("urls") or []
            if not isinstance(urls, Sequence) or isinstance(urls, str):
                raise ChartIndexError(f"entries.{name}: 'urls' of version {text} must be a list")
            versions.append(
                ChartVersion(
                    name=str(name),
                    version=str(text),
                    parsed=parsed,
                    urls=tuple(str(u) for u in urls),
                    digest=str(item.get("digest") or ""),
                    raw=item,
                )
            )
        # Newest first; equal versions keep the index's order (stable sort).
        versions.sort(key=lambda v: v.parsed, reverse=True)
        entries[str(name)] = tuple(versions)
    extra = {k: v for k, v in doc.items() if k not in ("apiVersion", "entries")}
    return ChartIndex(api_version=api_version, entries=entries, extra=extra)


def canonical_json(index: ChartIndex) -> bytes:
    """The normalised index as published: stable order, JSON (valid YAML)."""
    doc: dict[str, Any] = dict(index.extra)
    doc["apiVersion"] = index.api_version
    doc["entries"] = {
        name: [dict(v.raw) for v in versions] for name, versions in sorted(index.entries.items())
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def select_version(index: ChartIndex, name: str, version_range: str) -> ChartVersion:
    """The newest version of chart `name` allowed by `version_range`.

    Raises ChartReferenceError (chart missing, nothing matches) or ConstraintError.
    """
    versions = index.versions(name)
    if not versions:
        raise ChartReferenceError(f"no chart name '{name}' found in the repository index")
    constraint = Constraint.parse(version_range or DEFAULT_VERSION)
    for candidate in versions:  # newest first
        if constraint.allows(candidate.parsed):
            return candidate
    raise ChartReferenceError(
        f"no '{name}' chart with version matching '{version_range or DEFAULT_VERSION}' found"
    )


def _first_line(text: str) -> str:
    return " ".join(text.split())[:300]


__all__ = [
    "DEFAULT_VERSION",
    "ChartIndex",
    "ChartIndexError",
    "ChartReferenceError",
    "ChartVersion",
    "ConstraintError",
    "canonical_json",
    "parse_index",
    "select_version",
]
