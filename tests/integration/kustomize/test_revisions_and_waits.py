"""What a Kustomization reports while it waits or when nothing in its build changed:
the revision just reconciled, no Warning for a source that is not ready yet, and a
refused read of its inputs reported and retried."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.builders import configmap_file as configmap
from tests.support.builders import configmaps_only, git_repository, kustomization
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    condition,
    events_for,
    failed_on,
    request_reconcile,
    wait_for_kustomization,
)

pytestmark = pytest.mark.integration


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    found = condition(obj, "Ready")
    assert found is not None, obj.get("status")
    return found


def test_a_commit_that_changes_no_built_file_is_reported_as_applied(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit(
        {"infra/base.yaml": configmap("base", a="1"), "app/app.yaml": configmap("app", b="1")}
    )
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "infra", "repo", "./infra", targetNamespace=namespace),
        kustomization(
            namespace,
            "app",
            "repo",
            "./app",
            targetNamespace=namespace,
            dependsOn=[{"name": "infra"}],
        ),
    )
    wait_for_kustomization(cluster, namespace, "infra", applied(first))
    wait_for_kustomization(cluster, namespace, "app", applied(first))

    # An empty commit: the same files, a new revision.
    second = repo.commit({}, "empty")
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    infra = wait_for_kustomization(
        cluster, namespace, "infra", applied(second), what="the new revision reported"
    )
    assert ready(infra)["message"] == f"Applied revision: {infra['status']['lastAppliedRevision']}"
    # The dependent on the same source waits for infra to apply that revision: it does.
    app = wait_for_kustomization(
        cluster, namespace, "app", applied(second), what="the dependent applied too"
    )
    assert app["status"]["lastAppliedRevision"] == infra["status"]["lastAppliedRevision"]


def test_a_source_not_ready_yet_is_waited_for_without_a_warning(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"settings.yaml": configmap("settings", a="1")})
    # No GitRepository at all yet, and one whose repository does not exist yet.
    apply(
        cluster,
        kustomization(namespace, "no-source", "later", targetNamespace=namespace),
        git_repository(namespace, "unfetched", git_http_server.url("not-there-yet")),
        kustomization(namespace, "no-artifact", "unfetched", targetNamespace=namespace),
    )
    for name, message in (
        ("no-source", f"Source 'GitRepository/{namespace}/later' not found"),
        ("no-artifact", f"Source 'GitRepository/{namespace}/unfetched' is not ready"),
    ):
        ks = wait_for_kustomization(
            cluster,
            namespace,
            name,
            lambda obj: (condition(obj, "Ready") or {}).get("reason") == "ArtifactFailed",
            what="waiting for its source",
        )
        assert ready(ks)["status"] == "False"
        assert ready(ks)["message"].startswith(message), ready(ks)
    # Nothing for an Alert to page anyone about.
    for name in ("no-source", "no-artifact"):
        warnings = [
            e
            for e in events_for(cluster, namespace, "Kustomization", name)
            if e["type"] != "Normal"
        ]
        assert warnings == [], warnings

    # Once the source is there, the Kustomization goes on.
    apply(cluster, git_repository(namespace, "later", git_http_server.url(repo.name)))
    request_reconcile(cluster, namespace, "kustomization", "no-source")
    wait_for_kustomization(cluster, namespace, "no-source", applied(first))


def test_a_refused_read_of_substitute_from_is_reported_and_retried(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    account = "tenant"
    repo = git_repos.create()
    first = repo.commit({"settings.yaml": configmap("settings", greeting="${greeting}")})
    tenancy = configmaps_only(namespace, account)
    [role] = [item for item in tenancy if item["kind"] == "Role"]
    apply(
        cluster,
        *tenancy,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vars", "namespace": namespace},
            "stringData": {"greeting": "hello"},
        },
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(
            namespace,
            "tenant",
            "repo",
            targetNamespace=namespace,
            serviceAccountName=account,
            retryInterval="3s",
            postBuild={"substituteFrom": [{"kind": "Secret", "name": "vars"}]},
        ),
    )
    # The tenant's account may not read the Secret: the controller does not read it
    # for them, and says which read was refused.
    ks = wait_for_kustomization(cluster, namespace, "tenant", failed_on(first))
    message = ready(ks)["message"]
    assert ready(ks)["reason"] == "ReconciliationFailed"
    assert 'secrets "vars" is forbidden' in message, message
    assert f"system:serviceaccount:{namespace}:{account}" in message, message
    assert 'cannot get resource "secrets"' in message, message
    assert get_json(cluster, "configmap", "settings", "-n", namespace) is None
    warnings = events_for(cluster, namespace, "Kustomization", "tenant", "ReconciliationFailed")
    assert warnings and warnings[-1]["type"] == "Warning", warnings
    assert 'secrets "vars" is forbidden' in warnings[-1]["message"]

    # Granted afterwards, nothing else changes: the retry on retryInterval picks it up.
    granted = time.monotonic()
    role["rules"].append(
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["vars"], "verbs": ["get"]}
    )
    apply(cluster, role)
    wait_for_kustomization(cluster, namespace, "tenant", applied(first), timeout=25)
    # Well before the 10m interval, and before the queue's 30s crash backoff of old.
    assert time.monotonic() - granted < 25
    settings = get_json(cluster, "configmap", "settings", "-n", namespace)
    assert settings is not None and settings["data"] == {"greeting": "hello"}


def test_a_new_revision_records_its_events_in_order_and_ends_ready(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    # Events are delivered off the reconcile; those about one object keep their order.
    repo = git_repos.create()
    first = repo.commit({"app/app.yaml": configmap("app", b="1")})
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "app", "repo", "./app", targetNamespace=namespace),
    )
    wait_for_kustomization(cluster, namespace, "app", applied(first))
    second = repo.commit({"app/app.yaml": configmap("app", b="2")}, "b=2")
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    obj = wait_for_kustomization(cluster, namespace, "app", applied(second))
    revision = obj["status"]["lastAppliedRevision"]
    assert ready(obj)["status"] == "True"
    assert condition(obj, "Reconciling") is None

    def of_revision() -> list[dict[str, Any]]:
        events = events_for(cluster, namespace, "Kustomization", "app")
        return [
            event
            for event in events
            if (event["metadata"].get("annotations") or {}).get(
                "kustomize.toolkit.fluxcd.io/revision"
            )
            == revision
        ]

    wait_for(lambda: len(of_revision()) >= 2, what="both events of the new revision")
    # An Event's name ends in the hex nanoseconds it was created at: creation order.
    created = sorted(of_revision(), key=lambda event: event["metadata"]["name"])
    assert [(event["reason"], event["message"].split("\n")[0]) for event in created][:2] == [
        ("Progressing", f"ConfigMap/{namespace}/app configured"),
        ("ReconciliationSucceeded", created[1]["message"]),
    ]
