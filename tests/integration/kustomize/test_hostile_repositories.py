"""Hostile repositories: a remote base, an exec plugin or KRM function, a path climbing out
of the artifact with ``../``, a symlink to /etc. Each revision is refused (BuildFailed)
with a message naming the file, and what the good revision applied stays."""

from __future__ import annotations

import pytest

from tests.support.builders import git_repository, kustomization
from tests.support.cluster import TestCluster, apply, kubectl_json
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import (
    applied,
    condition,
    failed_on,
    request_reconcile,
    wait_for_kustomization,
)

pytestmark = pytest.mark.integration

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n"
KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
EXEC_FUNCTION = """\
apiVersion: example.com/v1
kind: Generator
metadata:
  name: run-a-shell
  annotations:
    config.kubernetes.io/function: |
      exec:
        path: /bin/sh
"""

HOSTILE = [
    (
        "remote base",
        {
            "deploy/kustomization.yaml": KUSTOMIZATION
            + "resources:\n  - settings.yaml\n  - https://github.com/org/repo//deploy?ref=v1\n"
        },
        ["'deploy/kustomization.yaml'", "is remote", "--no-remote-bases"],
    ),
    (
        "exec KRM function",
        {
            "deploy/kustomization.yaml": KUSTOMIZATION
            + "resources: [settings.yaml]\ngenerators: [gen.yaml]\n",
            "deploy/gen.yaml": EXEC_FUNCTION,
        },
        ["'deploy/kustomization.yaml'", "generators entry 'gen.yaml'", "KRM function"],
    ),
    (
        "external plugin",
        {
            "deploy/kustomization.yaml": KUSTOMIZATION
            + "resources: [settings.yaml]\ntransformers: [sed.yaml]\n",
            "deploy/sed.yaml": "apiVersion: someteam.example.com/v1\nkind: SedTransformer\n"
            "metadata: {name: s}\n",
        },
        ["'deploy/kustomization.yaml'", "external plugin someteam.example.com/v1/SedTransformer"],
    ),
    (
        "path out of the artifact",
        {
            "deploy/kustomization.yaml": KUSTOMIZATION
            + "resources:\n  - settings.yaml\n  - ../../../../etc/kubernetes\n"
        },
        ["'deploy/kustomization.yaml'", "'../../../../etc/kubernetes' points outside the artifact"],
    ),
]


def test_hostile_revisions_are_refused_naming_the_file(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    good_files = {
        "deploy/kustomization.yaml": KUSTOMIZATION + "resources: [settings.yaml]\n",
        "deploy/settings.yaml": CONFIGMAP,
    }
    good = repo.commit(good_files, "good")
    apply(
        cluster,
        git_repository(namespace, "repo", git_http_server.url(repo.name)),
        kustomization(namespace, "app", "repo", "./deploy", targetNamespace=namespace),
    )
    wait_for_kustomization(cluster, namespace, "app", applied(good))
    uid = kubectl_json(cluster, "get", "configmap", "settings", "-n", namespace)["metadata"]["uid"]

    for what, files, expected in HOSTILE:
        commit = repo.commit({**good_files, **files}, what)
        request_reconcile(cluster, namespace, "gitrepository", "repo")
        ks = wait_for_kustomization(cluster, namespace, "app", failed_on(commit), what=what)
        ready = condition(ks, "Ready")
        assert ready is not None and ready["reason"] == "BuildFailed", (what, ready)
        for text in expected:
            assert text in ready["message"], (what, ready["message"])
        assert ks["status"]["lastAppliedRevision"].endswith(good), what
        live = kubectl_json(cluster, "get", "configmap", "settings", "-n", namespace)
        assert live["metadata"]["uid"] == uid and live["data"] == {"a": "b"}, what

    # A symlink to /etc: the source leaves it out of the artifact, so the entry that
    # names it fails in kustomize, which names the link.
    repo.commit(
        {
            **good_files,
            "deploy/kustomization.yaml": KUSTOMIZATION + "resources: [settings.yaml, passwd]\n",
        },
        "reference a symlink",
    )
    commit = repo.symlink("deploy/passwd", "/etc/passwd")
    request_reconcile(cluster, namespace, "gitrepository", "repo")
    ks = wait_for_kustomization(cluster, namespace, "app", failed_on(commit), what="symlink")
    ready = condition(ks, "Ready")
    assert ready is not None and ready["reason"] == "BuildFailed", ready
    # kustomize's own words: "accumulating resources from 'passwd': evalsymlink failure on
    # 'deploy/passwd' : lstat deploy/passwd: no such file or directory".
    assert "'deploy/passwd'" in ready["message"], ready
    assert "no such file or directory" in ready["message"], ready
    assert "root:" not in ready["message"]
    live = kubectl_json(cluster, "get", "configmap", "settings", "-n", namespace)
    assert live["metadata"]["uid"] == uid
