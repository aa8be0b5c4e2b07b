"""Status conditions with Flux's and kstatus' semantics.

Every function here is pure: it takes a status mapping and returns a new
status dict, never mutating its input. So a reconcile can compute the new
status, compare it with the old one, and skip the API write when nothing
changed (a no-op reconcile writes nothing).

Rules carried over from Flux and kstatus:
- `lastTransitionTime` changes only when a condition's status flips.
- Each condition written carries the object's `observedGeneration`.
- `Ready` is always True, False or Unknown; `Reconciling` and `Stalled` are
  only present while True, and never both at once.
- Conditions are kept in a stable order: `Ready` first, then by type.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict, cast

ConditionStatus = Literal["True", "False", "Unknown"]

TRUE: ConditionStatus = "True"
FALSE: ConditionStatus = "False"
UNKNOWN: ConditionStatus = "Unknown"

# Condition types shared by every kind.
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Flux's shared reasons (fluxcd/pkg/apis/meta and the controllers' APIs).
SUCCEEDED = "Succeeded"
FAILED = "Failed"
PROGRESSING = "Progressing"
PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
DEPENDENCY_NOT_READY = "DependencyNotReady"
ARTIFACT_FAILED = "ArtifactFailed"
BUILD_FAILED = "BuildFailed"
HEALTH_CHECK_FAILED = "HealthCheckFailed"
HEALTH_CHECK_CANCELED = "HealthCheckCanceled"
PRUNE_FAILED = "PruneFailed"
RECONCILIATION_SUCCEEDED = "ReconciliationSucceeded"
RECONCILIATION_FAILED = "ReconciliationFailed"

# The annotation `flux reconcile` sets to ask for a reconcile now.
REQUESTED_AT_ANNOTATION = "reconcile.fluxcd.io/requestedAt"

# Flux reports -1 before the first reconcile has observed any generation.
UNOBSERVED_GENERATION = -1


class Condition(TypedDict):
    """A metav1.Condition as it appears in an object's status."""

    type: str
    status: ConditionStatus
    observedGeneration: int
    lastTransitionTime: str
    reason: str
    message: str


Status = dict[str, Any]


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC at second precision, as metav1.Time serialises."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(now: datetime.datetime | None) -> str:
    return format_time(now if now is not None else datetime.datetime.now(datetime.UTC))


def _copy(status: Mapping[str, Any] | None) -> Status:
    # Shallow: these helpers only rebind top-level keys and build new condition
    # lists, never change what they were given; a deep copy would copy the
    # whole inventory and history on every call.
    return dict(status) if status else {}


def conditions_of(status: Mapping[str, Any] | None) -> list[Condition]:
    """The status' conditions, or an empty list when it has none."""
    if not status:
        return []
    found = status.get("conditions") or []
    return [cast(Condition, c) for c in found if isinstance(c, Mapping)]


def get_condition(status: Mapping[str, Any] | None, type_: str) -> Condition | None:
    """The condition of `type_`, or None when absent."""
    for condition in conditions_of(status):
        if condition.get("type") == type_:
            return condition
    return None


def condition_status(status: Mapping[str, Any] | None, type_: str) -> ConditionStatus | None:
    """`True`, `False` or `Unknown`; None when the condition is absent."""
    condition = get_condition(status, type_)
    return condition.get("status") if condition is not None else None


def is_true(status: Mapping[str, Any] | None, type_: str) -> bool:
    return condition_status(status, type_) == TRUE


def is_false(status: Mapping[str, Any] | None, type_: str) -> bool:
    return condition_status(status, type_) == FALSE


def ready_status(status: Mapping[str, Any] | None) -> ConditionStatus:
    """The Ready status, Unknown when the object has not reported one yet."""
    return condition_status(status, READY) or UNKNOWN


def _sort_key(condition: Mapping[str, Any]) -> tuple[int, str]:
    type_ = str(condition.get("type", ""))
    return (0 if type_ == READY else 1, type_)


