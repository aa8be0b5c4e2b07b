"""The git server fails under a running GitRepository: down, stalling, 500, credentials revoked.

Each time the GitRepository goes Ready=False with Flux's reason and a message naming
the URL without credentials, the last artifact keeps being served, the Kustomization and
what it applied stay as they were, and once the server is back the repository recovers
on its own (no annotation, no restart): the seconds that takes are the figure.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.support.builders import git_repository, kustomization, secret
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.faults import FaultGate, figure
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.sources import download
from tests.support.status import (
    applied,
    condition,
    configmap_data,
    get_object,
    wait_for_kustomization,
    wait_for_object,
)

pytestmark = pytest.mark.integration

INTERVAL = 3  # seconds: the GitRepository retries on its interval, as Flux's does
FETCH_TIMEOUT = 5  # spec.timeout, what bounds a stalled server


def config_map(value: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"v": value}}
    )


def failing(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        return bool(ready and ready["status"] == "False" and ready["reason"] == reason)

    return check


def serving(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        artifact = (obj.get("status") or {}).get("artifact") or {}
        return bool(
            ready and ready["status"] == "True" and str(artifact.get("revision")).endswith(revision)
        )

    return check


def test_down_stalled_500_and_revoked_credentials_keep_the_last_artifact_and_recover(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"deploy/app.yaml": config_map("one")}, "one")
    with FaultGate(git_http_basic_server.port) as gate:
        url = f"http://127.0.0.1:{gate.port}/{repo.name}.git"
        apply(
            cluster,
            secret(namespace, "git-auth", {"username": HTTP_USER, "password": HTTP_PASSWORD}),
            git_repository(
                namespace,
                "app",
                url,
                interval=f"{INTERVAL}s",
                timeout=f"{FETCH_TIMEOUT}s",
                secretRef={"name": "git-auth"},
            ),
            kustomization(namespace, "app", "app", "./deploy", targetNamespace=namespace),
        )
        wait_for_kustomization(cluster, namespace, "app", applied(first), timeout=90)
        good = get_object(cluster, namespace, "gitrepository", "app")["status"]["artifact"]
        before = get_object(cluster, namespace, "configmap", "app")["metadata"]["resourceVersion"]

        def broken(what: str, reason: str, *texts: str) -> None:
            # A new commit the controller cannot fetch while the server is broken.
            obj = wait_for_object(
                cluster,
                namespace,
                "gitrepository",
                "app",
                failing(reason),
                timeout=60,
                what=f"Ready=False {reason} while the git server is {what}",
            )
            message = condition(obj, "Ready")["message"]  # type: ignore[index]
            assert url in message, message
            assert any(text in message for text in texts), message
            assert HTTP_PASSWORD not in message
            # The last good artifact is still the one advertised, and it is served.
            assert obj["status"]["artifact"] == good
            data = download(good["url"])
            assert "sha256:" + hashlib.sha256(data).hexdigest() == good["digest"]
            # The cluster is untouched: the Kustomization keeps its revision and object.
            ks = get_object(cluster, namespace, "kustomization", "app")
            assert ks["status"]["lastAppliedRevision"] == good["revision"]
            assert condition(ks, "Ready")["status"] == "True"  # type: ignore[index]
            cm = get_object(cluster, namespace, "configmap", "app")
            assert cm["metadata"]["resourceVersion"] == before
            figure(f"git_{what}_failure_shown_seconds", time.monotonic() - broke)

        def recovers(what: str, revision: str) -> None:
            back = time.monotonic()
            wait_for_object(
                cluster,
                namespace,
                "gitrepository",
                "app",
                serving(revision),
                timeout=60,
                what=f"recovery after the git server was {what}",
            )
            figure(f"git_{what}_recovery_seconds", time.monotonic() - back)

        # Down: connection refused.
        broke = time.monotonic()
        gate.down()
        broken("down", "GitOperationFailed", "127.0.0.1")
        gate.pass_through()
        recovers("down", first)

        # Stalled: the server accepts and never answers; spec.timeout ends each attempt.
        broke = time.monotonic()
        gate.stall()
        # git's own low-speed limit, or the bound on the whole git command, whichever ends
        # it first on this machine.
        broken("stalled", "GitOperationFailed", "too slow", "timed out after")
        gate.pass_through()
        recovers("stalled", first)

        # 500 on every request.
        broke = time.monotonic()
        gate.answer(500)
        broken("500", "GitOperationFailed", "500")
        gate.pass_through()
        recovers("500", first)

        # Credentials revoked on the server mid-run (the Secret still holds the old ones).
        broke = time.monotonic()
        git_http_basic_server.set_credentials(basic=(HTTP_USER, "rotated-password"))
        try:
            broken("revoked", "AuthenticationFailed", "credentials missing or refused")
        finally:
            git_http_basic_server.set_credentials(basic=(HTTP_USER, HTTP_PASSWORD))
        recovers("revoked", first)

        # And new commits flow again, to the cluster too.
        second = repo.commit({"deploy/app.yaml": config_map("two")}, "two")
        wait_for_kustomization(cluster, namespace, "app", applied(second), timeout=90)
        assert configmap_data(cluster, namespace, "app") == {"v": "two"}
