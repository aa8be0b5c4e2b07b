"""How objects are applied and removed: force, per-object annotations, prune, suspend,
who applies (serviceAccountName, kubeConfig) and deletionPolicy."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
import yaml

from tests.support import builders
from tests.support.builders import configmap_file as configmap
from tests.support.builders import configmaps_only, git_repository, kustomization
from tests.support.cluster import (
    TestCluster,
    apply,
    get_json,
    kubectl_json,
    token_kubeconfig,
    wait_for,
)
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    condition,
    events_for,
    failed_on,
    ready_message,
    request_reconcile,
    wait_for_kustomization,
)
from tests.support.status import configmap_data as data_of

pytestmark = pytest.mark.integration

GROUP = "kustomize.toolkit.fluxcd.io"


def job(image: str) -> str:
    return yaml.safe_dump(builders.job(None, "migrate", image, container="migrate"))


def deployment(name: str) -> str:
    return yaml.safe_dump(builders.deployment(None, name, replicas=None))


def test_force_recreates_an_object_whose_immutable_field_changed(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"deploy/job.yaml": job("example/migrate:1")})
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "jobs", "repo", "./deploy", targetNamespace=namespace),
    )
    wait_for_kustomization(cluster, namespace, "jobs", applied(first))
    original = kubectl_json(cluster, "get", "job", "migrate", "-n", namespace)

    # A Job's pod template is immutable: without force the apply fails, naming both.
    second = repo.commit({"deploy/job.yaml": job("example/migrate:2")})
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    ks = wait_for_kustomization(cluster, namespace, "jobs", failed_on(second))
    assert (condition(ks, "Ready") or {}).get("reason") == "ReconciliationFailed"
    message = ready_message(ks)
    assert f"Job/{namespace}/migrate" in message, message
    assert "spec.template" in message and "immutable" in message, message
    assert ks["status"]["lastAppliedRevision"].endswith(first)
    unchanged = kubectl_json(cluster, "get", "job", "migrate", "-n", namespace)
    assert unchanged["metadata"]["uid"] == original["metadata"]["uid"]

    # With force the Job is deleted and created again from the new revision.
    cluster.kubectl(
        "patch", "kustomization", "jobs", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"force":true}}',
    )  # fmt: skip
    wait_for_kustomization(cluster, namespace, "jobs", applied(second))
    recreated = kubectl_json(cluster, "get", "job", "migrate", "-n", namespace)
    assert recreated["metadata"]["uid"] != original["metadata"]["uid"]
    containers = recreated["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "example/migrate:2"


def test_per_object_annotations_prune_off_and_suspend(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit(
        {
            "objects/seeded.yaml": configmap(
                "seeded", {f"{GROUP}/ssa": "IfNotPresent"}, value="from git 1"
            ),
            "objects/hands-off.yaml": configmap("hands-off", value="from git 1"),
            "objects/kept.yaml": configmap("kept", {f"{GROUP}/prune": "disabled"}, value="1"),
            "objects/normal.yaml": configmap("normal", value="from git 1"),
            "objects/dropped.yaml": configmap("dropped", value="1"),
            "no-prune/a.yaml": configmap("a", value="1"),
            "no-prune/b.yaml": configmap("b", value="1"),
            "held/held.yaml": configmap("held", value="from git 1"),
        }
    )
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "objects", "repo", "./objects", targetNamespace=namespace),
        kustomization(
            namespace, "no-prune", "repo", "./no-prune", targetNamespace=namespace, prune=False
        ),
        kustomization(namespace, "held", "repo", "./held", targetNamespace=namespace),
    )
    for name in ("objects", "no-prune", "held"):
        wait_for_kustomization(cluster, namespace, name, applied(first))
    assert data_of(cluster, namespace, "seeded") == {"value": "from git 1"}

    # Someone edits the IfNotPresent object; the held Kustomization is suspended.
    cluster.kubectl(
        "patch", "configmap", "seeded", "-n", namespace, "--type=merge",
        "-p", '{"data":{"value":"edited in the cluster"}}',
    )  # fmt: skip
    cluster.kubectl(
        "patch", "kustomization", "held", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"suspend":true}}',
    )  # fmt: skip
    second = repo.commit(
        {
            "objects/seeded.yaml": configmap(
                "seeded", {f"{GROUP}/ssa": "IfNotPresent"}, value="from git 2"
            ),
            "objects/hands-off.yaml": configmap(
                "hands-off", {f"{GROUP}/reconcile": "disabled"}, value="from git 2"
            ),
            "objects/kept.yaml": None,
            "objects/normal.yaml": configmap("normal", value="from git 2"),
            "objects/dropped.yaml": None,
            "no-prune/b.yaml": None,
            "held/held.yaml": configmap("held", value="from git 2"),
        },
        "second revision",
    )
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    objects = wait_for_kustomization(cluster, namespace, "objects", applied(second))
    no_prune = wait_for_kustomization(cluster, namespace, "no-prune", applied(second))

    assert data_of(cluster, namespace, "normal") == {"value": "from git 2"}
    assert data_of(cluster, namespace, "dropped") is None, "pruned"
    # ssa: IfNotPresent: created once, never updated, the cluster's edit stays.
    assert data_of(cluster, namespace, "seeded") == {"value": "edited in the cluster"}
    # reconcile: disabled in git: the object is left as it is.
    assert data_of(cluster, namespace, "hands-off") == {"value": "from git 1"}
    # prune: disabled: gone from git, not from the cluster.
    assert data_of(cluster, namespace, "kept") == {"value": "1"}
    inventory = {entry["id"] for entry in objects["status"]["inventory"]["entries"]}
    assert f"{namespace}_kept__ConfigMap" not in inventory
    # prune: false on the Kustomization: nothing is deleted, the inventory moves on.
    assert data_of(cluster, namespace, "b") == {"value": "1"}
    assert {entry["id"] for entry in no_prune["status"]["inventory"]["entries"]} == {
        f"{namespace}_a__ConfigMap"
    }
    # Suspended: the same source change (applied above by its siblings) was not applied.
    held = kubectl_json(cluster, "get", "kustomization", "held", "-n", namespace)
    assert held["status"]["lastAppliedRevision"].endswith(first)
    assert data_of(cluster, namespace, "held") == {"value": "from git 1"}

    # An IfNotPresent object that was deleted is created again (from git as it is now).
    cluster.kubectl("delete", "configmap", "seeded", "-n", namespace)
    wait_for(
        lambda: data_of(cluster, namespace, "seeded") == {"value": "from git 2"},
        timeout=30,
        what="the IfNotPresent object recreated",
    )

    # Resumed: the held Kustomization catches up.
    cluster.kubectl(
        "patch", "kustomization", "held", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"suspend":false}}',
    )  # fmt: skip
    wait_for_kustomization(cluster, namespace, "held", applied(second))
    assert data_of(cluster, namespace, "held") == {"value": "from git 2"}


def test_objects_are_applied_as_the_service_account_or_kubeconfig_given(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit(
        {
            "impersonated/settings.yaml": configmap("impersonated", value="1"),
            "remote/settings.yaml": configmap("remote", value="1"),
        }
    )
    apply(cluster, *configmaps_only(namespace, "deployer"))
    apply(cluster, *configmaps_only(namespace, "remote-applier"))
    # kubeConfig.secretRef is for another cluster. Starting a second control plane
    # is too heavy for a test, so the kubeconfig points at this same cluster but
    # authenticates as another identity, a ServiceAccount token: what it may and
    # may not do proves the Secret's kubeconfig is the one used.
    kubeconfig = token_kubeconfig(cluster, namespace, "remote-applier")
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "remote-kubeconfig", "namespace": namespace},
            "data": {"value": base64.b64encode(kubeconfig.encode()).decode()},
        },
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(
            namespace,
            "impersonated",
            "repo",
            "./impersonated",
            targetNamespace=namespace,
            serviceAccountName="deployer",
        ),
        kustomization(
            namespace,
            "remote",
            "repo",
            "./remote",
            targetNamespace=namespace,
            kubeConfig={"secretRef": {"name": "remote-kubeconfig"}},
        ),
    )
    wait_for_kustomization(cluster, namespace, "impersonated", applied(first))
    wait_for_kustomization(cluster, namespace, "remote", applied(first))
    assert data_of(cluster, namespace, "impersonated") == {"value": "1"}
    assert data_of(cluster, namespace, "remote") == {"value": "1"}

    # A Deployment is beyond either identity: refused, naming it and the permission.
    second = repo.commit(
        {
            "impersonated/web.yaml": deployment("web-impersonated"),
            "remote/web.yaml": deployment("web-remote"),
        },
        "add deployments",
    )
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    for name, account in (("impersonated", "deployer"), ("remote", "remote-applier")):
        ks = wait_for_kustomization(cluster, namespace, name, failed_on(second))
        message = ready_message(ks)
        assert f"Deployment/{namespace}/web-{name}" in message, message
        assert "forbidden" in message.lower(), message
        assert f"system:serviceaccount:{namespace}:{account}" in message, message
        assert '"deployments"' in message, message
        # The refused apply (a patch), not the read tried after it, is what explains it.
        assert "cannot patch" in message, message
        assert ks["status"]["lastAppliedRevision"].endswith(first)
        assert get_json(cluster, "deployment", f"web-{name}", "-n", namespace) is None
        assert data_of(cluster, namespace, name) == {"value": "1"}, "what was applied stays"

    # The identities go first (as when their namespace is deleted): the Kustomizations
    # can still be deleted. What they applied stays, and an event says so.
    cluster.kubectl("delete", "serviceaccount", "deployer", "-n", namespace)
    cluster.kubectl("delete", "secret", "remote-kubeconfig", "-n", namespace)
    cluster.kubectl(
        "delete", "kustomization", "impersonated", "remote", "-n", namespace, "--wait=false"
    )  # fmt: skip
    for name, missing in (
        ("impersonated", f"ServiceAccount '{namespace}/deployer' not found"),
        ("remote", f"Secret '{namespace}/remote-kubeconfig' not found"),
    ):
        wait_for(
            lambda name=name: get_json(cluster, "kustomization", name, "-n", namespace) is None,
            timeout=30,
            what=f"Kustomization {name} deleted",
        )
        warning = events_for(cluster, namespace, "Kustomization", name, "PruneFailed")[-1]
        assert missing in warning["message"], warning["message"]
        assert f"ConfigMap/{namespace}/{name}" in warning["message"], warning["message"]
        assert data_of(cluster, namespace, name) == {"value": "1"}


def test_deletion_policies(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    hold = "headwater.test/hold"
    repo = git_repos.create()
    commit = repo.commit(
        {
            "plain/config.yaml": configmap("config", value="1"),
            # A finalizer of our own keeps this object Terminating until we let go.
            "held/held.yaml": yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "held", "finalizers": [hold]},
                    "data": {"value": "1"},
                }
            ),
        }
    )
    cases = {
        # name: (deletionPolicy, prune, path)
        "delete": ("Delete", False, "./plain"),
        "orphan": ("Orphan", True, "./plain"),
        "mirror-prune": ("MirrorPrune", True, "./plain"),
        "mirror-keep": ("MirrorPrune", False, "./plain"),
        "wait": ("WaitForTermination", False, "./held"),
    }
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        *(
            kustomization(
                namespace,
                name,
                "repo",
                path,
                targetNamespace=namespace,
                nameSuffix=f"-{name}",
                deletionPolicy=policy,
                prune=prune,
                timeout="2m",
            )
            for name, (policy, prune, path) in cases.items()
        ),
    )
    for name in cases:
        wait_for_kustomization(cluster, namespace, name, applied(commit))
    cluster.kubectl("delete", "kustomization", *cases, "-n", namespace, "--wait=false")

    def gone(*args: str) -> Callable[[], bool]:
        return lambda: get_json(cluster, *args, "-n", namespace) is None

    for name in ("delete", "orphan", "mirror-prune", "mirror-keep"):
        wait_for(gone("kustomization", name), timeout=30, what=f"{name} deleted")
    assert gone("configmap", "config-delete")(), "Delete deletes whatever prune says"
    assert gone("configmap", "config-mirror-prune")(), "MirrorPrune follows prune: true"
    assert data_of(cluster, namespace, "config-orphan") == {"value": "1"}, "Orphan keeps"
    assert data_of(cluster, namespace, "config-mirror-keep") == {"value": "1"}, "prune: false"

    # WaitForTermination: the object is deleted, and the Kustomization stays until it is gone.
    terminating = wait_for(
        lambda: (
            (found := get_json(cluster, "configmap", "held-wait", "-n", namespace))
            and found["metadata"].get("deletionTimestamp")
            and found
        ),
        timeout=30,
        what="the held object deleted",
    )
    assert terminating["metadata"]["finalizers"] == [hold]
    assert not gone("kustomization", "wait")(), "the Kustomization waits for termination"
    cluster.kubectl(
        "patch", "configmap", "held-wait", "-n", namespace, "--type=json",
        "-p", '[{"op":"remove","path":"/metadata/finalizers"}]',
    )  # fmt: skip
    wait_for(gone("kustomization", "wait"), timeout=30, what="wait deleted")
    assert gone("configmap", "held-wait")()
