"""Fixtures shared by every test.

One real control plane serves the whole session (built from Kubernetes' own
modules by devcluster/). Set HEADWATER_TEST_KUBECONFIG (or pass --kubeconfig)
to run against a cluster that is already up, e.g. one from `headwater cluster up`.
Helpers for tests live in tests/support/: the cluster handle and polling (cluster.py),
manifest builders (builders.py) and status readers and waits (status.py).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

import devcluster
from controllers.toolkit.runtime.selectors import SHARD_KEY
from devcluster import build
from tests.support.cluster import TestCluster, install_crds
from tests.support.controllers import RunningControllers, run_controllers

# Stand-in chat and provider servers, real git servers, repositories and keys, OCI
# registries, kubeseal, Flux's own CLI, the oras CLI.
pytest_plugins = [
    "tests.support.chatservers",
    "tests.support.fixtures",
    "tests.support.fluxcli",
    "tests.support.registry",
    "tests.support.oras",
    "tests.support.sealing",
    "tests.support.tokenregistry",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=os.environ.get("HEADWATER_TEST_KUBECONFIG"),
        help="use the cluster behind this kubeconfig instead of starting one",
    )


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestCluster]:
    existing = request.config.getoption("--kubeconfig")
    if existing:
        kubectl_bin = build.control_plane_dir() / "kubectl"
        handle = TestCluster(Path(existing), kubectl_bin)
        install_crds(handle)
        yield handle
        return
    dev = devcluster.provision(tmp_path_factory.mktemp("devcluster"))
    dev.start()
    try:
        handle = TestCluster(dev.kubeconfig, dev.bin_dir / "kubectl")
        install_crds(handle)
        yield handle
    finally:
        dev.stop()


@pytest.fixture(scope="session")
def api_client(cluster: TestCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: TestCluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    # Pods are refused until the namespace's default ServiceAccount exists.
    deadline = time.monotonic() + 30
    while (
        cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name} never got its default ServiceAccount")
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def controllers(
    cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningControllers]:
    """Every headwater controller, running for the whole session against the test cluster.

    It is the "main" instance of Flux's sharding guide: objects carrying a
    `sharding.fluxcd.io/key` label belong to the shards some tests run.
    """
    cluster.kubectl("create", "namespace", "headwater-system", check=False)
    with run_controllers(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("controllers"),
        extra_env={"HEADWATER_WATCH_LABEL_SELECTOR": f"!{SHARD_KEY}"},
    ) as running:
        yield running
