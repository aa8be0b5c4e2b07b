"""Structured logging: plain text for people, JSON lines for log pipelines.

Both formats carry the same structured fields. Callers attach them with
`extra=`, e.g. `log.info("applied", extra=object_fields(body, controller="kustomize"))`.
The object is passed as a `k8s_ref` mapping, the same shape kopf's
per-object loggers attach, and shows up as kind/namespace/name fields:
`name` itself cannot be an extra, since the stdlib reserves it for the
logger's name.

Inside `about_object(...)` (the reconcile frame enters it for each reconcile)
every record without its own `k8s_ref` gets that object's, so each line a
reconcile logs, in any module, can be filtered by object (`headwater logs`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from controllers.toolkit.runtime.settings import LogFormat, LogLevel

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

# Kopf internals attached to its records that are not worth logging as fields.
_KOPF_ATTRS = frozenset({"k8s_ref", "k8s_skip", "settings"})

# Fields shown first, in this order, so lines read alike across controllers.
_LEADING_FIELDS = ("controller", "kind", "namespace", "name")

_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


def level_name(levelno: int) -> str:
    """The lowercase level name used in both formats (Flux logs `info`, `error`)."""
    for threshold in sorted(_LEVEL_NAMES, reverse=True):
        if levelno >= threshold:
            return _LEVEL_NAMES[threshold]
    return "debug"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: its `extra=` values plus kopf's object reference."""
    fields: dict[str, Any] = {}
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, Mapping):
        for key in ("kind", "namespace", "name"):
            if ref.get(key):
                fields[key] = ref[key]
    for key, value in vars(record).items():
        if key in _STANDARD_ATTRS or key in _KOPF_ATTRS or key.startswith("_"):
            continue
        fields[key] = value
    ordered = {key: fields.pop(key) for key in _LEADING_FIELDS if key in fields}
    ordered.update(sorted(fields.items()))
    return ordered


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    """Fallback for values json cannot encode: their text form, never an exception."""
    return str(value)


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": level_name(record.levelno),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            # The four fixed keys are the contract; an extra cannot replace them.
            line.setdefault(key, value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["error"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii=False keeps non-ASCII names readable; newlines inside are escaped.
        return json.dumps(line, default=_jsonable, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`ts level logger: msg key=value ...`, easy to read in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            f"{level_name(record.levelno):<7}",
            f"{record.name}:",
            record.getMessage(),
        ]
        for key, value in record_fields(record).items():
            text = value if isinstance(value, str) else json.dumps(value, default=_jsonable)
            if not text or any(ch.isspace() or ch in '"=' for ch in text):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


# The object the running reconcile works on; a context variable, so each asyncio
# task (and the threads it starts with to_thread) sees its own.
_OBJECT: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "headwater_log_object", default=None
)


@contextlib.contextmanager
def about_object(kind: str, namespace: str | None, name: str) -> Iterator[None]:
    """Records logged inside carry this object's kind, namespace and name."""
    ref = {"kind": kind, "namespace": namespace or "", "name": name}
    token = _OBJECT.set({k: v for k, v in ref.items() if v})
    try:
        yield
    finally:
        _OBJECT.reset(token)


class ObjectContextFilter(logging.Filter):
    """Adds the current `about_object` to records that name no object of their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        ref = _OBJECT.get()
        if ref and not isinstance(getattr(record, "k8s_ref", None), Mapping):
            record.k8s_ref = dict(ref)
        return True


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonLinesFormatter() if log_format == "json" else TextFormatter()


# Marks the handler this module installed, so reconfiguring replaces it rather than adding one.
_HANDLER_NAME = "headwater"


def configure_logging(
    log_format: LogFormat = "text",
    level: LogLevel = "info",
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send all logs to `stream` (stderr by default) in the chosen format and level."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(ObjectContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Kopf and aiohttp are chatty at debug; keep them at info unless debugging.
    noisy_level = logging.DEBUG if level == "debug" else logging.INFO
    logging.getLogger("kopf").setLevel(max(noisy_level, root.level))
    # Kopf logs every raw-event handler call at info; the Reconciler logs what matters.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, root.level))
    # The kubernetes client logs request bodies at debug, which may hold Secret data.
    logging.getLogger("kubernetes").setLevel(max(logging.INFO, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
    return handler


def object_fields(body: Mapping[str, Any], *, controller: str | None = None) -> dict[str, Any]:
    """The `extra=` fields identifying a Kubernetes object in log lines."""
    metadata = body.get("metadata") or {}
    ref = {
        "kind": body.get("kind"),
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
    }
    fields: dict[str, Any] = {"k8s_ref": {k: str(v) for k, v in ref.items() if v}}
    if controller:
        fields["controller"] = controller
    return fields
