"""dependsOn ordering and health: wait, healthChecks, timeouts, healthCheckExprs on a CR."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.builders import custom_resource_definition, git_repository, kustomization
from tests.support.cluster import TestCluster, apply, get_json, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    condition,
    events_for,
    request_reconcile,
    wait_for_kustomization,
)

pytestmark = pytest.mark.integration


def configmap(name: str, **data: str) -> str:
    return yaml.safe_dump(builders.configmap(None, name, data))


def deployment(name: str, *, replicas: int = 1, node_selector: dict[str, str] | None = None) -> str:
    pod = {"nodeSelector": node_selector} if node_selector else None
    return yaml.safe_dump(builders.deployment(None, name, replicas=replicas, pod=pod))


def ready_reason(obj: dict[str, Any]) -> tuple[str, str]:
    found = condition(obj, "Ready") or {}
    return str(found.get("status")), str(found.get("reason"))


def test_depends_on_waits_for_the_dependency_then_applies_by_itself(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    commit = repo.commit(
        {"infra/infra.yaml": configmap("infra"), "apps/app.yaml": configmap("app", uses="infra")}
    )
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(
            namespace, "infra", "repo", "./infra", targetNamespace=namespace, suspend=True
        ),
        kustomization(
            namespace,
            "apps",
            "repo",
            "./apps",
            targetNamespace=namespace,
            dependsOn=[{"name": "infra"}],
        ),
    )
    apps = wait_for_kustomization(
        cluster,
        namespace,
        "apps",
        lambda obj: ready_reason(obj) == ("False", "DependencyNotReady"),
        what="apps waiting for infra",
    )
    message = (condition(apps, "Ready") or {}).get("message", "")
    assert f"'{namespace}/infra'" in message, message
    assert get_json(cluster, "configmap", "app", "-n", namespace) is None

    annotations_before = apps["metadata"].get("annotations") or {}
    cluster.kubectl(
        "patch",
        "kustomization",
        "infra",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":false}}',
    )
    wait_for_kustomization(cluster, namespace, "infra", applied(commit), what="infra applied")
    # Within the 30s a not-ready dependency waits: infra becoming Ready wakes apps.
    apps = wait_for_kustomization(
        cluster,
        namespace,
        "apps",
        applied(commit),
        timeout=25,
        what="apps applied after infra",
    )
    assert (apps["metadata"].get("annotations") or {}) == annotations_before, (
        "no reconcile was requested"
    )
    assert kubectl_json(cluster, "get", "configmap", "app", "-n", namespace)["data"] == {
        "uses": "infra"
    }


def test_wait_and_health_checks_report_healthy_or_name_what_timed_out(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    commit = repo.commit(
        {
            "waited/web.yaml": deployment("web", replicas=2),
            "waited/settings.yaml": configmap("settings", mode="fast"),
            "checked/api.yaml": deployment("api"),
            "checked/other.yaml": configmap("other"),
            # No node carries this label: the pod never schedules.
            "stuck/stuck.yaml": deployment("stuck", node_selector={"no-such-node": "true"}),
            "fixed-later/slow.yaml": deployment("slow", node_selector={"no-such-node": "true"}),
        }
    )
    common = {"targetNamespace": namespace}
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "waited", "repo", "./waited", wait=True, timeout="60s", **common),
        kustomization(
            namespace,
            "checked",
            "repo",
            "./checked",
            timeout="60s",
            healthChecks=[
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "api",
                    "namespace": namespace,
                }
            ],
            **common,
        ),
        kustomization(namespace, "stuck", "repo", "./stuck", wait=True, timeout="4s", **common),
        kustomization(
            namespace, "fixed-later", "repo", "./fixed-later", wait=True, timeout="10m", **common
        ),
    )

    waited = wait_for_kustomization(cluster, namespace, "waited", applied(commit), timeout=90)
    healthy = condition(waited, "Healthy")
    assert healthy is not None and healthy["status"] == "True", healthy
    assert healthy["message"].startswith("Health check passed in")
    # Ready means the Deployment really is available.
    web = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)
    assert web["status"].get("availableReplicas") == 2

    checked = wait_for_kustomization(cluster, namespace, "checked", applied(commit), timeout=90)
    assert (condition(checked, "Healthy") or {}).get("status") == "True"
    api = kubectl_json(cluster, "get", "deployment", "api", "-n", namespace)
    assert api["status"].get("availableReplicas") == 1

    stuck = wait_for_kustomization(
        cluster,
        namespace,
        "stuck",
        lambda obj: ready_reason(obj) == ("False", "HealthCheckFailed"),
        timeout=60,
        what="the health check timing out",
    )
    ready = condition(stuck, "Ready") or {}
    assert f"Deployment/{namespace}/stuck" in ready["message"], ready
    assert "timeout" in ready["message"]
    assert (condition(stuck, "Healthy") or {}).get("status") == "False"
    # Applied, though not healthy: the object is there and in the inventory.
    assert get_json(cluster, "deployment", "stuck", "-n", namespace) is not None
    assert stuck["status"]["inventory"]["entries"] == [
        {"id": f"{namespace}_stuck_apps_Deployment", "v": "v1"}
    ]

    # A new revision interrupts a health wait in progress and is applied at once.
    wait_for(
        lambda: get_json(cluster, "deployment", "slow", "-n", namespace),
        what="the first revision of fixed-later applied, its health wait begun",
    )
    fixed = repo.commit({"fixed-later/slow.yaml": deployment("slow")}, "schedulable")
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    wait_for_kustomization(
        cluster,
        namespace,
        "fixed-later",
        applied(fixed),
        what="the fix applied mid-wait",
    )
    slow = kubectl_json(cluster, "get", "deployment", "slow", "-n", namespace)
    assert slow["status"].get("availableReplicas") == 1
    canceled = [
        event
        for event in events_for(cluster, namespace, "Kustomization", "fixed-later")
        if event["reason"] == "HealthCheckCanceled"
    ]
    assert canceled and f"Deployment/{namespace}/slow" in canceled[0]["message"], canceled


def widget_crd(group: str) -> str:
    return yaml.safe_dump(custom_resource_definition(group, "Widget"))


def test_health_check_exprs_judge_a_custom_resource_by_its_status(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    # A group of this test's own: CRDs are cluster-wide.
    group = f"{namespace}.headwater.test"
    repo = git_repos.create()
    commit = repo.commit(
        {
            "deploy/crd.yaml": widget_crd(group),
            "deploy/widget.yaml": yaml.safe_dump(
                {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}}
            ),
        }
    )
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(
            namespace,
            "widgets",
            "repo",
            "./deploy",
            targetNamespace=namespace,
            wait=True,
            timeout="5s",
            healthCheckExprs=[
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Widget",
                    "inProgress": "status.phase == 'Provisioning'",
                    "failed": "status.phase == 'Failed'",
                    "current": "status.phase == 'Ready'",
                }
            ],
        ),
    )
    widget = [f"widgets.{group}", "w1", "-n", namespace]

    def set_phase(phase: str) -> None:
        cluster.kubectl(
            "patch",
            *widget,
            "--subresource=status",
            "--type=merge",
            "-p",
            f'{{"status":{{"phase":"{phase}"}}}}',
        )

    # Applied, but with no status yet the expressions cannot say Current (kstatus
    # alone would call a Widget without conditions Current at once): the wait
    # times out naming the Widget.
    ks = wait_for_kustomization(
        cluster,
        namespace,
        "widgets",
        lambda obj: ready_reason(obj) == ("False", "HealthCheckFailed"),
        what="the status-less Widget timing out",
    )
    message = (condition(ks, "Ready") or {}).get("message", "")
    assert f"Widget/{namespace}/w1" in message and "timeout" in message, message
    assert "'status'" in message, "the missing field is named"

    set_phase("Ready")
    request_reconcile(cluster, namespace, "kustomization", "widgets")
    ks = wait_for_kustomization(cluster, namespace, "widgets", applied(commit), what="healthy")
    assert (condition(ks, "Healthy") or {}).get("status") == "True"

    # The Widget fails: the next reconcile names it without waiting for the timeout.
    set_phase("Failed")
    request_reconcile(cluster, namespace, "kustomization", "widgets")
    ks = wait_for_kustomization(
        cluster,
        namespace,
        "widgets",
        lambda obj: ready_reason(obj) == ("False", "HealthCheckFailed"),
        what="the failed Widget reported",
    )
    message = (condition(ks, "Ready") or {}).get("message", "")
    assert f"Widget/{namespace}/w1" in message and "failed early" in message, message
    assert "spec.healthCheckExprs[0].failed" in message


def test_a_healthy_no_op_reconcile_writes_nothing(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    commit = repo.commit({"app/web.yaml": deployment("web")})
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(
            namespace, "app", "repo", "./app", interval="2s", wait=True, targetNamespace=namespace
        ),
    )
    ready = wait_for_kustomization(cluster, namespace, "app", applied(commit), timeout=90)
    version = ready["metadata"]["resourceVersion"]
    # Several intervals, each a reconcile that finds the Deployment healthy again:
    # the status (with its "Health check passed in ..." message) stays as it was.
    time.sleep(7)
    after = kubectl_json(cluster, "get", "kustomization", "app", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == version, after["status"]
