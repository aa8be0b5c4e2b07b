"""Unchanged work is skipped, and changes made outside git are healed and reported."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import yaml

from tests.support.builders import (
    WEB_CONTAINER,
    configmap,
    deployment,
    git_repository,
    kustomization,
    secret,
)
from tests.support.cluster import TestCluster, apply, get_json, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import Repo, RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.metrics import sample_value, scrape
from tests.support.status import applied, events_for, request_reconcile, wait_for_kustomization

pytestmark = pytest.mark.integration

ORIGINAL_PASSWORD = "original-password-in-git"
LEAKED_PASSWORD = "someone-elses-password"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


MANIFESTS = {
    "deploy/web.yaml": yaml.safe_dump(deployment(None, "web", replicas=2, **WEB_CONTAINER)),
    "deploy/settings.yaml": yaml.safe_dump(configmap(None, "settings", {"mode": "fast"})),
    "deploy/creds.yaml": yaml.safe_dump(secret(None, "creds", {"password": ORIGINAL_PASSWORD})),
}
OBJECTS = (("deployment", "web"), ("configmap", "settings"), ("secret", "creds"))


def resource_versions(cluster: TestCluster, namespace: str) -> dict[str, str]:
    return {
        f"{kind}/{name}": kubectl_json(cluster, "get", kind, name, "-n", namespace)["metadata"][
            "resourceVersion"
        ]
        for kind, name in OBJECTS
    }


def rolled_out(cluster: TestCluster, namespace: str) -> bool:
    live = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)
    status = live.get("status") or {}
    progressing: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c["type"] == "Progressing"), {}
    )
    return (
        status.get("observedGeneration") == live["metadata"]["generation"]
        and status.get("replicas") == status.get("availableReplicas") == 2
        and progressing.get("reason") == "NewReplicaSetAvailable"
    )


def apply_log_lines(controllers: RunningControllers, namespace: str) -> list[dict[str, Any]]:
    """The controller's 'server-side apply of <ns>/app' log records, oldest first."""
    lines = []
    for line in controllers.logs().splitlines():
        if f"server-side apply of {namespace}/app:" in line:
            lines.append(json.loads(line))
    return lines


def drift_events(cluster: TestCluster, namespace: str) -> list[dict[str, Any]]:
    return [
        event
        for event in events_for(cluster, namespace, "Kustomization", "app", "DriftDetected")
        if event.get("type") == "Warning"
    ]


def drift_message_with(cluster: TestCluster, namespace: str, text: str) -> str:
    def find() -> str | None:
        for event in drift_events(cluster, namespace):
            if text in str(event.get("message")):
                return str(event["message"])
        return None

    return wait_for(find, timeout=30, what=f"a DriftDetected event with {text!r}")


def deploy(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    **spec: Any,
) -> tuple[Repo, str]:
    """MANIFESTS in a new repository, applied by Kustomization "app"; returns the commit."""
    repo = git_repos.create()
    commit = repo.commit(MANIFESTS)
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "app", "repo", "./deploy", targetNamespace=namespace, **spec),
    )
    return repo, commit


