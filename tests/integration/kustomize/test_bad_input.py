"""Bad input fails with Flux's reason and a message naming the file or object, and what
was applied before stays as it was."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.builders import WEB_CONTAINER, git_repository, kustomization
from tests.support.cluster import TestCluster, apply, kubectl_json
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import Repo, RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    condition,
    failed_on,
    request_reconcile,
    wait_for_kustomization,
)

pytestmark = pytest.mark.integration


def web(replicas: Any = 2, labels: Mapping[str, str] | None = None) -> str:
    metadata = {"labels": dict(labels or {"app": "web"})}
    return yaml.safe_dump(
        builders.deployment(None, "web", metadata=metadata, **WEB_CONTAINER, replicas=replicas)
    )


SETTINGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: "${greeting}"
"""
KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - web.yaml
  - settings.yaml
"""
GOOD = {
    "deploy/kustomization.yaml": KUSTOMIZATION,
    "deploy/web.yaml": web(),
    "deploy/settings.yaml": SETTINGS,
}
OBJECTS = (("deployment", "web"), ("configmap", "settings"))


def snapshot(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    """What the good revision set on each object, and its uid (a recreation changes it).

    Not the resourceVersion: the Deployment's rollout keeps writing its status.
    """
    found = {}
    for kind, name in OBJECTS:
        live = kubectl_json(cluster, "get", kind, name, "-n", namespace)
        meta = live["metadata"]
        found[f"{kind}/{name}"] = {
            "uid": meta["uid"],
            "generation": meta.get("generation"),
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
            "spec": live.get("spec"),
            "data": live.get("data"),
        }
    return found


def push_bad(
    cluster: TestCluster, namespace: str, repo: Repo, files: Mapping[str, str | None], what: str
) -> dict[str, str]:
    """Push a bad revision; returns the Kustomization's Ready condition once it failed."""
    commit = repo.commit(dict(files), what)
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    ks = wait_for_kustomization(cluster, namespace, "app", failed_on(commit), what=what)
    ready = condition(ks, "Ready")
    assert ready is not None
    return ready


def test_a_bad_revision_fails_naming_the_problem_and_keeps_the_good_one(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    good = repo.commit(GOOD, "good")
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(
            namespace,
            "app",
            "repo",
            "./deploy",
            targetNamespace=namespace,
            postBuild={"substitute": {"greeting": "hello"}},
        ),
    )
    wait_for_kustomization(cluster, namespace, "app", applied(good))
    before = snapshot(cluster, namespace)

    def still_good() -> None:
        ks = kubectl_json(cluster, "get", "kustomization", "app", "-n", namespace)
        assert ks["status"]["lastAppliedRevision"].endswith(good)
        assert snapshot(cluster, namespace) == before, "an object of the good revision changed"

    # A kustomize error: the kustomization lists a file that is not there.
    ready = push_bad(
        cluster,
        namespace,
        repo,
        {"deploy/kustomization.yaml": KUSTOMIZATION + "  - missing.yaml\n"},
        "kustomize error",
    )
    assert ready["reason"] == "BuildFailed", ready
    assert "missing.yaml" in ready["message"], ready
    still_good()

    # Invalid YAML: the file and the line are named.
    ready = push_bad(
        cluster,
        namespace,
        repo,
        {
            "deploy/kustomization.yaml": KUSTOMIZATION,
            "deploy/settings.yaml": SETTINGS + "  broken: [unclosed\n",
        },
        "invalid YAML",
    )
    assert ready["reason"] == "BuildFailed", ready
    assert "settings.yaml" in ready["message"] and "line" in ready["message"], ready
    still_good()

    # A variable with no value and no default: the variable and the object are named.
    ready = push_bad(
        cluster,
        namespace,
        repo,
        {"deploy/settings.yaml": SETTINGS + '  farewell: "${farewell}"\n'},
        "missing variable",
    )
    assert ready["reason"] == "BuildFailed", ready
    assert "farewell" in ready["message"], ready
    assert f"ConfigMap/{namespace}/settings" in ready["message"], ready
    still_good()

    # Objects the API server rejects: the object and the field are named.
    ready = push_bad(
        cluster,
        namespace,
        repo,
        {"deploy/settings.yaml": SETTINGS, "deploy/web.yaml": web(replicas="many")},
        "rejected replicas",
    )
    assert ready["reason"] == "ReconciliationFailed", ready
    assert f"Deployment/{namespace}/web" in ready["message"], ready
    assert "spec.replicas" in ready["message"], ready
    still_good()
    ready = push_bad(
        cluster,
        namespace,
        repo,
        {"deploy/web.yaml": web(labels={"app": "web", "tier": "not a valid label!"})},
        "rejected label",
    )
    assert ready["reason"] == "ReconciliationFailed", ready
    assert f"Deployment/{namespace}/web" in ready["message"], ready
    assert "metadata.labels" in ready["message"], ready
    still_good()

    # Fixed in git: applied again.
    fixed = repo.commit({"deploy/web.yaml": web(replicas=3)}, "fixed")
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    wait_for_kustomization(cluster, namespace, "app", applied(fixed))
    assert (
        kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]["replicas"] == 3
    )


def test_a_missing_source_or_a_dependency_cycle_keeps_what_was_applied(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    commit = repo.commit(
        {
            "a/a.yaml": yaml.safe_dump(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
            ),
            "b/b.yaml": yaml.safe_dump(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}
            ),
        }
    )
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "a", "repo", "./a", targetNamespace=namespace),
        kustomization(namespace, "b", "repo", "./b", targetNamespace=namespace),
    )
    for name in ("a", "b"):
        wait_for_kustomization(cluster, namespace, name, applied(commit))
    uids = {
        name: kubectl_json(cluster, "get", "configmap", name, "-n", namespace)["metadata"]["uid"]
        for name in ("a", "b")
    }

    def not_ready(reason: str) -> Any:
        return lambda obj: (
            (found := condition(obj, "Ready")) is not None
            and found["status"] == "False"
            and found["reason"] == reason
            and found["observedGeneration"] == obj["metadata"]["generation"]
        )

    # The source is gone from the spec: named, and a's objects stay.
    cluster.kubectl(
        "patch", "kustomization", "a", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"sourceRef":{"kind":"GitRepository","name":"nope"}}}',
    )  # fmt: skip
    ks = wait_for_kustomization(cluster, namespace, "a", not_ready("ArtifactFailed"))
    message = (condition(ks, "Ready") or {})["message"]
    assert f"GitRepository/{namespace}/nope" in message and "not found" in message, message
    assert ks["status"]["lastAppliedRevision"].endswith(commit)

    # b and a new c depend on each other: both name the cycle, b's objects stay.
    apply(
        cluster,
        kustomization(
            namespace, "c", "repo", "./a", targetNamespace=namespace, dependsOn=[{"name": "b"}]
        ),
    )
    cluster.kubectl(
        "patch", "kustomization", "b", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"dependsOn":[{"name":"c"}]}}',
    )  # fmt: skip
    for name in ("b", "c"):
        ks = wait_for_kustomization(cluster, namespace, name, not_ready("DependencyNotReady"))
        message = (condition(ks, "Ready") or {})["message"]
        assert "dependency cycle" in message, message
        assert f"{namespace}/b" in message and f"{namespace}/c" in message, message
    b = kubectl_json(cluster, "get", "kustomization", "b", "-n", namespace)
    assert b["status"]["lastAppliedRevision"].endswith(commit)

    for name, uid in uids.items():
        live = kubectl_json(cluster, "get", "configmap", name, "-n", namespace)
        assert live["metadata"]["uid"] == uid, f"{name} was deleted or replaced"
