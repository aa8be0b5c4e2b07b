"""The dashboard's buttons: reconcile (optionally with its source), suspend, resume.

They are the CLI's writes, called from `controllers.commands` (not copied):
`reconcile.fluxcd.io/requestedAt` through `waiting.request_reconcile`, the
source found by `reconcile.source_of`, `spec.suspend` through
`waiting.patch`, and resume as Flux does it (unsuspend and request in one
write). The dashboard does not wait for the outcome itself: the page shows
it live. Only "with source" waits, in the background, for the source to
handle its request before the object is asked (as `--with-source` does).
"""

from __future__ import annotations

from controllers.commands import kinds, reconcile, waiting
from controllers.commands.common import CliError, Session
from controllers.commands.kinds import FluxKind

ACTIONS = ("reconcile", "reconcile-with-source", "suspend", "resume")
SOURCE_TIMEOUT_SECONDS = 120.0


def act(session: Session, action: str, kind: FluxKind, namespace: str, name: str) -> str:
    """Do `action`; the line to show. Raises CliError with a message for the page."""
    subject = f"{kind.kind} {namespace}/{name}"
    if action == "suspend":
        waiting.patch(session, kind, namespace, name, {"spec": {"suspend": True}})
        return f"{subject} suspended"
    if action == "resume":
        waiting.request_reconcile(session, kind, namespace, name, {"suspend": False})
        return f"{subject} resumed; reconcile requested"
    if action not in ("reconcile", "reconcile-with-source"):
        raise CliError(f"unknown action {action!r}")
    obj = waiting.fetch(session, kind, namespace, name)
    if kinds.suspended(obj):
        raise CliError(f"{subject} is suspended; resume it first")
    if action == "reconcile-with-source" and not kind.source:
        source, source_namespace, source_name = reconcile.source_of(kind, obj)
        token = waiting.request_reconcile(session, source, source_namespace, source_name)
        outcome = waiting.wait_for_reconcile(
            session, source, source_namespace, source_name, token, SOURCE_TIMEOUT_SECONDS
        )
        if not outcome.ok:
            raise CliError(
                f"{source.kind} {source_namespace}/{source_name}: {outcome.message}; "
                f"{subject} not reconciled"
            )
    waiting.request_reconcile(session, kind, namespace, name)
    return f"{subject}: reconcile requested"
