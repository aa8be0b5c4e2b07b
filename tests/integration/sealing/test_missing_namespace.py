"""The controllers' namespace does not exist yet: say so, once, and start as soon as it does.

A new user following the README may run the controllers before creating
their namespace. The controller log and `headwater seal --fetch-cert` must
both name the missing namespace and the command that creates it; the log
says it once per outage, not every retry; and the first sealing key follows
the namespace's creation within seconds. Each test names a namespace of its
own (HEADWATER_NAMESPACE, --controller-namespace) that does not exist.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controllers.sealing import keys as sealing_keys
from tests.support.cli import run_headwater
from tests.support.cluster import TestCluster, kubectl_json, wait_for
from tests.support.controllers import run_controllers

pytestmark = pytest.mark.integration

MISSING = "does not exist"
# Well under the 30 s retry of other failures.
KEY_WITHIN_SECONDS = 15.0


@pytest.fixture
def absent_namespace(cluster: TestCluster) -> Iterator[str]:
    """A namespace name no one has created; deleted afterwards if the test created it."""
    name = f"hw-absent-{secrets.token_hex(4)}"
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def missing_namespace_lines(log_text: str, namespace: str) -> list[str]:
    return [line for line in log_text.splitlines() if f"namespace {namespace} {MISSING}" in line]


def key_secret_names(cluster: TestCluster, namespace: str) -> list[str]:
    listing = kubectl_json(
        cluster, "get", "secrets", "-n", namespace, "-l", sealing_keys.KEY_SELECTOR
    )
    return [item["metadata"]["name"] for item in listing.get("items") or []]


def test_fetch_cert_names_the_missing_namespace_and_how_to_create_it(
    cluster: TestCluster, absent_namespace: str
) -> None:
    result = run_headwater(
        "seal",
        "--fetch-cert",
        "--controller-namespace",
        absent_namespace,
        kubeconfig=cluster.kubeconfig,
    )
    assert result.returncode != 0
    error = result.stderr.decode()
    assert f"namespace {absent_namespace} {MISSING}" in error
    assert f"kubectl create namespace {absent_namespace}" in error
    assert result.stdout == b""


def test_fetch_cert_in_a_namespace_without_a_key_says_who_makes_one(
    cluster: TestCluster, namespace: str
) -> None:
    result = run_headwater(
        "seal", "--fetch-cert", "--controller-namespace", namespace, kubeconfig=cluster.kubeconfig
    )
    assert result.returncode != 0
    error = result.stderr.decode()
    assert f"no sealing key with a certificate in namespace {namespace}" in error
    assert "headwater run kustomize" in error
    assert MISSING not in error


def test_controllers_warn_once_then_make_the_key_when_the_namespace_appears(
    cluster: TestCluster, absent_namespace: str, tmp_path: Path
) -> None:
    with run_controllers(
        cluster.kubeconfig,
        tmp_path,
        which="kustomize",
        extra_env={"HEADWATER_NAMESPACE": absent_namespace},
    ) as running:
        wait_for(
            lambda: missing_namespace_lines(running.logs(), absent_namespace),
            timeout=30,
            what="the missing-namespace warning",
        )
        # Several polls later (one every 2 s), still one line for this outage.
        time.sleep(7)
        [line] = missing_namespace_lines(running.logs(), absent_namespace)
        assert f"kubectl create namespace {absent_namespace}" in line
        assert json.loads(line)["level"] == "warning"

        cluster.kubectl("create", "namespace", absent_namespace)
        created = time.monotonic()
        wait_for(
            lambda: key_secret_names(cluster, absent_namespace),
            timeout=KEY_WITHIN_SECONDS,
            interval=0.2,
            what=f"a sealing key in {absent_namespace}",
        )
        assert time.monotonic() - created < KEY_WITHIN_SECONDS
        wait_for(
            lambda: f"sealing key ready in namespace {absent_namespace}" in running.logs(),
            timeout=10,
            what="the recovery line",
        )
        assert len(missing_namespace_lines(running.logs(), absent_namespace)) == 1
