"""Kubernetes label selectors, as `--watch-label-selector` takes them.

The grammar is the one `kubectl -l` and Flux's `--watch-label-selector`
accept: requirements separated by commas, each one of `key`, `!key`,
`key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`.
All requirements must hold. Parsed here (not by the API server) because
kopf watches every object of a kind and headwater filters what it caches
itself; a bad selector must still fail at startup, naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# Flux's sharding convention: every object of one shard carries this label.
SHARD_KEY = "sharding.fluxcd.io/key"

Operator = Literal["exists", "!exists", "=", "!=", "in", "notin"]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_SET = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_COMPARE = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s!=(),]*)$")


class SelectorError(ValueError):
    """The selector text cannot be parsed; the message says which part and why."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = field(default_factory=frozenset)

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # != and notin hold for objects without the label, as in Kubernetes.
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A parsed selector; the empty one matches every object."""

    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        found = labels or {}
        return all(req.matches(found) for req in self.requirements)

    def matches_object(self, obj: Mapping[str, object]) -> bool:
        metadata = obj.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        return self.matches(labels if isinstance(labels, Mapping) else None)

    def __str__(self) -> str:
        return self.text


def parse_selector(text: str) -> LabelSelector:
    """Parse a selector; raises SelectorError naming the requirement that is wrong."""
    requirements = tuple(_requirement(part.strip()) for part in _split(text) if part.strip())
    return LabelSelector(requirements=requirements, text=text.strip())


def _split(text: str) -> list[str]:
    """Split at the commas between requirements, not those inside `in (a,b)`."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append("".join(current))
    if len(parts) > 1 and any(not part.strip() for part in parts):
        raise SelectorError(f"empty requirement in selector {text!r}")
    return parts


def _requirement(part: str) -> Requirement:
    if match := _SET.match(part):
        values = [value.strip() for value in match["values"].split(",")]
        if not all(values):
            raise SelectorError(f"{part!r}: a set needs values, e.g. key in (a,b)")
        op: Operator = "in" if match["op"] == "in" else "notin"
        return Requirement(_key(match["key"], part), op, frozenset(_value(v, part) for v in values))
    if match := _COMPARE.match(part):
        op = "!=" if match["op"] == "!=" else "="
        return Requirement(_key(match["key"], part), op, frozenset({_value(match["value"], part)}))
    if part.startswith("!"):
        return Requirement(_key(part[1:].strip(), part), "!exists")
    return Requirement(_key(part, part), "exists")


def _key(key: str, part: str) -> str:
    if not _KEY.match(key) or len(key.partition("/")[0]) > 253:
        raise SelectorError(f"{part!r}: invalid label key {key!r}")
    return key


def _value(value: str, part: str) -> str:
    if not _VALUE.match(value):
        raise SelectorError(f"{part!r}: invalid label value {value!r}")
    return value


_EXPRESSION_OPERATORS: Mapping[str, Operator] = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!exists",
}


def from_label_selector(spec: Mapping[str, object] | None, where: str) -> LabelSelector:
    """A metav1.LabelSelector (`matchLabels`, `matchExpressions`) as a LabelSelector.

    None or an empty selector matches everything, as in Kubernetes.
    """
    if not spec:
        return LabelSelector()
    requirements: list[Requirement] = []
    labels = spec.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise SelectorError(f"{where}.matchLabels must be a map")
    for key, value in sorted(labels.items()):
        requirements.append(Requirement(_key(str(key), where), "=", frozenset({str(value)})))
    expressions = spec.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise SelectorError(f"{where}.matchExpressions must be a list")
    for expr in expressions:
        if not isinstance(expr, Mapping):
            raise SelectorError(f"{where}.matchExpressions items must be objects")
        operator = _EXPRESSION_OPERATORS.get(str(expr.get("operator")))
        if operator is None:
            raise SelectorError(
                f"{where}.matchExpressions: operator '{expr.get('operator')}' is not one of "
                + ", ".join(_EXPRESSION_OPERATORS)
            )
        values = frozenset(str(v) for v in (expr.get("values") or []))
        if operator in ("in", "notin") and not values:
            raise SelectorError(f"{where}.matchExpressions: {expr.get('operator')} needs values")
        if operator in ("exists", "!exists") and values:
            raise SelectorError(f"{where}.matchExpressions: {expr.get('operator')} takes no values")
        requirements.append(Requirement(_key(str(expr.get("key") or ""), where), operator, values))
    return LabelSelector(requirements=tuple(requirements), text=where)
