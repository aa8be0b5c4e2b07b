"""The one way a reconcile ends: summarize the conditions, patch the status once, report.

Every controller's reconcile is a body of steps run inside `ReconcileFrame.run`:

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def _steps(self, run: ReconcileRun) -> None:
        spec = parse(run.spec)                  # ReconcileError(stalled=True) if it cannot work
        run.retry_after = spec.retry_interval
        await run.progressing("Fetching ...", revision=revision)
        ...
        run.ready("Applied revision: ...")
        run.requeue_after = spec.interval

Whatever the body does, the frame then (Flux's deferred summarize-and-patch):
- turns a `ReconcileError` into Ready=False (or Stalled=True) with its Flux
  reason, and any other exception into Ready=False naming what failed (for an
  API error, the object and the verb the server refused);
- summarizes the conditions (`conditions.summarize`) and writes the status
  once, through a `StatusPatcher` that remembers what it last wrote, so a
  no-op reconcile writes nothing;
- records the events the body queued and the failure's Warning event;
- records Flux's metrics for the object: `gotk_reconcile_duration_seconds`,
  `gotk_reconcile_condition`, `gotk_suspend_status`;
- returns when to run next: the body's `requeue_after` on success, the
  error's own requeue or `retry_after` on failure, never for a stalled object.

A suspended object is left exactly as it is, as Flux does: no step runs and
nothing is written.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes.client.rest import ApiException

from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime import logs, observability
from controllers.toolkit.runtime.events import NORMAL, WARNING, EventRecorder, EventType
from controllers.toolkit.runtime.patching import ObjectWriter, StatusPatcher
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource

log = logging.getLogger(__name__)

# Retry delay for failures before the body has read the spec's retryInterval.
DEFAULT_RETRY_SECONDS = 30.0
# An API error's message is the server's; keep events and conditions readable.
_MAX_MESSAGE = 1000


class ReconcileError(Exception):
    """A step failed with a Flux reason; the frame turns it into conditions and an event.

    - `stalled`: retrying cannot help until the object changes (Stalled=True, no retry);
    - `requeue_after`: when to try again, instead of the run's `retry_after`;
    - `event`: the event type to record for it, None for none (e.g. waiting
      for a dependency is not worth paging anyone for).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        stalled: bool = False,
        requeue_after: float | None = None,
        event: EventType | None = WARNING,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stalled = stalled
        self.requeue_after = requeue_after
        self.event = event

    def __str__(self) -> str:
        return self.message


def describe_unexpected(exc: BaseException) -> str:
    """What went wrong, for a condition: an API error names the refused object and verb.

    The API server's own message already says it ('secrets "vars" is
    forbidden: User "system:serviceaccount:apps:deployer" cannot get resource
    "secrets" ... in the namespace "apps"'); the request line says the rest.
    """
    if isinstance(exc, ApiException):
        message = exc.reason or ""
        if exc.body:
            try:
                body = json.loads(exc.body)
            except (TypeError, ValueError):
                body = None
            if isinstance(body, Mapping) and body.get("message"):
                message = str(body["message"])
        text = f"API request failed ({exc.status} {exc.reason}): {message}"
    else:
        api_message = getattr(exc, "message", None)
        status = getattr(exc, "status", None)
        if isinstance(api_message, str) and isinstance(status, int):
            # The apply wing's ApiError: already the server's message.
            text = f"API request failed ({status}): {api_message}"
        else:
            text = f"unexpected error: {type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True)
class _QueuedEvent:
    type: EventType
    reason: str
    message: str
    metadata: Mapping[str, str] | None
    only_if_changed: bool


