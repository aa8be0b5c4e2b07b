"""kube-apiserver and etcd restart under running controllers, on a control plane of its own.

The controllers are not restarted. Once the API is back their watches resume (a
requestedAt annotation is handled, a foreign delete of an applied object is healed) and
the seconds from "API ready again" to "drift healed" are the figure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import devcluster
from devcluster.cluster import DevCluster
from tests.support import builders
from tests.support.cluster import TestCluster, apply, install_crds, wait_for
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.faults import figure
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    configmap_data,
    request_reconcile,
    wait_for_kustomization,
)

pytestmark = pytest.mark.integration

NAMESPACE = "restarts"
DOWNTIME = 3.0  # seconds each component stays down


@pytest.fixture(scope="module")
def private_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A control plane only this module restarts (one node: the machine is small)."""
    dev = devcluster.provision(tmp_path_factory.mktemp("restart-plane"), nodes=1)
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="module")
def plane(private_plane: DevCluster) -> TestCluster:
    handle = TestCluster(private_plane.kubeconfig, private_plane.bin_dir / "kubectl")
    install_crds(handle)
    handle.kubectl("create", "namespace", "headwater-system")
    handle.kubectl("create", "namespace", NAMESPACE)
    return handle


@pytest.fixture(scope="module")
def plane_controllers(
    plane: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningControllers]:
    with run_controllers(plane.kubeconfig, tmp_path_factory.mktemp("restart-ctl")) as running:
        yield running


def config_map(value: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"v": value}}
    )


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_restart_during_a_reconcile_is_survived_and_drift_is_healed_again_within_seconds(
    component: str,
    private_plane: DevCluster,
    plane: TestCluster,
    plane_controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    name = f"app-{component}"
    repo = git_repos.create()
    first = repo.commit({"deploy/app.yaml": config_map("one")}, "one")
    apply(
        plane,
        builders.git_repository(NAMESPACE, name, git_http_server.url(repo.name), interval="1h"),
        builders.kustomization(
            NAMESPACE, name, name, "./deploy", targetNamespace=NAMESPACE, interval="1h"
        ),
    )
    wait_for_kustomization(plane, NAMESPACE, name, applied(first), timeout=90)
    pid = plane_controllers.process.pid

    # A new commit and a reconcile request, and the component goes down in the middle.
    second = repo.commit({"deploy/app.yaml": config_map("two")}, "two")
    request_reconcile(plane, NAMESPACE, "gitrepository", name)
    private_plane.stop_component(component)
    time.sleep(DOWNTIME)
    started = time.monotonic()
    private_plane.start_component(component)
    back = time.monotonic()
    figure(f"{component}_restart_seconds", back - started + DOWNTIME)

    # The reconcile that was cut off is finished without anyone's help.
    wait_for_kustomization(plane, NAMESPACE, name, applied(second), timeout=120)
    figure(f"{component}_interrupted_reconcile_done_seconds", time.monotonic() - back)

    # Watches resumed: a foreign delete of an applied object is healed, as before.
    plane.kubectl("delete", "configmap", "app", "-n", NAMESPACE)
    deleted = time.monotonic()
    wait_for(
        lambda: configmap_data(plane, NAMESPACE, "app") == {"v": "two"},
        timeout=90,
        interval=0.2,
        what="the deleted ConfigMap to be applied again",
    )
    healed = time.monotonic()
    figure(f"{component}_drift_heal_seconds", healed - deleted)
    figure(f"{component}_api_back_to_drift_healed_seconds", healed - back)

    # And a requestedAt annotation (a watch event on the Kustomization) is handled.
    token = request_reconcile(plane, NAMESPACE, "kustomization", name)
    wait_for_kustomization(
        plane,
        NAMESPACE,
        name,
        lambda obj: (obj.get("status") or {}).get("lastHandledReconcileAt") == token,
        timeout=60,
        what="the requestedAt annotation to be handled",
    )
    # The same controller process did all of it: nobody restarted it.
    assert plane_controllers.process.poll() is None
    assert plane_controllers.process.pid == pid