def set_condition(
    status: Mapping[str, Any] | None,
    type_: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime.datetime | None = None,
) -> Status:
    """Return `status` with the condition set; the transition time moves only on a flip."""
    if value not in (TRUE, FALSE, UNKNOWN):
        raise ValueError(f"condition status must be True, False or Unknown, not {value!r}")
    result = _copy(status)
    existing = get_condition(result, type_)
    if existing is not None and existing.get("status") == value:
        transition = existing.get("lastTransitionTime") or _now(now)
    else:
        transition = _now(now)
    condition: Condition = {
        "type": type_,
        "status": value,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
    others = [c for c in conditions_of(result) if c.get("type") != type_]
    result["conditions"] = sorted([*others, condition], key=_sort_key)
    return result


def remove_condition(status: Mapping[str, Any] | None, type_: str) -> Status:
    """Return `status` without the condition of `type_` (unchanged if absent)."""
    result = _copy(status)
    if "conditions" in result:
        result["conditions"] = [c for c in conditions_of(result) if c.get("type") != type_]
    return result


def mark_reconciling(
    status: Mapping[str, Any] | None,
    message: str,
    *,
    generation: int,
    reason: str = PROGRESSING,
    now: datetime.datetime | None = None,
) -> Status:
    """Reconciling=True; Stalled goes, as an object cannot be both."""
    result = remove_condition(status, STALLED)
    return set_condition(result, RECONCILING, TRUE, reason, message, generation=generation, now=now)


def mark_progressing(
    status: Mapping[str, Any] | None,
    message: str = "Reconciliation in progress",
    *,
    generation: int,
    now: datetime.datetime | None = None,
) -> Status:
    """What a reconcile writes as it starts work on a new generation or request.

    Reconciling=True and Ready=Unknown, both with reason Progressing, as
    Flux's controllers do before doing the work.
    """
    result = mark_reconciling(status, message, generation=generation, now=now)
    return set_condition(
        result, READY, UNKNOWN, PROGRESSING, message, generation=generation, now=now
    )


def mark_stalled(
    status: Mapping[str, Any] | None,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime.datetime | None = None,
) -> Status:
    """Stalled=True and Ready=False: retrying cannot help until the object changes."""
    result = remove_condition(status, RECONCILING)
    result = set_condition(result, STALLED, TRUE, reason, message, generation=generation, now=now)
    return set_condition(result, READY, FALSE, reason, message, generation=generation, now=now)


def mark_ready(
    status: Mapping[str, Any] | None,
    message: str,
    *,
    generation: int,
    reason: str = RECONCILIATION_SUCCEEDED,
    now: datetime.datetime | None = None,
) -> Status:
    """Ready=True with a success reason; `summarize` then clears Reconciling."""
    return set_condition(status, READY, TRUE, reason, message, generation=generation, now=now)


def mark_failed(
    status: Mapping[str, Any] | None,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime.datetime | None = None,
) -> Status:
    """Ready=False for a failure that will be retried (not stalled)."""
    return set_condition(status, READY, FALSE, reason, message, generation=generation, now=now)


def observed_generation(status: Mapping[str, Any] | None) -> int:
    """The last generation fully reconciled, -1 before the first."""
    value = (status or {}).get("observedGeneration")
    return value if isinstance(value, int) else UNOBSERVED_GENERATION


def requested_at(annotations: Mapping[str, str] | None) -> str | None:
    """The value of `reconcile.fluxcd.io/requestedAt`, if set and not empty."""
    value = (annotations or {}).get(REQUESTED_AT_ANNOTATION)
    return value or None


def reconcile_requested(
    status: Mapping[str, Any] | None, annotations: Mapping[str, str] | None
) -> bool:
    """True when a requestedAt annotation has not been handled yet.

    Flux compares the value for equality only, never as a time, so any
    changed string (e.g. `date +%s`) asks for a reconcile.
    """
    value = requested_at(annotations)
    return value is not None and value != (status or {}).get("lastHandledReconcileAt")


def has_new_work(
    status: Mapping[str, Any] | None,
    *,
    generation: int,
    annotations: Mapping[str, str] | None,
    revision: str | None = None,
) -> bool:
    """The one rule for "report Progressing before the work?": is this work not tried yet?

    New work is a reconcile request not handled yet, a generation that Ready
    has not been reported for, or (given `revision`) a revision other than
    `lastAttemptedRevision`. It reads Ready's own observedGeneration, which
    every attempt sets, not the status' observedGeneration, which moves only
    on success: a retry of work that already failed is not new, so it writes
    no Progressing, and the status does not flip Ready between Unknown and
    False on every attempt (each such write would wake the queue again).
    """
    if reconcile_requested(status, annotations):
        return True
    ready = get_condition(status, READY)
    if ready is None or ready.get("observedGeneration") != generation:
        return True
    return revision is not None and (status or {}).get("lastAttemptedRevision") != revision


def record_reconcile_request(
    status: Mapping[str, Any] | None, annotations: Mapping[str, str] | None
) -> Status:
    """Copy the requestedAt annotation into `lastHandledReconcileAt`, if set."""
    result = _copy(status)
    value = requested_at(annotations)
    if value is not None:
        result["lastHandledReconcileAt"] = value
    return result


def summarize(
    status: Mapping[str, Any] | None,
    *,
    generation: int,
    annotations: Mapping[str, str] | None = None,
) -> Status:
    """Enforce the end-of-reconcile invariants, as Flux does before patching status.

    - The handled requestedAt is recorded.
    - Ready=True: Reconciling and Stalled go, observedGeneration = generation.
    - Stalled=True: Reconciling goes, observedGeneration = generation, since
      this generation has been fully processed and will not progress.
    - Ready=False and still Reconciling: Reconciling's reason becomes
      ProgressingWithRetry, so readers see the controller will try again.
    - Reconciling and Stalled are dropped unless True.
    """
    result = record_reconcile_request(status, annotations)
    for type_ in (RECONCILING, STALLED):
        if get_condition(result, type_) is not None and not is_true(result, type_):
            result = remove_condition(result, type_)
    if is_true(result, READY):
        result = remove_condition(result, RECONCILING)
        result = remove_condition(result, STALLED)
        result["observedGeneration"] = generation
    elif is_true(result, STALLED):
        result = remove_condition(result, RECONCILING)
        result["observedGeneration"] = generation
    elif is_false(result, READY):
        reconciling = get_condition(result, RECONCILING)
        if reconciling is not None and reconciling["reason"] != PROGRESSING_WITH_RETRY:
            updated = dict(reconciling, reason=PROGRESSING_WITH_RETRY)
            others = [c for c in conditions_of(result) if c.get("type") != RECONCILING]
            result["conditions"] = sorted([*others, updated], key=_sort_key)
    return result


def condition_types(status: Mapping[str, Any] | None) -> Sequence[str]:
    """The types present, in stored order."""
    return [str(c.get("type")) for c in conditions_of(status)]
