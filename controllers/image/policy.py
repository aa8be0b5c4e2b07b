"""Choosing the latest tag: Flux's semver, alphabetical and numerical policies, with filterTags.

`select_latest(tags, policy)` is the whole of it, a pure function:
- `filterTags.pattern` (a regular expression, searched as Go's MatchString does) keeps
  the tags it matches; `filterTags.extract` (Go's `Regexp.Expand` syntax: `$name`,
  `${name}`, `$1`, `$$`) turns each kept tag into the value the policy compares;
- semver: the highest version inside `range` (`toolkit/semverrange.py`, Masterminds'
  rules, so `>=1.0.0` leaves pre-releases out);
- alphabetical: the last value in ascending order (`asc`, the default) or the first (`desc`);
- numerical: the same over values read as numbers; a value that is not a number fails,
  as it does in Flux.
The tag returned is the original tag, never the extracted value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from controllers.toolkit.semverrange import ConstraintError, highest_matching

Order = Literal["asc", "desc"]


class PolicyError(ValueError):
    """The policy cannot choose a tag (nothing matches, or a value it cannot compare)."""


@dataclass(frozen=True)
class Policy:
    """One of semver / alphabetical / numerical, and the optional filter."""

    kind: Literal["semver", "alphabetical", "numerical"]
    semver_range: str = ""
    order: Order = "asc"
    pattern: re.Pattern[str] | None = None
    extract: str = ""

    def describe(self) -> str:
        if self.kind == "semver":
            return f"semver range '{self.semver_range}'"
        return f"{self.kind} order '{self.order}'"


_EXPAND = re.compile(r"\$(\$|\{(\w+)\}|(\w+))")


def go_expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.Expand: `$name`/`${name}`/`$1` become groups (unknown ones empty), `$$` is $."""

    def group(m: re.Match[str]) -> str:
        if m.group(1) == "$":
            return "$"
        name = m.group(2) or m.group(3) or ""
        try:
            value = match.group(int(name)) if name.isdigit() else match.group(name)
        except IndexError:  # no such group: empty, as in Go
            return ""
        return value or ""

    return _EXPAND.sub(group, template)


def filter_tags(tags: Iterable[str], policy: Policy) -> dict[str, str]:
    """Value the policy compares -> the tag it came from (the last tag wins a tie)."""
    values: dict[str, str] = {}
    for tag in tags:
        if policy.pattern is None:
            values[tag] = tag
            continue
        match = policy.pattern.search(tag)
        if match is None:
            continue
        value = go_expand(policy.extract, match) if policy.extract else tag
        values[value] = tag
    return values


def _number(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise PolicyError(f"failed to parse invalid numeric value '{value}'") from None
    if not number.is_finite():
        raise PolicyError(f"failed to parse invalid numeric value '{value}'")
    return number


def select_latest(tags: Iterable[str], policy: Policy) -> str:
    """The tag the policy selects; PolicyError when it selects none."""
    values = filter_tags(tags, policy)
    if not values:
        raise PolicyError("no tag matches spec.filterTags" if policy.pattern else "no tags found")
    if policy.kind == "semver":
        try:
            best = highest_matching(values, policy.semver_range)
        except ConstraintError as exc:
            raise PolicyError(f"invalid semver range '{policy.semver_range}': {exc}") from None
        if best is None:
            raise PolicyError(
                f"no tag matches semver range '{policy.semver_range}' "
                f"(among {len(values)} candidate tags)"
            )
        return values[best[0]]
    if policy.kind == "alphabetical":
        ordered = sorted(values)
    else:
        ordered = [v for _, v in sorted((_number(v), v) for v in values)]
    chosen = ordered[-1] if policy.order == "asc" else ordered[0]
    return values[chosen]
