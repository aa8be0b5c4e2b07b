"""Reconcile one Receiver: check the spec, read its token, publish `status.webhookPath`.

The path is Flux's: `/hook/` + hex SHA-256 of token + name + namespace, so
it changes when the token does and a Receiver moved from Flux keeps its
URL. Ready reasons are Flux's: `Succeeded`, `TokenNotFound` (the Secret or
its `token` key is missing; retried, and the path is withdrawn meanwhile so
no request is accepted without a token), `ValidationFailed` (the spec cannot
work until it changes: stalled).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controllers.notification.kinds import UnknownKindError, resolve_kind
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import (
    DurationError,
    format_duration,
    jittered,
    parse_duration,
)
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.fields import refuse_unsupported
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.reconciler import Object, Outcome, Resource

log = logging.getLogger(__name__)

RESOURCE = Resource("notification.toolkit.fluxcd.io", "v1", "receivers", "Receiver")
WEBHOOK_PREFIX = "/hook/"
SUPPORTED_TYPES = ("generic", "generic-hmac", "github", "gitlab")
DEFAULT_INTERVAL = 600.0
# A missing token is usually a Secret not created yet: look again soon.
TOKEN_RETRY = 10.0

TOKEN_NOT_FOUND = "TokenNotFound"
VALIDATION_FAILED = "ValidationFailed"

WILDCARD = "*"

# Receiver fields the CRD accepts and headwater does not implement: a Receiver
# setting one stalls (UnsupportedField) and publishes no webhook path, rather
# than asking every resource to reconcile as if no filter had been written.
UNSUPPORTED_FIELDS: dict[str, str] = {
    "spec.resources.filter": "CEL filters on resources are not implemented",
    "spec.resourceFilter": "CEL filters on resources are not implemented",
    "spec.oidcProviders": (
        "OIDC is only used by the generic-oidc receiver type, which headwater does not implement"
    ),
}


class ReceiverSpecError(ValueError):
    pass


@dataclass(frozen=True)
class ResourceRef:
    """One `spec.resources[]` entry."""

    kind: str
    name: str
    api_version: str = ""
    namespace: str = ""
    match_labels: Mapping[str, str] | None = None

    def describe(self, default_namespace: str) -> str:
        return f"{self.kind} '{self.namespace or default_namespace}/{self.name}'"


@dataclass(frozen=True)
class ReceiverSpec:
    type: str
    events: tuple[str, ...]
    resources: tuple[ResourceRef, ...]
    secret_name: str
    interval: float
    suspend: bool

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ReceiverSpec:
        """The spec, checked; ReceiverSpecError names the field that cannot work."""
        kind = str(spec.get("type") or "")
        if kind not in SUPPORTED_TYPES:
            raise ReceiverSpecError(
                f"spec.type: receiver type {kind!r} is not supported by headwater "
                f"(supported: {', '.join(SUPPORTED_TYPES)})"
            )
        try:
            interval = (
                parse_duration(str(spec["interval"]), field="spec.interval")
                if spec.get("interval")
                else DEFAULT_INTERVAL
            )
        except DurationError as exc:
            raise ReceiverSpecError(str(exc)) from None
        secret_name = str((spec.get("secretRef") or {}).get("name") or "")
        if not secret_name:
            raise ReceiverSpecError("spec.secretRef.name: required for this receiver type")
        resources = []
        for position, item in enumerate(spec.get("resources") or []):
            where = f"spec.resources[{position}]"
            labels = item.get("matchLabels")
            ref = ResourceRef(
                kind=str(item.get("kind") or ""),
                name=str(item.get("name") or ""),
                api_version=str(item.get("apiVersion") or ""),
                namespace=str(item.get("namespace") or ""),
                match_labels={str(k): str(v) for k, v in labels.items()} if labels else None,
            )
            try:
                resolve_kind(ref.kind, ref.api_version)
            except UnknownKindError as exc:
                raise ReceiverSpecError(f"{where}: {exc}") from None
            if ref.name == WILDCARD and not ref.match_labels:
                raise ReceiverSpecError(f"{where}: matchLabels must be set when name is '*'")
            resources.append(ref)
        return cls(
            type=kind,
            events=tuple(str(e) for e in spec.get("events") or []),
            resources=tuple(resources),
            secret_name=secret_name,
            interval=interval if interval > 0 else DEFAULT_INTERVAL,
            suspend=bool(spec.get("suspend")),
        )


def webhook_path(token: str, name: str, namespace: str) -> str:
    """Flux's webhook path for a Receiver."""
    digest = hashlib.sha256((token + name + namespace).encode()).hexdigest()
    return WEBHOOK_PREFIX + digest


def token_from_secret(data: Mapping[str, bytes] | None, namespace: str, name: str) -> str:
    """The `token` key; LookupError with Flux's wording when it cannot be had."""
    where = f"'{namespace}/{name}'"
    if data is None:
        raise LookupError(f"unable to read token from secret {where}: not found")
    if "token" not in data:
        raise LookupError(f"invalid {where} secret data: required field 'token'")
    return data["token"].decode("utf-8", "replace")


@dataclass
class ReceiverReconciler:
    frame: ReconcileFrame
    read_secret: SecretReader

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def _steps(self, run: ReconcileRun) -> None:
        try:
            refuse_unsupported(run.obj, UNSUPPORTED_FIELDS)
        except ReconcileError:
            # A spec that cannot work as written accepts no request.
            run.status.pop("webhookPath", None)
            raise
        try:
            spec = ReceiverSpec.parse(run.spec)
        except ReceiverSpecError as exc:
            run.status.pop("webhookPath", None)
            message = f"Reconciliation failed terminally due to configuration error: {exc}"
            raise ReconcileError(VALIDATION_FAILED, message, stalled=True) from None
        ref = run.ref
        try:
            data = await self.read_secret(ref.namespace, spec.secret_name)
            token = token_from_secret(data, ref.namespace, spec.secret_name)
        except LookupError as exc:
            status = cond.mark_reconciling(
                run.status, "Reconciliation in progress", generation=run.generation
            )
            # Without a token no request may be accepted: withdraw the path.
            status.pop("webhookPath", None)
            run.status = status
            raise ReconcileError(TOKEN_NOT_FOUND, str(exc), requeue_after=TOKEN_RETRY) from None
        path = webhook_path(token, ref.name, ref.namespace)
        run.ready(f"Receiver initialized for path: {path}", reason=cond.SUCCEEDED)
        run.status["webhookPath"] = path
        run.notify(
            NORMAL,
            cond.SUCCEEDED,
            f"Reconciliation finished, next run in {format_duration(spec.interval)}",
            only_if_changed=True,
        )
        run.requeue_after = jittered(spec.interval)

    async def finalize(self, obj: Object) -> bool:
        return True  # nothing outside the object to clean up
