"""config/ installed once per session, and controllers running as its ServiceAccounts.

Each controller runs out of the cluster (kwok runs no containers) with a
token of its own ServiceAccount, never the admin kubeconfig, and with leader
election on, so the Lease RBAC is exercised too. They reconcile only objects
labelled with this package's shards, so they never meet the session's
`controllers` (which take everything without a shard label).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cluster import TestCluster
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.install import install, service_account_kubeconfig
from tests.support.scaleout import SHARD_KEY

# The shard of the objects the controllers below reconcile, and of the
# tenants' objects the locked-down kustomize controller reconciles.
SHARD = "install"
LOCKED_SHARD = "install-lockdown"
CONTROLLERS = ("source", "kustomize", "helm", "notification", "image")
# Source and notification serve both shards; each kustomize instance one.
SHARED_SELECTOR = f"{SHARD_KEY} in ({SHARD},{LOCKED_SHARD})"
SELECTORS = {
    "source": SHARED_SELECTOR,
    "notification": SHARED_SELECTOR,
    "kustomize": f"{SHARD_KEY} in ({SHARD})",
}
LOCKED_SELECTOR = f"{SHARD_KEY} in ({LOCKED_SHARD})"


def shard_labels(shard: str = SHARD) -> dict[str, dict[str, str]]:
    return {"labels": {SHARD_KEY: shard}}


@dataclass
class Identities:
    """The controllers running as their own ServiceAccounts, and those kubeconfigs."""

    kubeconfigs: dict[str, Path]
    source: RunningControllers
    kustomize: RunningControllers
    notification: RunningControllers


@pytest.fixture(scope="session")
def installed(cluster: TestCluster) -> str:
    """config/ applied as the README says; kubectl's output."""
    return install(cluster)


@pytest.fixture(scope="session")
def kubeconfigs(
    cluster: TestCluster, installed: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """One kubeconfig per controller, holding a token of its ServiceAccount."""
    directory = tmp_path_factory.mktemp("identities")
    return {
        name: service_account_kubeconfig(
            cluster, f"{name}-controller", directory / f"{name}.kubeconfig"
        )
        for name in CONTROLLERS
    }


def _run_as(
    name: str,
    kubeconfig: Path,
    workdir: Path,
    selector: str,
    **env: str,
) -> contextlib.AbstractContextManager[RunningControllers]:
    return run_controllers(
        kubeconfig,
        workdir,
        which=name,
        extra_env={
            "HEADWATER_WATCH_LABEL_SELECTOR": selector,
            "HEADWATER_ENABLE_LEADER_ELECTION": "true",
            **env,
        },
    )


@pytest.fixture(scope="session")
def identities(
    kubeconfigs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Identities]:
    with contextlib.ExitStack() as stack:
        notification = stack.enter_context(
            _run_as(
                "notification",
                kubeconfigs["notification"],
                tmp_path_factory.mktemp("notification"),
                SELECTORS["notification"],
            )
        )
        events = {"HEADWATER_EVENTS_ADDR": notification.events_url}
        source = stack.enter_context(
            _run_as(
                "source",
                kubeconfigs["source"],
                tmp_path_factory.mktemp("source"),
                SELECTORS["source"],
                **events,
            )
        )
        kustomize = stack.enter_context(
            _run_as(
                "kustomize",
                kubeconfigs["kustomize"],
                tmp_path_factory.mktemp("kustomize"),
                SELECTORS["kustomize"],
                **events,
            )
        )
        yield Identities(kubeconfigs, source, kustomize, notification)


@pytest.fixture(scope="session")
def locked_kustomize(
    identities: Identities, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningControllers]:
    """A kustomize controller with the lockdown on, for the LOCKED_SHARD's tenants."""
    with _run_as(
        "kustomize",
        identities.kubeconfigs["kustomize"],
        tmp_path_factory.mktemp("kustomize-lockdown"),
        LOCKED_SELECTOR,
        HEADWATER_EVENTS_ADDR=identities.notification.events_url,
        HEADWATER_DEFAULT_SERVICE_ACCOUNT="default",
        HEADWATER_NO_CROSS_NAMESPACE_REFS="true",
    ) as running:
        yield running