@dataclass
class ReconcileRun:
    """One reconcile of one object: its inputs, the status being built, what to report."""

    obj: Object
    patcher: StatusPatcher
    status: dict[str, Any]
    retry_after: float = DEFAULT_RETRY_SECONDS
    requeue_after: float | None = None
    # Added to every event of this run (e.g. the revision being worked on).
    event_metadata: dict[str, str] = field(default_factory=dict)
    _events: list[_QueuedEvent] = field(default_factory=list)

    @property
    def ref(self) -> ObjectRef:
        return self.patcher.ref

    @property
    def metadata(self) -> Mapping[str, Any]:
        metadata: Mapping[str, Any] = self.obj["metadata"]
        return metadata

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.obj.get("spec") or {}

    @property
    def generation(self) -> int:
        return int(self.metadata.get("generation") or 0)

    @property
    def annotations(self) -> Mapping[str, str] | None:
        return self.metadata.get("annotations")

    def has_new_work(self, revision: str | None = None) -> bool:
        """The one rule for "report Progressing?" (see `conditions.has_new_work`)."""
        return cond.has_new_work(
            self.status, generation=self.generation, annotations=self.annotations, revision=revision
        )

    async def progressing(
        self, message: str, *, revision: str | None = None, delay: float = 0.0
    ) -> None:
        """Say work has started (Ready=Unknown, Reconciling=True) if it is new work.

        `revision`, when given, is what this attempt works on; it is recorded as
        `lastAttemptedRevision`, and a revision not attempted yet is new work.
        The status is written at once, so readers see progress while the steps
        run; with `delay`, only if the reconcile is still running `delay`
        seconds later (any earlier status write, the final one included,
        supersedes it), so a quick reconcile writes its status once.
        """
        new = self.has_new_work(revision)
        if revision is not None:
            self.status = dict(self.status, lastAttemptedRevision=revision)
        if new:
            self.status = cond.mark_progressing(self.status, message, generation=self.generation)
            if delay > 0:
                self.patcher.patch_later(self.status, delay)
            else:
                await self.patcher.patch(self.status)

    def ready(self, message: str, *, reason: str = cond.RECONCILIATION_SUCCEEDED) -> None:
        self.status = cond.mark_ready(
            self.status, message, generation=self.generation, reason=reason
        )

    def notify(
        self,
        type_: EventType,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        only_if_changed: bool = False,
    ) -> None:
        """Record this event once the status is written (only if it changed, when asked)."""
        self._events.append(_QueuedEvent(type_, reason, message, metadata, only_if_changed))

    def _fail(self, exc: ReconcileError) -> None:
        generation = self.generation
        if exc.stalled:
            self.status = cond.mark_stalled(
                self.status, exc.reason, exc.message, generation=generation
            )
        else:
            self.status = cond.mark_failed(
                self.status, exc.reason, exc.message, generation=generation
            )


Body = Callable[[ReconcileRun], Awaitable[None]]


@dataclass
class ReconcileFrame:
    """Runs reconcile bodies for one kind and ends every one of them the same way."""

    resource: Resource
    writer: ObjectWriter
    recorder: EventRecorder
    # "on_change": failure events only when the status changed (a Receiver's
    # missing token is one event, not one per retry).
    failure_events: Literal["always", "on_change"] = "always"

    async def run(self, obj: Object, body: Body) -> Outcome:
        ref = ObjectRef.of(obj)
        # Every line the reconcile logs names the object, so it can be filtered by it.
        with logs.about_object(self.resource.kind, ref.namespace, ref.name):
            return await self._run(obj, body)

    async def _run(self, obj: Object, body: Body) -> Outcome:
        ref = ObjectRef.of(obj)
        kind = self.resource.kind
        suspended = bool((obj.get("spec") or {}).get("suspend"))
        observability.record_suspended(kind, ref.name, ref.namespace, suspended)
        if suspended:
            return Outcome(requeue_after=None)
        live = dict(obj.get("status") or {})
        run = ReconcileRun(obj=obj, patcher=StatusPatcher(self.writer, ref, live), status=live)
        started = time.monotonic()
        failure: ReconcileError | None = None
        try:
            await body(run)
        except ReconcileError as exc:
            failure = exc
        except Exception as exc:  # not CancelledError: shutdown writes nothing
            message = describe_unexpected(exc)
            log.exception("reconcile of %s %s failed: %s", kind, ref, message)
            failure = ReconcileError(cond.RECONCILIATION_FAILED, message)
        except BaseException:
            run.patcher.discard_later()
            raise
        if failure is not None:
            run._fail(failure)
        final = cond.summarize(run.status, generation=run.generation, annotations=run.annotations)
        changed = await run.patcher.patch(final)
        observability.record_reconcile(
            kind, ref.name, ref.namespace, final, time.monotonic() - started
        )
        for event in run._events:
            if changed or not event.only_if_changed:
                await self._record(run, event.type, event.reason, event.message, event.metadata)
        if failure is None:
            return Outcome(requeue_after=run.requeue_after)
        if failure.event is not None and (changed or self.failure_events == "always"):
            await self._record(run, failure.event, failure.reason, failure.message, None)
        if failure.stalled:
            return Outcome(requeue_after=None)
        return Outcome(
            requeue_after=failure.requeue_after
            if failure.requeue_after is not None
            else run.retry_after
        )

    async def _record(
        self,
        run: ReconcileRun,
        type_: EventType,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None,
    ) -> None:
        await self.recorder.record(
            run.obj, type_, reason, message, {**run.event_metadata, **(metadata or {})}
        )


__all__ = [
    "NORMAL",
    "WARNING",
    "Body",
    "ReconcileError",
    "ReconcileFrame",
    "ReconcileRun",
    "describe_unexpected",
]
