"""Asking for a reconcile and waiting for its outcome, as `flux reconcile` does.

A request is the `reconcile.fluxcd.io/requestedAt` annotation set to a fresh
token; it has been handled once `status.lastHandledReconcileAt` equals that
token (the frame writes both with the final Ready in one patch). Ready=True
is then success, Ready=False failure (as `flux reconcile` reads it, even when
a retry is coming); Ready=Unknown means the controller is still at it.

While waiting, each change of the conditions people watch (Ready,
Reconciling, Healthy, Stalled) is reported once through `on_change`, so the
caller can show the apply and the health wait as they move.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from controllers.commands import common
from controllers.commands.common import CliError, Session
from controllers.commands.kinds import FluxKind
from controllers.toolkit.runtime import conditions as cond

POLL_SECONDS = 0.5
WATCHED_CONDITIONS = (cond.RECONCILING, "Healthy", cond.STALLED, cond.READY)

OnChange = Callable[[str, Mapping[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a wait ended: `ok`, or failed (`timed_out` says whether the clock ran out)."""

    ok: bool
    timed_out: bool
    obj: Mapping[str, Any]
    message: str
    elapsed: float


def fetch(session: Session, kind: FluxKind, namespace: str, name: str) -> dict[str, Any]:
    try:
        obj: dict[str, Any] = session.custom.get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name
        )
    except ApiException as exc:
        if exc.status == 404:
            raise CliError(f"{kind.kind} {namespace}/{name} not found") from None
        raise common.api_error(exc, f"reading {kind.kind} {namespace}/{name}") from None
    return obj


def patch(
    session: Session, kind: FluxKind, namespace: str, name: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """A merge patch (the kubernetes client sends a dict body to custom objects as one)."""
    try:
        obj: dict[str, Any] = session.custom.patch_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name, dict(body)
        )
    except ApiException as exc:
        if exc.status == 404:
            raise CliError(f"{kind.kind} {namespace}/{name} not found") from None
        raise common.api_error(exc, f"patching {kind.kind} {namespace}/{name}") from None
    return obj


def new_token() -> str:
    """A requestedAt value: RFC 3339 with nanoseconds, unique per request, as flux writes."""
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time.time_ns() % 1_000_000_000:09d}Z"


def request_reconcile(
    session: Session, kind: FluxKind, namespace: str, name: str, extra_spec: Mapping[str, Any] = {}
) -> str:
    token = new_token()
    body: dict[str, Any] = {"metadata": {"annotations": {cond.REQUESTED_AT_ANNOTATION: token}}}
    if extra_spec:
        body["spec"] = dict(extra_spec)
    patch(session, kind, namespace, name, body)
    return token


def condition_line(obj: Mapping[str, Any]) -> str:
    """The most telling condition now: Reconciling while at work, else Ready."""
    status = obj.get("status") or {}
    for type_ in WATCHED_CONDITIONS:
        found = cond.get_condition(status, type_)
        if found is not None and (type_ == cond.READY or found.get("status") == cond.TRUE):
            return f"{type_}={found.get('status')}: {found.get('message') or found.get('reason')}"
    return "waiting for the controller"


def handled(obj: Mapping[str, Any], token: str) -> bool:
    return (obj.get("status") or {}).get("lastHandledReconcileAt") == token


def settled(obj: Mapping[str, Any]) -> str | None:
    """`True`/`False` once Ready says how the last reconcile ended; None while in progress.

    Reconciling is not consulted: a failure that will be retried is Ready=False
    with Reconciling=True (ProgressingWithRetry), and that attempt has ended.
    """
    status = obj.get("status") or {}
    ready = cond.condition_status(status, cond.READY)
    return None if ready in (None, cond.UNKNOWN) else ready


def wait_for_reconcile(
    session: Session,
    kind: FluxKind,
    namespace: str,
    name: str,
    token: str,
    timeout: float,
    on_change: OnChange | None = None,
    before: Mapping[str, Any] | None = None,
    on_poll: Callable[[Mapping[str, Any]], None] | None = None,
) -> Outcome:
    """Poll until the request `token` is handled and Ready settles, or `timeout` passes.

    Conditions as `before` (the object read ahead of the request) had them are
    not reported again: only what moves after the request is news. `on_poll`
    sees the object at each poll until the outcome is known.
    """
    start = time.monotonic()
    deadline = start + timeout
    seen = {
        type_: _key(found)
        for type_ in WATCHED_CONDITIONS
        if (found := cond.get_condition((before or {}).get("status"), type_)) is not None
    }
    obj: Mapping[str, Any] = {}
    while True:
        obj = fetch(session, kind, namespace, name)
        status = obj.get("status") or {}
        for type_ in WATCHED_CONDITIONS:
            found = cond.get_condition(status, type_)
            if found is None:
                seen.pop(type_, None)
                continue
            key = _key(found)
            if seen.get(type_) != key:
                seen[type_] = key
                if on_change is not None and (
                    found.get("status") == cond.TRUE or type_ in (cond.READY, "Healthy")
                ):
                    on_change(type_, found)
        elapsed = time.monotonic() - start
        if on_poll is not None and not (handled(obj, token) and settled(obj) is not None):
            on_poll(obj)
        if handled(obj, token):
            result = settled(obj)
            if result is not None:
                ready = cond.get_condition(status, cond.READY)
                message = str(ready["message"] if ready else "")
                return Outcome(result == cond.TRUE, False, obj, message, elapsed)
        if time.monotonic() >= deadline:
            if handled(obj, token):
                message = f"timed out after {timeout:g}s, still {condition_line(obj)}"
            else:
                message = (
                    f"timed out after {timeout:g}s waiting for the controller to handle "
                    f"the request (is it running?); {condition_line(obj)}"
                )
            return Outcome(False, True, obj, message, elapsed)
        time.sleep(POLL_SECONDS)


def _key(condition: Mapping[str, Any]) -> tuple[str, str, str]:
    return (
        str(condition.get("status")),
        str(condition.get("reason")),
        str(condition.get("message")),
    )
