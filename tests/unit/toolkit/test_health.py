from __future__ import annotations

import datetime
from typing import Any

import pytest

from controllers.toolkit.apply.health import (
    MAX_LISTED_CHARS,
    HealthOutcome,
    HealthResult,
    ObjectStatus,
    Status,
    _bounded_list,
    compute_status,
    jobs_with_ttl,
)
from controllers.toolkit.apply.inventory import ObjectId

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def obj(api_version: str, kind: str, spec: Any = None, status: Any = None, **meta: Any) -> dict:
    out: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default", **meta},
    }
    if spec is not None:
        out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


AVAILABLE_DEPLOYMENT = {
    "observedGeneration": 2,
    "replicas": 3,
    "updatedReplicas": 3,
    "readyReplicas": 3,
    "availableReplicas": 3,
    "conditions": [
        cond("Available", "True"),
        cond("Progressing", "True", "NewReplicaSetAvailable"),
    ],
}

CASES: list[tuple[str, dict[str, Any], Status, str]] = [
    (
        "deployment available",
        obj("apps/v1", "Deployment", {"replicas": 3}, AVAILABLE_DEPLOYMENT, generation=2),
        Status.CURRENT,
        "Deployment is available. Replicas: 3",
    ),
    (
        "deployment generation not observed",
        obj("apps/v1", "Deployment", {"replicas": 3}, AVAILABLE_DEPLOYMENT, generation=3),
        Status.IN_PROGRESS,
        "Deployment generation is 3, but latest observed generation is 2",
    ),
    (
        "deployment rolling out",
        obj(
            "apps/v1",
            "Deployment",
            {"replicas": 3},
            {**AVAILABLE_DEPLOYMENT, "updatedReplicas": 3, "availableReplicas": 1},
            generation=2,
        ),
        Status.IN_PROGRESS,
        "Available: 1/3",
    ),
    (
        "deployment too few replicas",
        obj("apps/v1", "Deployment", {"replicas": 3}, {"replicas": 1}),
        Status.IN_PROGRESS,
        "Replicas: 1/3",
    ),
    (
        "deployment old pods terminating",
        obj("apps/v1", "Deployment", {"replicas": 1}, {**AVAILABLE_DEPLOYMENT, "replicas": 2}),
        Status.IN_PROGRESS,
        "Pending termination: 1",
    ),
    (
        "deployment progress deadline exceeded",
        obj(
            "apps/v1",
            "Deployment",
            {"replicas": 1},
            {"conditions": [cond("Progressing", "False", "ProgressDeadlineExceeded")]},
        ),
        Status.FAILED,
        "Progress deadline exceeded",
    ),
    (
        "deployment replicas ready but not yet progressed",
        obj(
            "apps/v1",
            "Deployment",
            {"replicas": 1, "progressDeadlineSeconds": 600},
            {
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
                "conditions": [cond("Available", "True"), cond("Progressing", "True", "Other")],
            },
        ),
        Status.IN_PROGRESS,
        "ReplicaSet not Available",
    ),
    (
        "statefulset ready",
        obj(
            "apps/v1",
            "StatefulSet",
            {"replicas": 2},
            {
                "replicas": 2,
                "readyReplicas": 2,
                "currentReplicas": 2,
                "updatedReplicas": 2,
                "currentRevision": "r1",
                "updateRevision": "r1",
            },
        ),
        Status.CURRENT,
        "All replicas scheduled as expected. Replicas: 2",
    ),
    (
        "statefulset revision mismatch",
        obj(
            "apps/v1",
            "StatefulSet",
            {"replicas": 1},
            {
                "replicas": 1,
                "readyReplicas": 1,
                "currentReplicas": 1,
                "currentRevision": "r1",
                "updateRevision": "r2",
            },
        ),
        Status.IN_PROGRESS,
        "Waiting for updated revision to match current",
    ),
    (
        "statefulset on delete",
        obj("apps/v1", "StatefulSet", {"updateStrategy": {"type": "OnDelete"}}, {}),
        Status.CURRENT,
        "StatefulSet is using the ondelete update strategy",
    ),
    (
        "daemonset without observed generation",
        obj("apps/v1", "DaemonSet", {}, {"desiredNumberScheduled": 1}, generation=1),
        Status.IN_PROGRESS,
        "DaemonSet status.observedGeneration not found",
    ),
    (
        "daemonset ready",
        obj(
            "apps/v1",
            "DaemonSet",
            {},
            {
                "observedGeneration": 1,
                "desiredNumberScheduled": 3,
                "currentNumberScheduled": 3,
                "updatedNumberScheduled": 3,
                "numberAvailable": 3,
                "numberReady": 3,
            },
            generation=1,
        ),
        Status.CURRENT,
        "All replicas scheduled as expected. Replicas: 3",
    ),
    (
        "replicaset failure",
        obj("apps/v1", "ReplicaSet", {}, {"conditions": [cond("ReplicaFailure", "True")]}),
        Status.IN_PROGRESS,
        "Replica Failure condition. Check Pods",
    ),
    (
        "job complete",
        obj(
            "batch/v1",
            "Job",
            {},
            {"succeeded": 1, "startTime": "t", "conditions": [cond("Complete", "True")]},
        ),
        Status.CURRENT,
        "Job Completed. succeeded: 1/1",
    ),
    (
        "job running is not yet healthy (Flux)",
        obj("batch/v1", "Job", {}, {"active": 1, "startTime": "t"}),
        Status.IN_PROGRESS,
        "Job in progress. success:0, active: 1, failed: 0",
    ),
    (
        "job failed",
        obj("batch/v1", "Job", {}, {"failed": 2, "conditions": [cond("Failed", "True")]}),
        Status.FAILED,
        "Job Failed. failed: 2/1",
    ),
    (
        "job suspended",
        obj("batch/v1", "Job", {"suspend": True}, {}),
        Status.CURRENT,
        "Job is suspended",
    ),
    (
        "pod ready",
        obj("v1", "Pod", {}, {"phase": "Running", "conditions": [cond("Ready", "True")]}),
        Status.CURRENT,
        "Pod is Ready",
    ),
    (
        "pod crash looping",
        obj(
            "v1",
            "Pod",
            {},
            {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
            },
        ),
        Status.FAILED,
        "Containers in CrashLoop state: app",
    ),
    (
        "pod unschedulable for long",
        obj(
            "v1",
            "Pod",
            {},
            {"phase": "Pending", "conditions": [cond("PodScheduled", "False", "Unschedulable")]},
            creationTimestamp="2026-01-01T11:59:00Z",
        ),
        Status.FAILED,
        "Pod could not be scheduled",
    ),
    (
        "pod unschedulable briefly",
        obj(
            "v1",
            "Pod",
            {},
            {"phase": "Pending", "conditions": [cond("PodScheduled", "False", "Unschedulable")]},
            creationTimestamp="2026-01-01T11:59:55Z",
        ),
        Status.IN_PROGRESS,
        "Pod has not been scheduled",
    ),
    (
        "service cluster ip",
        obj("v1", "Service", {"type": "ClusterIP", "clusterIP": "10.0.0.1"}),
        Status.CURRENT,
        "Service is ready",
    ),
    (
        "load balancer without cluster ip",
        obj("v1", "Service", {"type": "LoadBalancer"}),
        Status.IN_PROGRESS,
        "ClusterIP not set. Service type: LoadBalancer",
    ),
    (
        "pvc pending",
        obj("v1", "PersistentVolumeClaim", {}, {"phase": "Pending"}),
        Status.IN_PROGRESS,
        "PVC is not Bound. phase: Pending",
    ),
    (
        "pvc bound",
        obj("v1", "PersistentVolumeClaim", {}, {"phase": "Bound"}),
        Status.CURRENT,
        "PVC is Bound",
    ),
    (
        "crd established",
        obj(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            {},
            {"conditions": [cond("NamesAccepted", "True"), cond("Established", "True")]},
        ),
        Status.CURRENT,
        "CRD is established",
    ),
    (
        "crd names conflict",
        obj(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            {},
            {"conditions": [cond("NamesAccepted", "False", "NameConflict", "plural in use")]},
        ),
        Status.FAILED,
        "plural in use",
    ),
    (
        "crd installing",
        obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", {}, {}),
        Status.IN_PROGRESS,
        "Install in progress",
    ),
    (
        "custom resource ready",
        obj("example.com/v1", "Foo", {}, {"conditions": [cond("Ready", "True")]}),
        Status.CURRENT,
        "Resource is Ready",
    ),
    (
        "custom resource not ready",
        obj("example.com/v1", "Foo", {}, {"conditions": [cond("Ready", "False", "Waiting", "db")]}),
        Status.IN_PROGRESS,
        "db",
    ),
    (
        "custom resource stalled",
        obj(
            "example.com/v1",
            "Foo",
            {},
            {"conditions": [cond("Ready", "False"), cond("Stalled", "True", "Bad", "bad spec")]},
        ),
        Status.FAILED,
        "bad spec",
    ),
    (
        "custom resource reconciling",
        obj(
            "example.com/v1",
            "Foo",
            {},
            {
                "conditions": [
                    cond("Ready", "True"),
                    cond("Reconciling", "True", "Progressing", "p"),
                ]
            },
        ),
        Status.IN_PROGRESS,
        "p",
    ),
    (
        "custom resource generation behind",
        obj(
            "example.com/v1",
            "Foo",
            {},
            {"observedGeneration": 1, "conditions": [cond("Ready", "True")]},
            generation=2,
        ),
        Status.IN_PROGRESS,
        "Foo generation is 2, but latest observed generation is 1",
    ),
    ("configmap", obj("v1", "ConfigMap"), Status.CURRENT, "Resource is always ready"),
    ("no status", obj("example.com/v1", "Bar", {"a": 1}), Status.CURRENT, "Resource is current"),
    (
        "being deleted",
        obj("apps/v1", "Deployment", {}, AVAILABLE_DEPLOYMENT, deletionTimestamp="t"),
        Status.TERMINATING,
        "Resource scheduled for deletion",
    ),
]


