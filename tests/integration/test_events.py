"""The event recorder writes real Events, and repeats aggregate into one."""

from __future__ import annotations

from typing import Any

import kubernetes.client
import pytest

from controllers.toolkit.runtime.events import EventRecorder, KubernetesEventSink, make_recorder
from controllers.toolkit.runtime.settings import Settings
from tests.support.builders import git_repository
from tests.support.cluster import TestCluster, apply
from tests.support.status import get_object

pytestmark = pytest.mark.integration


def git_repository_podinfo(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    # Suspended: only this test records events about it, not the running controllers.
    apply(
        cluster,
        git_repository(
            namespace,
            "podinfo",
            "https://example.invalid/podinfo.git",
            suspend=True,
            interval="5m",
            ref={"branch": "main"},
        ),
    )
    return get_object(cluster, namespace, "gitrepository", "podinfo")


def events_about(
    api_client: kubernetes.client.ApiClient, namespace: str, uid: str
) -> list[kubernetes.client.CoreV1Event]:
    core = kubernetes.client.CoreV1Api(api_client)
    listed = core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}")
    items: list[kubernetes.client.CoreV1Event] = listed.items
    return sorted(items, key=lambda event: event.metadata.name)


async def test_an_event_is_written_with_its_object_and_metadata(
    cluster: TestCluster, api_client: kubernetes.client.ApiClient, namespace: str
) -> None:
    body = git_repository_podinfo(cluster, namespace)
    recorder = make_recorder("source", api_client, Settings())
    await recorder.normal(
        body, "NewArtifact", "stored artifact for commit 'x'", {"revision": "main@sha1:abc"}
    )

    [event] = events_about(api_client, namespace, body["metadata"]["uid"])
    assert event.type == "Normal"
    assert event.reason == "NewArtifact"
    assert event.message == "stored artifact for commit 'x'"
    assert event.count == 1
    assert event.source.component == "source-controller"
    assert event.reporting_component == "source-controller"
    assert event.reporting_instance
    assert event.metadata.annotations == {"source.toolkit.fluxcd.io/revision": "main@sha1:abc"}
    ref = event.involved_object
    assert (ref.api_version, ref.kind, ref.name, ref.namespace) == (
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        "podinfo",
        namespace,
    )
    assert ref.uid == body["metadata"]["uid"]
    assert ref.resource_version == body["metadata"]["resourceVersion"]
    # What `kubectl describe` lists for the object.
    described = cluster.kubectl("describe", "-n", namespace, "gitrepository", "podinfo").stdout
    assert "NewArtifact" in described


async def test_repeats_aggregate_into_one_event(
    cluster: TestCluster, api_client: kubernetes.client.ApiClient, namespace: str
) -> None:
    body = git_repository_podinfo(cluster, namespace)
    uid = body["metadata"]["uid"]
    recorder = EventRecorder("kustomize-controller", [KubernetesEventSink(api_client)])
    for _ in range(3):
        await recorder.warning(body, "BuildFailed", "kustomization.yaml not found")
    await recorder.warning(body, "BuildFailed", "a different failure")

    events = events_about(api_client, namespace, uid)
    counts = sorted((event.message, event.count) for event in events)
    assert counts == [("a different failure", 1), ("kustomization.yaml not found", 3)]
    repeated = next(e for e in events if e.count == 3)
    assert repeated.type == "Warning"
    assert repeated.last_timestamp >= repeated.first_timestamp


async def test_a_repeat_after_the_event_is_gone_starts_a_new_one(
    cluster: TestCluster, api_client: kubernetes.client.ApiClient, namespace: str
) -> None:
    body = git_repository_podinfo(cluster, namespace)
    uid = body["metadata"]["uid"]
    recorder = EventRecorder("source-controller", [KubernetesEventSink(api_client)])
    await recorder.normal(body, "Succeeded", "fetched")
    [first] = events_about(api_client, namespace, uid)
    kubernetes.client.CoreV1Api(api_client).delete_namespaced_event(first.metadata.name, namespace)

    await recorder.normal(body, "Succeeded", "fetched")
    await recorder.normal(body, "Succeeded", "fetched")
    [second] = events_about(api_client, namespace, uid)
    assert second.metadata.name != first.metadata.name
    assert second.count == 2
