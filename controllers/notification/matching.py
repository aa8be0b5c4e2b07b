"""Which Alerts an event goes to, and the metadata each notification carries.

Flux's rules, as plain functions over typed specs:

- a suspended Alert takes nothing;
- an event source matches on kind, namespace (the Alert's own when unset)
  and name (`*` for any), then on `matchLabels` against the involved
  object's labels (looked up only when a source asks for them);
- an `info` Alert takes every severity, an `error` Alert only errors;
- with an `inclusionList`, at least one pattern must match the message;
  any `exclusionList` match drops it (patterns are searched, not anchored);
- metadata is merged from low to high precedence: `event.toolkit.fluxcd.io/*`
  keys, the Alert's `eventMetadata`, its `summary` (as `summary`), then the
  object's own `<group>/*` keys, with prefixes stripped for display.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.notification.event import ERROR, EVENT_GROUP, INFO, FluxEvent

WILDCARD = "*"
SUMMARY_KEY = "summary"

# Labels of the involved object, None when it cannot be read.
LabelLookup = Callable[[FluxEvent], Awaitable[Mapping[str, str] | None]]


# Alerts have nothing to refuse: every field is used. `eventSources[].apiVersion`
# is accepted and, as in Flux, not compared: sources match on kind, namespace,
# name and labels (the labels are read at the event's own apiVersion).
UNSUPPORTED_FIELDS: dict[str, str] = {}


@dataclass(frozen=True)
class EventSource:
    kind: str
    name: str
    namespace: str
    match_labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class AlertSpec:
    """An Alert's spec, with defaults applied."""

    namespace: str
    name: str
    provider_name: str
    severity: str = INFO
    sources: tuple[EventSource, ...] = ()
    inclusion: tuple[str, ...] = ()
    exclusion: tuple[str, ...] = ()
    event_metadata: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    suspend: bool = False

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> AlertSpec:
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        namespace = str(metadata.get("namespace") or "")
        sources = tuple(
            EventSource(
                kind=str(source.get("kind") or ""),
                name=str(source.get("name") or ""),
                # Flux: an unset namespace means the Alert's own.
                namespace=str(source.get("namespace") or namespace),
                match_labels=(
                    {str(k): str(v) for k, v in source["matchLabels"].items()}
                    if isinstance(source.get("matchLabels"), Mapping)
                    else None
                ),
            )
            for source in spec.get("eventSources") or []
            if isinstance(source, Mapping)
        )
        return cls(
            namespace=namespace,
            name=str(metadata.get("name") or ""),
            provider_name=str((spec.get("providerRef") or {}).get("name") or ""),
            severity=str(spec.get("eventSeverity") or INFO),
            sources=sources,
            inclusion=tuple(str(p) for p in spec.get("inclusionList") or []),
            exclusion=tuple(str(p) for p in spec.get("exclusionList") or []),
            event_metadata={str(k): str(v) for k, v in (spec.get("eventMetadata") or {}).items()},
            summary=str(spec.get("summary") or ""),
            suspend=bool(spec.get("suspend")),
        )


def severity_matches(alert_severity: str, event_severity: str) -> bool:
    return alert_severity == INFO or (alert_severity == ERROR and event_severity == ERROR)


def source_matches_ignoring_labels(source: EventSource, event: FluxEvent) -> bool:
    return (
        source.kind == event.kind
        and source.namespace == event.namespace
        and (source.name == WILDCARD or source.name == event.name)
    )


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """matchLabels semantics: every pair present with an equal value."""
    return all(labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True)
class PatternResult:
    matched: bool
    errors: tuple[str, ...] = ()  # patterns that do not compile, with the reason


def _search(patterns: Sequence[str], message: str) -> PatternResult:
    errors: list[str] = []
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            errors.append(f"{pattern!r}: {exc}")
            continue
        if compiled.search(message):
            return PatternResult(True, tuple(errors))
    return PatternResult(False, tuple(errors))


def message_included(alert: AlertSpec, message: str) -> PatternResult:
    """True without an inclusion list; else when some pattern matches."""
    if not alert.inclusion:
        return PatternResult(True)
    return _search(alert.inclusion, message)


def message_excluded(alert: AlertSpec, message: str) -> PatternResult:
    if not alert.exclusion:
        return PatternResult(False)
    return _search(alert.exclusion, message)


@dataclass(frozen=True)
class AlertMatch:
    alert: AlertSpec
    # Problems with the Alert's own configuration, to report on it (bad patterns).
    config_errors: tuple[str, ...] = ()


async def match_alert(
    alert: AlertSpec, event: FluxEvent, labels_of: LabelLookup
) -> AlertMatch | None:
    """The match when `alert` takes `event`, else None."""
    if alert.suspend or not severity_matches(alert.severity, event.severity):
        return None
    candidates = [s for s in alert.sources if source_matches_ignoring_labels(s, event)]
    if not candidates:
        return None
    if not any(s.match_labels is None for s in candidates):
        labels = await labels_of(event)
        if labels is None or not any(
            labels_match(s.match_labels or {}, labels) for s in candidates
        ):
            return None
    included = message_included(alert, event.message)
    errors = list(included.errors)
    if not included.matched:
        return None
    excluded = message_excluded(alert, event.message)
    errors.extend(excluded.errors)
    if excluded.matched:
        return None
    return AlertMatch(alert=alert, config_errors=tuple(errors))


async def matching_alerts(
    alerts: Sequence[AlertSpec], event: FluxEvent, labels_of: LabelLookup
) -> list[AlertMatch]:
    matches = []
    for alert in alerts:
        found = await match_alert(alert, event, labels_of)
        if found is not None:
            matches.append(found)
    return matches


@dataclass(frozen=True)
class CombinedMetadata:
    metadata: dict[str, str]
    # Keys set by more than one source, with the sources, for a warning.
    conflicts: dict[str, tuple[str, ...]]


SOURCE_EVENT_GROUP = "involved object annotations"
SOURCE_ALERT_METADATA = "Alert object .spec.eventMetadata"
SOURCE_ALERT_SUMMARY = "Alert object .spec.summary"
SOURCE_OBJECT_GROUP = "involved object controller metadata"


def combine_metadata(event: FluxEvent, alert: AlertSpec) -> CombinedMetadata:
    """The metadata a notification carries, with Flux's precedence (RFC 0008)."""
    metadata: dict[str, str] = {}
    sources: dict[str, list[str]] = {}

    def put(key: str, value: str, source: str) -> None:
        metadata[key] = value
        sources.setdefault(key, []).append(source)

    event_prefix = EVENT_GROUP + "/"
    for key, value in sorted(event.metadata.items()):
        if key.startswith(event_prefix):
            put(key[len(event_prefix) :], value, SOURCE_EVENT_GROUP)
    for key, value in sorted(alert.event_metadata.items()):
        put(key, value, SOURCE_ALERT_METADATA)
    if alert.summary:
        put(SUMMARY_KEY, alert.summary, SOURCE_ALERT_SUMMARY)
    object_prefix = event.group + "/"
    for key, value in sorted(event.metadata.items()):
        if key.startswith(object_prefix):
            put(key[len(object_prefix) :], value, SOURCE_OBJECT_GROUP)
    conflicts = {key: tuple(found) for key, found in sources.items() if len(found) > 1}
    return CombinedMetadata(metadata=metadata, conflicts=conflicts)