@pytest.mark.parametrize(
    ("obj_", "status", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_kstatus_rules(obj_: dict[str, Any], status: Status, message: str) -> None:
    assert compute_status(obj_, now=NOW) == ObjectStatus(status, message)


def test_jobs_with_ttl() -> None:
    with_ttl = obj("batch/v1", "Job", {"ttlSecondsAfterFinished": 0})
    without = obj("batch/v1", "Job", {})
    assert jobs_with_ttl([with_ttl, without]) == frozenset({ObjectId.of(with_ttl)})


def test_health_result_message_names_objects_not_ready() -> None:
    web = ObjectId("apps", "Deployment", "ns", "web")
    db = ObjectId("", "Service", "ns", "db")
    result = HealthResult(
        HealthOutcome.TIMEOUT,
        {
            web: ObjectStatus(Status.IN_PROGRESS, "Available: 0/1"),
            db: ObjectStatus(Status.CURRENT, "ok"),
        },
        30.0,
    )
    assert not result.healthy
    assert result.not_ready == [(web, ObjectStatus(Status.IN_PROGRESS, "Available: 0/1"))]
    assert result.message == (
        "timeout waiting for: [Deployment/ns/web status: 'InProgress': Available: 0/1]"
    )
    failed = HealthResult(HealthOutcome.FAILED, {web: ObjectStatus(Status.FAILED, "x")}, 1.0)
    assert (
        failed.message
        == "failed early due to stalled resources: [Deployment/ns/web status: 'Failed': x]"
    )


def test_a_message_about_thousands_of_objects_stays_within_a_condition_message() -> None:
    items = [f"PersistentVolumeClaim/ns/claim-{i:04d} status: 'InProgress'" for i in range(1000)]
    text = _bounded_list(items)
    assert len(text) < MAX_LISTED_CHARS + 40 < 32768
    assert text.startswith(items[0])
    assert text.endswith(" more")
    shown = text.count("status: 'InProgress'")
    assert text.endswith(f", ... and {1000 - shown} more")
    assert _bounded_list(items[:3]) == ", ".join(items[:3])
