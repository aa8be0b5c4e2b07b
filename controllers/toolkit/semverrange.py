"""Semantic versions and Masterminds/npm-style range constraints, for ``ref.semver``.

Written here rather than taken from a library: python-semver only matches single
comparisons and packaging implements PEP 440, neither understands ``^1.2``, ``~1.2``,
``1.2.x``, ``1.0 - 2.0`` or ``||``.

Semantics (Masterminds semver v3, which Flux uses):
- versions may carry a ``v`` prefix and omit minor/patch (``v1.2`` is 1.2.0);
- comparators in a group are ANDed (space or comma separated); groups are ORed by ``||``;
- ``x``/``X``/``*`` or missing parts are wildcards: ``1.2`` and ``1.2.x`` mean >=1.2.0 <1.3.0,
  ``>1.2`` means >=1.3.0, ``<=1.2`` means <1.3.0, ``*`` is anything;
- ``~1.2.3`` is >=1.2.3 <1.3.0, ``~1`` is >=1.0.0 <2.0.0;
- ``^1.2.3`` is >=1.2.3 <2.0.0, ``^0.2.3`` is >=0.2.3 <0.3.0, ``^0.0.3`` is >=0.0.3 <0.0.4;
- ``a - b`` is >=a <=b (with b's wildcard rule);
- a pre-release version only satisfies comparators that themselves name a pre-release, so
  ``>=1.2.0-rc.0`` allows 1.2.0-rc.1 while ``^1.2`` and even ``>=1.2.0-rc.0 <2`` do not
  (Masterminds checks each comparator on its own).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

_VERSION = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*))?(?:\.(?P<patch>0|[1-9]\d*))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
# One comparator: optional operator, then a version whose parts may be wildcards.
_COMPARATOR = re.compile(
    r"^(?P<op>=|!=|>=|<=|>|<|~>|~|\^)?\s*v?(?P<major>\d+|[xX*])"
    r"(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_WILD = ("x", "X", "*")
# Go's semver parses numbers as uint64; longer ones are not versions (and Python's int()
# refuses more than 4300 digits, so a tag of a million nines must not reach it).
_MAX_NUMBER = 2**64 - 1


def _uint64(text: str) -> int | None:
    if len(text) > 20:
        return None
    number = int(text)
    return number if number <= _MAX_NUMBER else None


class ConstraintError(ValueError):
    """The constraint string is not a valid range."""


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    original: str = ""

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """The version a tag names, or None when the tag is not a version."""
        m = _VERSION.match(text)
        if not m:
            return None
        pre = tuple(m.group("pre").split(".")) if m.group("pre") else ()
        # Numeric pre-release identifiers must not have leading zeros (semver 2.0.0 §9).
        if any(p.isdigit() and len(p) > 1 and p.startswith("0") for p in pre):
            return None
        numbers = [_uint64(m.group(part) or "0") for part in ("major", "minor", "patch")]
        major, minor, patch = numbers
        if major is None or minor is None or patch is None:
            return None
        return cls(major, minor, patch, pre, text)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after all its pre-releases; numeric identifiers sort before
        # alphanumeric ones and compare as numbers.
        # Numeric identifiers have no leading zeros, so length then text orders them.
        pre = tuple((0, len(p), p) if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


@dataclass(frozen=True)
class _Bound:
    op: str  # one of >=, >, <=, <, =, !=
    version: Version

    def allows(self, v: Version) -> bool:
        cmp = (v > self.version) - (v < self.version)
        return {
            ">=": cmp >= 0,
            ">": cmp > 0,
            "<=": cmp <= 0,
            "<": cmp < 0,
            "=": cmp == 0,
            "!=": cmp != 0,
        }[self.op]


@dataclass(frozen=True)
class _Comparator:
    """One written comparator, expanded into bounds that must all hold."""

    bounds: tuple[_Bound, ...]
    has_prerelease: bool

    def allows(self, v: Version) -> bool:
        if v.prerelease and not self.has_prerelease:
            return False
        return all(b.allows(v) for b in self.bounds)


def _num(part: str | None) -> int | None:
    if part is None or part in _WILD:
        return None
    number = _uint64(part)
    if number is None:
        raise ConstraintError(f"version number {part[:20]}... is larger than {_MAX_NUMBER}")
    return number


def _expand(
    op: str, major: int | None, minor: int | None, patch: int | None, pre: str
) -> list[_Bound]:
    """Turn one comparator into bounds; None parts are wildcards."""
    pre_t = tuple(pre.split(".")) if pre else ()
    if major is None:
        # "*", "x", ">=x", "<=x" allow anything; "<x", ">x" and "!=x" allow nothing.
        return [] if op not in ("<", ">", "!=") else [_Bound("<", Version(0, 0, 0))]
    lo = Version(major, minor or 0, patch or 0, pre_t)
    if minor is None:
        nxt = Version(major + 1, 0, 0)
    elif patch is None:
        nxt = Version(major, minor + 1, 0)
    else:
        nxt = Version(major, minor, patch + 1)
    partial = minor is None or patch is None
    if op in ("", "="):
        return [_Bound(">=", lo), _Bound("<", nxt)] if partial else [_Bound("=", lo)]
    if op == "!=":
        if partial:
            # Outside [lo, nxt): expressed as a single bound is impossible; use a sentinel.
            raise ConstraintError("'!=' with a wildcard version is not supported")
        return [_Bound("!=", lo)]
    if op == ">":
        return [_Bound(">=", nxt)] if partial else [_Bound(">", lo)]
    if op == ">=":
        return [_Bound(">=", lo)]
    if op == "<":
        return [_Bound("<", lo)]
    if op == "<=":
        return [_Bound("<", nxt)] if partial else [_Bound("<=", lo)]
    if op in ("~", "~>"):
        upper = Version(major + 1, 0, 0) if minor is None else Version(major, minor + 1, 0)
        return [_Bound(">=", lo), _Bound("<", upper)]
    if op == "^":
        if major > 0 or minor is None:
            upper = Version(major + 1, 0, 0)
        elif minor > 0 or patch is None:
            upper = Version(0, minor + 1, 0)
        else:
            upper = Version(0, 0, patch + 1)
        return [_Bound(">=", lo), _Bound("<", upper)]
    raise ConstraintError(f"unknown operator {op!r}")


def _comparator(text: str) -> _Comparator:
    m = _COMPARATOR.match(text)
    if not m:
        raise ConstraintError(f"invalid comparator {text!r}")
    pre = m.group("pre") or ""
    bounds = _expand(
        m.group("op") or "",
        _num(m.group("major")),
        _num(m.group("minor")),
        _num(m.group("patch")),
        pre,
    )
    return _Comparator(tuple(bounds), bool(pre))


@dataclass(frozen=True)
class Constraint:
    """A parsed range: any group (ORed) whose comparators (ANDed) all allow the version."""

    text: str
    groups: tuple[tuple[_Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Constraint:
        if not text.strip():
            raise ConstraintError("empty semver constraint")
        groups: list[tuple[_Comparator, ...]] = []
        for group in text.split("||"):
            group = group.strip()
            if not group:
                raise ConstraintError(f"empty alternative in {text!r}")
            hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", group)
            if hyphen:
                low, high = _comparator(">=" + hyphen.group(1)), _comparator("<=" + hyphen.group(2))
                groups.append((low, high))
                continue
            # Operators may be separated from their version by spaces (">= 1.2"): glue them.
            glued = re.sub(r"(=|!=|>=|<=|>|<|~>|~|\^)\s+", r"\1", group)
            items = [t for t in re.split(r"[\s,]+", glued) if t]
            groups.append(tuple(_comparator(t) for t in items))
        return cls(text, tuple(groups))

    def allows(self, v: Version) -> bool:
        return any(all(c.allows(v) for c in group) for group in self.groups)


def highest_matching(tags: Iterable[str], constraint: str) -> tuple[str, Version] | None:
    """The tag naming the highest version that satisfies `constraint` (ties: greatest name).

    Raises ConstraintError for an invalid constraint; tags that are not versions are skipped.
    """
    parsed = Constraint.parse(constraint)
    best: tuple[Version, str] | None = None
    for tag in tags:
        v = Version.parse(tag)
        if v is None or not parsed.allows(v):
            continue
        if best is None or (v, tag) > best:
            best = (v, tag)
    return (best[1], best[0]) if best else None
