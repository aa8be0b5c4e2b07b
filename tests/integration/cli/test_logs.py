"""`headwater logs` on the real controllers' JSON log, from a file and from stdin.

The controllers under test write their log (HEADWATER_LOG_FORMAT=json) to a
file (RunningControllers.log_path); the CLI reads it as a user would pipe
`headwater run all` into it. The pod source is not tested here: kwok's pods
run no containers, so the API server has no log to serve for them (its
request building has unit tests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.builders import WEB_CONTAINER, git_repository, kustomization
from tests.support.cli import headwater
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import applied, wait_for_kustomization

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]


def _json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            found.append(parsed)
    return found


@pytest.fixture
def synced_ns(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> str:
    repo = git_repos.create()
    commit = repo.commit(
        {"web/deployment.yaml": yaml.safe_dump(builders.deployment(None, "web", **WEB_CONTAINER))}
    )
    apply(
        cluster,
        git_repository(namespace, "app", git_http_server.url(repo.name)),
        kustomization(namespace, "web", "app", "./web", targetNamespace=namespace),
    )
    wait_for_kustomization(cluster, namespace, "web", applied(commit), timeout=120, what="applied")
    return namespace


def test_logs_of_one_kustomization_from_stdin_and_from_a_file(
    controllers: RunningControllers, synced_ns: str
) -> None:
    log = controllers.logs()
    expected = [
        line
        for line in _json_lines(log)
        if line.get("kind") == "Kustomization"
        and line.get("name") == "web"
        and line.get("namespace") == synced_ns
    ]
    assert expected, "the controllers logged nothing about the Kustomization"

    piped = headwater(
        None,
        "logs",
        "--kind",
        "kustomization",
        "--name",
        "web",
        "-n",
        synced_ns,
        "-o",
        "json",
        input=log,
    )
    assert piped.returncode == 0, piped.stderr
    assert _json_lines(piped.stdout) == expected

    text = headwater(
        None,
        "logs",
        "--file",
        str(controllers.log_path),
        "--kind",
        "Kustomization",
        "--name",
        "web",
        "-n",
        synced_ns,
    )
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == len(expected)
    assert all(f"Kustomization/{synced_ns}/web" in line for line in lines)
    assert lines[0].split()[1] == expected[0]["level"]
    assert expected[0]["msg"] in lines[0]

    # The source's lines are not the Kustomization's.
    source = headwater(
        None,
        "logs",
        "--file",
        str(controllers.log_path),
        "--kind",
        "GitRepository",
        "-n",
        synced_ns,
        "-o",
        "json",
    )
    assert source.returncode == 0, source.stderr
    got = _json_lines(source.stdout)
    assert got and all(line["kind"] == "GitRepository" for line in got)

    missing = headwater(None, "logs", "--file", str(controllers.log_path.with_name("nope.log")))
    assert missing.returncode == 2
    assert "nope.log" in missing.stderr