def test_unchanged_work_is_skipped_and_drift_is_healed_by_the_watch(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo, commit = deploy(cluster, namespace, git_repos, git_http_server)
    ks = wait_for_kustomization(cluster, namespace, "app", applied(commit))
    history = ks["status"]["history"]
    # The rollout writes the Deployment's status (and resourceVersion) until done.
    wait_for(lambda: rolled_out(cluster, namespace), what="the rollout done")
    versions = resource_versions(cluster, namespace)

    # A requested reconcile with nothing changed: nothing rebuilt, nothing written.
    logged_before = len(apply_log_lines(controllers, namespace))
    token = request_reconcile(cluster, namespace, "kustomization", "app")
    ks = wait_for_kustomization(
        cluster,
        namespace,
        "app",
        lambda obj: obj["status"].get("lastHandledReconcileAt") == token,
        what="the requested reconcile handled",
    )
    assert resource_versions(cluster, namespace) == versions
    assert ks["status"]["history"] == history
    assert ks["status"]["lastAppliedRevision"].endswith(commit)
    logged = wait_for(
        lambda: apply_log_lines(controllers, namespace)[logged_before:],
        what="the reconcile's apply logged",
    )
    for line in logged:
        assert line["rebuilt"] is False, line
        assert line["msg"].endswith(": 3 unchanged"), line
    assert not drift_events(cluster, namespace)
    annotations = ks["metadata"]["annotations"]

    # kubectl scale (another field manager, the scale subresource) is reverted.
    cluster.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5")
    message = drift_message_with(cluster, namespace, f"Deployment/{namespace}/web")
    assert "spec.replicas: 5 → 2" in message, message
    wait_for(
        lambda: (
            kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]["replicas"]
            == 2
        ),
        timeout=30,
        what="replicas back to 2",
    )

    # A patch of a managed field by another field manager is reverted.
    cluster.kubectl(
        "patch", "configmap", "settings", "-n", namespace, "--field-manager=intruder",
        "-p", '{"data":{"mode":"slow"}}',
    )  # fmt: skip
    message = drift_message_with(cluster, namespace, f"ConfigMap/{namespace}/settings")
    assert 'data.mode: "slow" → "fast"' in message, message
    wait_for(
        lambda: (
            kubectl_json(cluster, "get", "configmap", "settings", "-n", namespace)["data"]
            == {"mode": "fast"}
        ),
        timeout=30,
        what="the ConfigMap healed",
    )

    # A Secret's data is healed too, and no value shows in the event.
    cluster.kubectl(
        "patch", "secret", "creds", "-n", namespace, "--field-manager=intruder",
        "-p", json.dumps({"data": {"password": b64(LEAKED_PASSWORD)}}),
    )  # fmt: skip
    message = drift_message_with(cluster, namespace, f"Secret/{namespace}/creds")
    assert "data.password" in message, message
    wait_for(
        lambda: (
            kubectl_json(cluster, "get", "secret", "creds", "-n", namespace)["data"]
            == {"password": b64(ORIGINAL_PASSWORD)}
        ),
        timeout=30,
        what="the Secret healed",
    )
    everything = json.dumps(events_for(cluster, namespace, "Kustomization", "app"))
    for password in (ORIGINAL_PASSWORD, LEAKED_PASSWORD):
        assert password not in everything and b64(password) not in everything

    # All of it happened through the watch: no reconcile was requested.
    final = kubectl_json(cluster, "get", "kustomization", "app", "-n", namespace)
    assert final["metadata"]["annotations"] == annotations
    assert final["status"]["lastAppliedRevision"].endswith(commit)

    # Our own prune is not drift: its deletion wakes no second reconcile.
    logged_before = len(apply_log_lines(controllers, namespace))
    pruning = repo.commit({"deploy/settings.yaml": None}, "drop the settings")
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    wait_for_kustomization(cluster, namespace, "app", applied(pruning))
    assert get_json(cluster, "configmap", "settings", "-n", namespace) is None
    # A woken reconcile would follow within a second of the DELETED event.
    time.sleep(3)
    after = apply_log_lines(controllers, namespace)[logged_before:]
    assert len(after) == 1, [line["msg"] for line in after]
    healed = f"requeue Kustomization {namespace}/app"
    woken = [line for line in controllers.logs().splitlines() if "deleted of" in line]
    assert not [line for line in woken if healed in line]


def test_ignored_paths_are_left_to_the_cluster_and_other_drift_is_healed(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    _, commit = deploy(
        cluster,
        namespace,
        git_repos,
        git_http_server,
        ignore=[{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}],
    )
    wait_for_kustomization(cluster, namespace, "app", applied(commit))
    web = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)
    assert web["spec"]["replicas"] == 2, "created with the value in git"

    # kubectl scale wakes a reconcile through the watch, which leaves replicas alone.
    logged_before = len(apply_log_lines(controllers, namespace))
    cluster.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5")
    logged = wait_for(
        lambda: apply_log_lines(controllers, namespace)[logged_before:],
        timeout=30,
        what="the reconcile woken by the scale",
    )
    assert logged[-1]["msg"].endswith(": 3 unchanged"), logged
    assert (
        kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]["replicas"] == 5
    )
    assert not drift_events(cluster, namespace)

    # Another field of the same Deployment is still drift: healed and reported,
    # and the scaled replicas stay.
    cluster.kubectl(
        "set", "image", "deployment/web", "web=example/web:2", "-n", namespace
    )  # fmt: skip
    message = drift_message_with(cluster, namespace, f"Deployment/{namespace}/web")
    assert '"example/web:2" → "example/web:1"' in message, message
    assert "replicas" not in message, message

    def image_healed() -> bool:
        spec = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]
        return bool(spec["template"]["spec"]["containers"][0]["image"] == "example/web:1")

    wait_for(image_healed, timeout=30, what="the image healed")
    assert (
        kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]["replicas"] == 5
    )


def test_a_suspended_kustomization_leaves_a_deleted_object_deleted(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    _, commit = deploy(cluster, namespace, git_repos, git_http_server)
    wait_for_kustomization(cluster, namespace, "app", applied(commit))
    cluster.kubectl(
        "patch", "kustomization", "app", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"suspend":true}}',
    )  # fmt: skip
    # The controller has seen the suspension once its reconcile reports it.
    labels = {"kind": "Kustomization", "name": "app", "namespace": namespace}
    wait_for(
        lambda: sample_value(scrape(controllers.metrics_url), "gotk_suspend_status", labels) == 1,
        what="the suspension seen by the controller",
    )
    cluster.kubectl("delete", "configmap", "settings", "-n", namespace)
    time.sleep(5)  # the watch heals a deletion within a second when not suspended
    assert get_json(cluster, "configmap", "settings", "-n", namespace) is None
    assert drift_events(cluster, namespace) == []

    # Resumed, the next reconcile puts it back.
    cluster.kubectl(
        "patch", "kustomization", "app", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"suspend":false}}',
    )  # fmt: skip
    wait_for(
        lambda: get_json(cluster, "configmap", "settings", "-n", namespace),
        what="the ConfigMap re-created after resume",
    )
