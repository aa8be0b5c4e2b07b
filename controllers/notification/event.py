"""Flux's event JSON (`event.toolkit.fluxcd.io` v1beta1 Event), parsed and checked.

Emitters POST this to the intake. Parsing is strict about shape, so a
malformed event is refused with an answer naming the field, rather than
failing later in a provider: `involvedObject.kind`, `.name` and `message`,
`reason`, `reportingController`, `timestamp` must be strings; `severity`
is `info` or `error`; `metadata`, when present, maps strings to strings.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from controllers.toolkit.apply.resources import split_api_version

INFO = "info"
ERROR = "error"
SEVERITIES = (INFO, ERROR)

# The group of metadata keys every emitter may set regardless of the object's
# own group (Flux's RFC 0008: copied from `event.toolkit.fluxcd.io/*` annotations).
EVENT_GROUP = "event.toolkit.fluxcd.io"

# Metadata key names (qualified with a group on the wire).
REVISION = "revision"
ORIGIN_REVISION = "originRevision"
TOKEN = "token"
DIGEST = "digest"
CHECKSUM = "checksum"
COMMIT = "commit"
COMMIT_STATUS = "commit_status"
COMMIT_STATUS_UPDATE = "update"

# Fields of core/v1 ObjectReference that an involvedObject may carry.
_REFERENCE_FIELDS = (
    "apiVersion",
    "kind",
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "fieldPath",
)


class EventError(ValueError):
    """The event is malformed; `field` names where."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class FluxEvent:
    """One event as the notification controller handles it."""

    involved_object: Mapping[str, str]
    severity: str
    timestamp: str
    message: str
    reason: str
    metadata: Mapping[str, str]
    reporting_controller: str
    reporting_instance: str = ""

    @property
    def kind(self) -> str:
        return self.involved_object.get("kind", "")

    @property
    def name(self) -> str:
        return self.involved_object.get("name", "")

    @property
    def namespace(self) -> str:
        return self.involved_object.get("namespace", "")

    @property
    def api_version(self) -> str:
        return self.involved_object.get("apiVersion", "")

    @property
    def group(self) -> str:
        return split_api_version(self.api_version)[0]

    def object_key(self, key: str) -> str:
        """`key` qualified with the involved object's group, as emitters send it."""
        return f"{self.group}/{key}"

    def object_metadata(self, key: str) -> str | None:
        return self.metadata.get(self.object_key(key))

    def describe(self) -> str:
        """`Kind/namespace/name`, as Flux names the object in dispatch errors."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    def with_metadata(self, metadata: Mapping[str, str]) -> FluxEvent:
        return dataclasses.replace(self, metadata=dict(metadata))

    def to_json(self) -> dict[str, Any]:
        """Flux's JSON form: what generic providers receive."""
        body: dict[str, Any] = {
            "involvedObject": dict(self.involved_object),
            "severity": self.severity,
            "timestamp": self.timestamp,
            "message": self.message,
            "reason": self.reason,
        }
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        body["reportingController"] = self.reporting_controller
        if self.reporting_instance:
            body["reportingInstance"] = self.reporting_instance
        return body


def _string(data: Mapping[str, Any], key: str, field: str, *, required: bool) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise EventError(field, "required")
        return ""
    if not isinstance(value, str):
        raise EventError(field, f"must be a string, not {type(value).__name__}")
    if required and not value:
        raise EventError(field, "must not be empty")
    return value


def parse_timestamp(value: str) -> datetime.datetime:
    """RFC 3339, as metav1.Time marshals it (`Z` or an offset, optional fraction)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python takes at most microseconds; Go may send nanoseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None or "T" not in text.upper():
        raise ValueError("not RFC 3339")
    return parsed


def parse_event(data: Any) -> FluxEvent:
    """Check and convert a decoded JSON body; raises EventError naming the bad field."""
    if not isinstance(data, Mapping):
        raise EventError("body", "must be a JSON object")
    involved = data.get("involvedObject")
    if involved is None:
        raise EventError("involvedObject", "required")
    if not isinstance(involved, Mapping):
        raise EventError("involvedObject", "must be an object")
    reference: dict[str, str] = {}
    for key in _REFERENCE_FIELDS:
        value = _string(involved, key, f"involvedObject.{key}", required=key in ("kind", "name"))
        if value:
            reference[key] = value
    severity = _string(data, "severity", "severity", required=True)
    if severity not in SEVERITIES:
        raise EventError("severity", f"must be 'info' or 'error', not {severity!r}")
    timestamp = _string(data, "timestamp", "timestamp", required=True)
    try:
        parse_timestamp(timestamp)
    except ValueError:
        raise EventError("timestamp", f"not an RFC 3339 time: {timestamp[:64]!r}") from None
    message = _string(data, "message", "message", required=True)
    reason = _string(data, "reason", "reason", required=True)
    controller = _string(data, "reportingController", "reportingController", required=True)
    instance = _string(data, "reportingInstance", "reportingInstance", required=False)
    raw_metadata = data.get("metadata")
    metadata: dict[str, str] = {}
    if raw_metadata is not None:
        if not isinstance(raw_metadata, Mapping):
            raise EventError("metadata", "must be an object of strings")
        for key, value in raw_metadata.items():
            if not isinstance(value, str):
                raise EventError(f"metadata.{key}", f"must be a string, not {type(value).__name__}")
            metadata[str(key)] = value
    return FluxEvent(
        involved_object=reference,
        severity=severity,
        timestamp=timestamp,
        message=message,
        reason=reason,
        metadata=metadata,
        reporting_controller=controller,
        reporting_instance=instance,
    )


def clean_metadata(event: FluxEvent) -> FluxEvent:
    """Keep only metadata alerts use, as Flux's intake does.

    Keys must carry the event group or the object's group; the object's
    `checksum` and `digest` are dropped (they change with every artifact
    and would only defeat de-duplication and clutter messages).
    """
    event_prefix = EVENT_GROUP + "/"
    object_prefix = event.group + "/"
    dropped = {event.object_key(CHECKSUM).lower(), event.object_key(DIGEST).lower()}
    kept = {
        key: value
        for key, value in event.metadata.items()
        if key.lower() not in dropped
        and (key.startswith(event_prefix) or key.startswith(object_prefix))
    }
    return event.with_metadata(kept)


def without_internal_metadata(event: FluxEvent) -> FluxEvent:
    """Drop the object's `token`: it only feeds de-duplication, never a provider."""
    token_key = event.object_key(TOKEN)
    if token_key not in event.metadata:
        return event
    return event.with_metadata({k: v for k, v in event.metadata.items() if k != token_key})
