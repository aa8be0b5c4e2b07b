"""Health checks (kstatus) of objects on the real control plane, where kwok runs the pods."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from controllers.toolkit.apply.health import (
    HealthOutcome,
    Status,
    jobs_with_ttl,
    wait_for_health,
)
from controllers.toolkit.apply.inventory import InventoryEntry, ObjectId
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.apply.ssa import apply_all, label_selector, owner_labels
from tests.integration.toolkit.conftest import GROUP, options
from tests.support.builders import custom_resource_definition, deployment, service
from tests.support.cluster import TestCluster

pytestmark = pytest.mark.integration

SELECTOR = label_selector(owner_labels(GROUP, "app", "flux-system"))


async def applied(resources: ResourceClient, objects: list[dict[str, Any]]) -> list[InventoryEntry]:
    return list((await apply_all(resources, objects, options())).to_inventory())


def unschedulable(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    # No node carries this label, so the pods stay Pending for real.
    return deployment(
        namespace,
        name,
        image="nginx:1",
        ports=(80,),
        pod={"nodeSelector": {"headwater.test/none": "x"}},
        **spec,
    )


async def test_deployments_become_current_after_rollout(
    resources: ResourceClient, namespace: str
) -> None:
    objects = [
        deployment(namespace, "a", image="nginx:1", ports=(80,), replicas=2),
        deployment(namespace, "b", image="nginx:1", ports=(80,)),
        service(namespace, "a", port={"port": 80, "targetPort": 80}),
    ]
    inventory = await applied(resources, objects)
    result = await wait_for_health(
        resources, inventory, timeout=90, poll_interval=0.5, label_selector=SELECTOR
    )
    assert result.outcome is HealthOutcome.HEALTHY, result.message
    a = result.statuses[ObjectId("apps", "Deployment", namespace, "a")]
    assert (a.status, a.message) == (Status.CURRENT, "Deployment is available. Replicas: 2")


async def test_a_job_is_healthy_once_complete(resources: ResourceClient, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": namespace},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}
            }
        },
    }
    inventory = await applied(resources, [job])
    result = await wait_for_health(resources, inventory, timeout=90, poll_interval=0.5)
    assert result.outcome is HealthOutcome.HEALTHY, result.message
    (status,) = result.statuses.values()
    assert status.message == "Job Completed. succeeded: 1/1"


async def test_a_deployment_past_its_progress_deadline_fails_fast(
    resources: ResourceClient, namespace: str
) -> None:
    inventory = await applied(
        resources,
        [
            unschedulable("stuck", namespace, progressDeadlineSeconds=1),
            deployment(namespace, "ok", image="nginx:1", ports=(80,)),
        ],
    )
    result = await wait_for_health(resources, inventory, timeout=120, poll_interval=0.5)
    assert result.outcome is HealthOutcome.FAILED
    assert result.message == (
        "failed early due to stalled resources: "
        f"[Deployment/{namespace}/stuck status: 'Failed': Progress deadline exceeded]"
    )


async def test_timeout_names_what_is_not_ready(resources: ResourceClient, namespace: str) -> None:
    inventory = await applied(resources, [unschedulable("pending", namespace)])
    missing = InventoryEntry(ObjectId("", "ConfigMap", namespace, "missing"), "v1")
    result = await wait_for_health(resources, [*inventory, missing], timeout=2, poll_interval=0.5)
    assert result.outcome is HealthOutcome.TIMEOUT
    not_ready = {object_id.name: status for object_id, status in result.not_ready}
    assert not_ready["missing"].status is Status.NOT_FOUND
    assert not_ready["pending"].status is Status.IN_PROGRESS
    assert result.message.startswith("timeout waiting for: [")
    assert f"ConfigMap/{namespace}/missing status: 'NotFound'" in result.message
    assert f"Deployment/{namespace}/pending status: 'InProgress'" in result.message


async def test_a_new_revision_cancels_the_wait(resources: ResourceClient, namespace: str) -> None:
    inventory = await applied(resources, [unschedulable("pending", namespace)])
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, cancel.set)
    result = await wait_for_health(
        resources, inventory, timeout=300, poll_interval=30, cancel=cancel
    )
    assert result.outcome is HealthOutcome.CANCELED


async def test_a_finished_job_with_ttl_counts_as_healthy_when_gone(
    resources: ResourceClient, namespace: str
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "gone", "namespace": namespace},
        "spec": {"ttlSecondsAfterFinished": 0},
    }
    entry = InventoryEntry(ObjectId.of(job), "v1")
    result = await wait_for_health(
        resources, [entry], timeout=5, poll_interval=0.5, ttl_jobs=jobs_with_ttl([job])
    )
    assert result.outcome is HealthOutcome.HEALTHY


@pytest.fixture
def gadget_crd(cluster: TestCluster) -> Iterator[str]:
    group = f"h{secrets.token_hex(4)}.example.com"
    crd = custom_resource_definition(group, "Gadget")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/gadgets.{group}")
    yield group
    cluster.kubectl("delete", "crd", f"gadgets.{group}", "--wait=false", check=False)


def set_conditions(
    cluster: TestCluster, group: str, namespace: str, name: str, *conditions: dict[str, str]
) -> None:
    # A custom resource's status is written by its controller; here, by the test.
    cluster.kubectl(
        "patch",
        f"gadgets.{group}",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": list(conditions)}}),
    )


def condition(type_: str, status: str, message: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": "Test",
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


async def test_custom_resources_follow_their_conditions(
    resources: ResourceClient, cluster: TestCluster, namespace: str, gadget_crd: str
) -> None:
    gadgets = [
        {
            "apiVersion": f"{gadget_crd}/v1",
            "kind": "Gadget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"n": 1},
        }
        for name in ("ready", "stalled", "waiting")
    ]
    inventory = await applied(resources, gadgets)
    set_conditions(cluster, gadget_crd, namespace, "ready", condition("Ready", "True", "ok"))
    set_conditions(
        cluster,
        gadget_crd,
        namespace,
        "stalled",
        condition("Ready", "False", "bad spec"),
        condition("Stalled", "True", "bad spec"),
    )
    set_conditions(cluster, gadget_crd, namespace, "waiting", condition("Ready", "False", "wait"))
    result = await wait_for_health(
        resources, inventory, timeout=60, poll_interval=0.5, label_selector=SELECTOR
    )
    assert result.outcome is HealthOutcome.FAILED
    by_name = {object_id.name: status for object_id, status in result.statuses.items()}
    assert by_name["ready"].status is Status.CURRENT
    assert (by_name["stalled"].status, by_name["stalled"].message) == (Status.FAILED, "bad spec")
    assert (by_name["waiting"].status, by_name["waiting"].message) == (Status.IN_PROGRESS, "wait")

    set_conditions(cluster, gadget_crd, namespace, "stalled", condition("Ready", "True", "ok"))
    set_conditions(cluster, gadget_crd, namespace, "waiting", condition("Ready", "True", "ok"))
    result = await wait_for_health(resources, inventory, timeout=60, poll_interval=0.5)
    assert result.outcome is HealthOutcome.HEALTHY
