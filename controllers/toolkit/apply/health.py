"""Health of applied objects: kstatus rules, and a bounded, cancellable wait.

`compute_status` follows kstatus (sigs.k8s.io/cli-utils, as Flux vendors it):
generic rules first (being deleted → Terminating; `status.observedGeneration`
behind `metadata.generation` → InProgress; `Reconciling=True` → InProgress;
`Stalled=True` → Failed), then the rules of the built-in kinds, then a
`Ready` condition (True → Current, otherwise InProgress), and anything else
is Current. Jobs use Flux's own rule: Current only once complete (or
suspended), Failed when failed.

`wait_for_health` polls the live objects until all are Current, stops early
when one is Failed (nothing Failed becomes Current on its own), when the
timeout passes, or when the caller signals that a new revision arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controllers.toolkit.apply.inventory import InventoryEntry, ObjectId, resource_of
from controllers.toolkit.apply.resources import ApiError, NoMatchError, ResourceClient, ResourceInfo

log = logging.getLogger(__name__)

# A pod may stay unschedulable this long before kstatus calls it Failed.
SCHEDULE_WINDOW = datetime.timedelta(seconds=15)
_MAX_INT32 = 2**31 - 1


class Status(enum.StrEnum):
    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    NOT_FOUND = "NotFound"
    UNKNOWN = "Unknown"


@dataclasses.dataclass(frozen=True)
class ObjectStatus:
    status: Status
    message: str

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.message else str(self.status)


def _current(message: str) -> ObjectStatus:
    return ObjectStatus(Status.CURRENT, message)


def _in_progress(message: str) -> ObjectStatus:
    return ObjectStatus(Status.IN_PROGRESS, message)


def _failed(message: str) -> ObjectStatus:
    return ObjectStatus(Status.FAILED, message)


def _field(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _int(obj: Mapping[str, Any], path: str, default: int) -> int:
    value = _field(obj, path)
    # bool is an int in Python; a bool here is not a count.
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(obj: Mapping[str, Any], path: str, default: str = "") -> str:
    value = _field(obj, path)
    return value if isinstance(value, str) else default


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = _field(obj, "status.conditions")
    return [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in _conditions(obj):
        if condition.get("type") == type_:
            return condition
    return None


def _group_kind(obj: Mapping[str, Any]) -> tuple[str, str]:
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    return group, str(obj.get("kind") or "")


def _generic(obj: Mapping[str, Any]) -> ObjectStatus | None:
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return ObjectStatus(Status.TERMINATING, "Resource scheduled for deletion")
    generation = _field(obj, "metadata.generation")
    observed = _field(obj, "status.observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed != generation:
        return _in_progress(
            f"{obj.get('kind')} generation is {generation}, "
            f"but latest observed generation is {observed}"
        )
    for condition in _conditions(obj):
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Reconciling":
            return _in_progress(str(condition.get("message") or condition.get("reason") or ""))
        if condition.get("type") == "Stalled":
            return _failed(str(condition.get("message") or condition.get("reason") or ""))
    return None


def _deployment(obj: Mapping[str, Any]) -> ObjectStatus:
    # Without a progress deadline the controller never sets Progressing, so
    # kstatus does not wait for it.
    progressing = _int(obj, "spec.progressDeadlineSeconds", _MAX_INT32) == _MAX_INT32
    available = False
    for condition in _conditions(obj):
        if condition.get("type") == "Progressing":
            if condition.get("reason") == "ProgressDeadlineExceeded":
                return _failed("Progress deadline exceeded")
            if condition.get("status") == "True" and condition.get("reason") == (
                "NewReplicaSetAvailable"
            ):
                progressing = True
        elif condition.get("type") == "Available" and condition.get("status") == "True":
            available = True
    spec = _int(obj, "spec.replicas", 1)
    replicas = _int(obj, "status.replicas", 0)
    updated = _int(obj, "status.updatedReplicas", 0)
    ready = _int(obj, "status.readyReplicas", 0)
    available_replicas = _int(obj, "status.availableReplicas", 0)
    if spec > replicas:
        return _in_progress(f"Replicas: {replicas}/{spec}")
    if spec > updated:
        return _in_progress(f"Updated: {updated}/{spec}")
    if replicas > spec:
        return _in_progress(f"Pending termination: {replicas - spec}")
    if updated > available_replicas:
        return _in_progress(f"Available: {available_replicas}/{updated}")
    if spec > ready:
        return _in_progress(f"Ready: {ready}/{spec}")
    if not progressing:
        return _in_progress("ReplicaSet not Available")
    if not available:
        return _in_progress("Deployment not Available")
    return _current(f"Deployment is available. Replicas: {replicas}")


def _statefulset(obj: Mapping[str, Any]) -> ObjectStatus:
    if _str(obj, "spec.updateStrategy.type") == "OnDelete":
        return _current("StatefulSet is using the ondelete update strategy")
    spec = _int(obj, "spec.replicas", 1)
    ready = _int(obj, "status.readyReplicas", 0)
    current = _int(obj, "status.currentReplicas", 0)
    updated = _int(obj, "status.updatedReplicas", 0)
    replicas = _int(obj, "status.replicas", 0)
    partition = _int(obj, "spec.updateStrategy.rollingUpdate.partition", -1)
    if spec > replicas:
        return _in_progress(f"Replicas: {replicas}/{spec}")
    if spec > ready:
        return _in_progress(f"Ready: {ready}/{spec}")
    if replicas > spec:
        return _in_progress(f"Pending termination: {replicas - spec}")
    if partition != -1:
        if updated < spec - partition:
            return _in_progress(f"updated: {updated}/{spec - partition}")
        return _current(f"Partition rollout complete. updated: {updated}")
    if spec > current:
        return _in_progress(f"current: {current}/{spec}")
    if _str(obj, "status.currentRevision") != _str(obj, "status.updateRevision"):
        return _in_progress("Waiting for updated revision to match current")
    return _current(f"All replicas scheduled as expected. Replicas: {replicas}")


def _daemonset(obj: Mapping[str, Any]) -> ObjectStatus:
    # The DaemonSet controller always sets these once it has acted.
    if not isinstance(_field(obj, "metadata.generation"), int):
        return _in_progress("DaemonSet metadata.generation not found")
    if not isinstance(_field(obj, "status.observedGeneration"), int):
        return _in_progress("DaemonSet status.observedGeneration not found")
    desired = _int(obj, "status.desiredNumberScheduled", -1)
    current = _int(obj, "status.currentNumberScheduled", 0)
    updated = _int(obj, "status.updatedNumberScheduled", 0)
    available = _int(obj, "status.numberAvailable", 0)
    ready = _int(obj, "status.numberReady", 0)
    if desired == -1:
        return _in_progress("Missing .status.desiredNumberScheduled")
    if desired > current:
        return _in_progress(f"Current: {current}/{desired}")
    if desired > updated:
        return _in_progress(f"Updated: {updated}/{desired}")
    if desired > available:
        return _in_progress(f"Available: {available}/{desired}")
    if desired > ready:
        return _in_progress(f"Ready: {ready}/{desired}")
    return _current(f"All replicas scheduled as expected. Replicas: {desired}")


def _replicaset(obj: Mapping[str, Any]) -> ObjectStatus:
    failure = _condition(obj, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return _in_progress("Replica Failure condition. Check Pods")
    spec = _int(obj, "spec.replicas", 1)
    replicas = _int(obj, "status.replicas", 0)
    ready = _int(obj, "status.readyReplicas", 0)
    available = _int(obj, "status.availableReplicas", 0)
    labelled = _int(obj, "status.fullyLabeledReplicas", 0)
    if spec > labelled:
        return _in_progress(f"Labelled: {labelled}/{spec}")
    if spec > available:
        return _in_progress(f"Available: {available}/{spec}")
    if spec > ready:
        return _in_progress(f"Ready: {ready}/{spec}")
    if replicas > spec:
        return _in_progress(f"Pending termination: {replicas - spec}")
    return _current(f"ReplicaSet is available. Replicas: {replicas}")


def _job(obj: Mapping[str, Any]) -> ObjectStatus:
    # Flux's rule (runtime/statusreaders): a running Job is not yet healthy.
    if _field(obj, "spec.suspend") is True:
        return _current("Job is suspended")
    parallelism = _int(obj, "spec.parallelism", 1)
    completions = _int(obj, "spec.completions", parallelism)
    succeeded = _int(obj, "status.succeeded", 0)
    active = _int(obj, "status.active", 0)
    failed = _int(obj, "status.failed", 0)
    for condition in _conditions(obj):
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return _current(f"Job Completed. succeeded: {succeeded}/{completions}")
        if condition.get("type") == "Failed":
            return _failed(f"Job Failed. failed: {failed}/{completions}")
    if not _str(obj, "status.startTime"):
        return _in_progress(f"Job not started. active: 0/{parallelism}")
    return _in_progress(f"Job in progress. success:{succeeded}, active: {active}, failed: {failed}")


def _pod(obj: Mapping[str, Any], now: datetime.datetime) -> ObjectStatus:
    phase = _str(obj, "status.phase")
    if phase == "Succeeded":
        return _current("Pod has completed successfully")
    if phase == "Failed":
        return _current("Pod has completed, but not successfully")
    if phase == "Running":
        ready = _condition(obj, "Ready")
        if ready is not None and ready.get("status") == "True":
            return _current("Pod is Ready")
        crashing = [
            str(cs.get("name"))
            for cs in _field(obj, "status.containerStatuses") or ()
            if isinstance(cs, Mapping) and _str(cs, "state.waiting.reason") == "CrashLoopBackOff"
        ]
        if crashing:
            return _failed(f"Containers in CrashLoop state: {','.join(crashing)}")
        return _in_progress("Pod is running but is not Ready")
    if phase == "Pending":
        scheduled = _condition(obj, "PodScheduled")
        if (
            scheduled is not None
            and scheduled.get("status") == "False"
            and scheduled.get("reason") == "Unschedulable"
        ):
            created = _parse_time(_str(obj, "metadata.creationTimestamp"))
            if created is not None and now - created > SCHEDULE_WINDOW:
                return _failed("Pod could not be scheduled")
            return _in_progress("Pod has not been scheduled")
        return _in_progress("Pod is in the Pending phase")
    if not phase:
        return _in_progress("Pod phase not available")
    return ObjectStatus(Status.UNKNOWN, f"unknown phase {phase}")


def _service(obj: Mapping[str, Any]) -> ObjectStatus:
    # kstatus' rule: a LoadBalancer Service needs its cluster IP (not an ingress).
    if _str(obj, "spec.type", "ClusterIP") == "LoadBalancer" and not _str(obj, "spec.clusterIP"):
        return _in_progress("ClusterIP not set. Service type: LoadBalancer")
    return _current("Service is ready")


def _pvc(obj: Mapping[str, Any]) -> ObjectStatus:
    phase = _str(obj, "status.phase", "unknown")
    if phase != "Bound":
        return _in_progress(f"PVC is not Bound. phase: {phase}")
    return _current("PVC is Bound")


def _crd(obj: Mapping[str, Any]) -> ObjectStatus:
    for condition in _conditions(obj):
        type_, status = condition.get("type"), condition.get("status")
        if type_ == "NamesAccepted" and status == "False":
            return _failed(str(condition.get("message") or condition.get("reason") or ""))
        if type_ == "Established":
            if status == "False" and condition.get("reason") != "Installing":
                return _failed(str(condition.get("message") or condition.get("reason") or ""))
            if status == "True":
                return _current("CRD is established")
    return _in_progress("Install in progress")


def _always_ready(_: Mapping[str, Any]) -> ObjectStatus:
    return _current("Resource is always ready")


_KIND_RULES = {
    ("", "Service"): _service,
    ("", "Secret"): _always_ready,
    ("", "ConfigMap"): _always_ready,
    ("", "PersistentVolumeClaim"): _pvc,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("extensions", "DaemonSet"): _daemonset,
    ("apps", "Deployment"): _deployment,
    ("extensions", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replicaset,
    ("extensions", "ReplicaSet"): _replicaset,
    ("policy", "PodDisruptionBudget"): lambda _: _current("AllowedDisruptions has been computed."),
    ("batch", "CronJob"): _always_ready,
    ("batch", "Job"): _job,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}


def _parse_time(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# A caller's own rule for some objects (a Kustomization's healthCheckExprs): the
# status it returns wins; None leaves the object to the kstatus rules.
CustomStatus = Callable[[Mapping[str, Any]], ObjectStatus | None]


def compute_status(
    obj: Mapping[str, Any],
    now: datetime.datetime | None = None,
    custom_status: CustomStatus | None = None,
) -> ObjectStatus:
    """The kstatus status of a live object (or `custom_status`'s, when it has one)."""
    if custom_status is not None:
        custom = custom_status(obj)
        if custom is not None:
            return custom
    generic = _generic(obj)
    if generic is not None:
        return generic
    group_kind = _group_kind(obj)
    if group_kind == ("", "Pod"):
        return _pod(obj, now or datetime.datetime.now(datetime.UTC))
    rule = _KIND_RULES.get(group_kind)
    if rule is not None:
        return rule(obj)
    ready = _condition(obj, "Ready")
    if ready is not None:
        if ready.get("status") == "True":
            return _current("Resource is Ready")
        if ready.get("status") in ("False", "Unknown"):
            return _in_progress(str(ready.get("message") or ready.get("reason") or ""))
    return _current("Resource is current")


class HealthOutcome(enum.StrEnum):
    HEALTHY = "Healthy"
    FAILED = "Failed"
    TIMEOUT = "Timeout"
    CANCELED = "Canceled"


@dataclasses.dataclass(frozen=True)
class HealthResult:
    outcome: HealthOutcome
    statuses: Mapping[ObjectId, ObjectStatus]
    elapsed: float

    @property
    def healthy(self) -> bool:
        return self.outcome is HealthOutcome.HEALTHY

    @property
    def not_ready(self) -> list[tuple[ObjectId, ObjectStatus]]:
        """Objects that are not Current, in reconcile order."""
        return sorted(
            ((i, s) for i, s in self.statuses.items() if s.status is not Status.CURRENT),
            key=lambda pair: pair[0].sort_key(),
        )

    @property
    def message(self) -> str:
        """Flux-style summary naming each object that is not ready and why."""
        items = [
            f"{object_id.subject} status: '{status.status}'"
            + (f": {status.message}" if status.message else "")
            for object_id, status in self.not_ready
        ]
        listed = _bounded_list(items)
        if self.outcome is HealthOutcome.HEALTHY:
            return f"all {len(self.statuses)} objects are healthy"
        if self.outcome is HealthOutcome.FAILED:
            return f"failed early due to stalled resources: [{listed}]"
        if self.outcome is HealthOutcome.TIMEOUT:
            return f"timeout waiting for: [{listed}]"
        return f"health check canceled: [{listed}]"


# A condition message may hold 32768 characters (the CRDs' maxLength); a status
# patch over it is refused whole. The list of objects stops well before.
MAX_LISTED_CHARS = 16384


def _bounded_list(items: Sequence[str], limit: int = MAX_LISTED_CHARS) -> str:
    """`items` joined by ", ", cut after `limit` characters with how many were left out."""
    shown: list[str] = []
    size = 0
    for index, item in enumerate(items):
        if shown and size + len(item) + 2 > limit:
            return ", ".join(shown) + f", ... and {len(items) - index} more"
        shown.append(item)
        size += len(item) + 2
    return ", ".join(shown)


def jobs_with_ttl(objects: Sequence[Mapping[str, Any]]) -> frozenset[ObjectId]:
    """Jobs with spec.ttlSecondsAfterFinished: gone after finishing counts as healthy (Flux)."""
    return frozenset(
        ObjectId.of(obj)
        for obj in objects
        if obj.get("kind") == "Job"
        and str(obj.get("apiVersion") or "").startswith("batch/")
        and isinstance(_field(obj, "spec.ttlSecondsAfterFinished"), int)
    )


async def read_statuses(
    client: ResourceClient,
    entries: Sequence[InventoryEntry],
    *,
    label_selector: str = "",
    custom_status: CustomStatus | None = None,
) -> dict[ObjectId, ObjectStatus]:
    """The current status of each object, reading as few times as it can.

    Objects of one kind and namespace that carry `label_selector`'s labels
    are read with one paged LIST; the rest (and kinds with a single object)
    with one GET each.
    """
    groups: dict[tuple[ResourceInfo, str], list[InventoryEntry]] = {}
    statuses: dict[ObjectId, ObjectStatus] = {}
    for entry in entries:
        try:
            info = await resource_of(client, entry)
        except (NoMatchError, ApiError) as exc:
            statuses[entry.id] = ObjectStatus(Status.UNKNOWN, str(exc))
            continue
        groups.setdefault((info, entry.id.namespace), []).append(entry)

    async def read_one(info: ResourceInfo, entry: InventoryEntry) -> None:
        try:
            live = await client.get(info, entry.id.namespace, entry.id.name)
        except ApiError as exc:
            statuses[entry.id] = ObjectStatus(Status.UNKNOWN, str(exc))
            return
        if live is None:
            statuses[entry.id] = ObjectStatus(Status.NOT_FOUND, "Resource not found")
        else:
            statuses[entry.id] = compute_status(live, custom_status=custom_status)

    async def read_group(info: ResourceInfo, namespace: str, group: list[InventoryEntry]) -> None:
        pending = {entry.id.name: entry for entry in group}
        if label_selector and len(group) > 1:
            try:
                async for page in client.list_pages(info, namespace, label_selector=label_selector):
                    for live in page:
                        entry = pending.pop(str((live.get("metadata") or {}).get("name")), None)
                        if entry is not None:
                            statuses[entry.id] = compute_status(live, custom_status=custom_status)
            except ApiError as exc:
                log.debug(
                    "listing %s in %r failed, reading one by one: %s", info.kind, namespace, exc
                )
        await asyncio.gather(*(read_one(info, entry) for entry in pending.values()))

    await asyncio.gather(*(read_group(info, ns, group) for (info, ns), group in groups.items()))
    return statuses


async def wait_for_health(
    client: ResourceClient,
    entries: Sequence[InventoryEntry],
    *,
    timeout: float,
    poll_interval: float = 5.0,
    cancel: asyncio.Event | None = None,
    label_selector: str = "",
    ttl_jobs: frozenset[ObjectId] = frozenset(),
    custom_status: CustomStatus | None = None,
) -> HealthResult:
    """Poll `entries` until all are Current, one Failed, the timeout, or `cancel` is set.

    Objects already Current are not read again. `ttl_jobs` (see `jobs_with_ttl`)
    count as healthy once gone. `label_selector` lets objects of one kind and
    namespace be read with a LIST. `custom_status` overrides the kstatus rules
    for the objects it answers (see `compute_status`).
    """
    started = time.monotonic()
    deadline = started + timeout
    unique = list({entry.id: entry for entry in entries}.values())
    statuses: dict[ObjectId, ObjectStatus] = {
        entry.id: ObjectStatus(Status.UNKNOWN, "not checked yet") for entry in unique
    }
    pending = unique
    while True:
        if cancel is not None and cancel.is_set():
            return HealthResult(HealthOutcome.CANCELED, statuses, time.monotonic() - started)
        read = await read_statuses(
            client, pending, label_selector=label_selector, custom_status=custom_status
        )
        for object_id, status in read.items():
            if status.status is Status.NOT_FOUND and object_id in ttl_jobs:
                status = _current("Job finished and was deleted (ttlSecondsAfterFinished)")
            statuses[object_id] = status
        pending = [e for e in pending if statuses[e.id].status is not Status.CURRENT]
        if not pending:
            return HealthResult(HealthOutcome.HEALTHY, statuses, time.monotonic() - started)
        failed = [e for e in pending if statuses[e.id].status is Status.FAILED]
        # Failed never turns Current by itself: stop early, as kstatus' aggregator does.
        if failed:
            return HealthResult(HealthOutcome.FAILED, statuses, time.monotonic() - started)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return HealthResult(HealthOutcome.TIMEOUT, statuses, time.monotonic() - started)
        await _sleep(min(poll_interval, remaining), cancel)


async def _sleep(seconds: float, cancel: asyncio.Event | None) -> None:
    if cancel is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancel.wait(), timeout=seconds)
