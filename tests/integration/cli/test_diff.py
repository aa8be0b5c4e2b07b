"""`headwater diff` against a Kustomization the real controllers synced from a real git server.

The repository sits behind basic auth, so `--ref` must use the GitRepository's
secretRef as the source controller does. The Kustomization substitutes a
variable from a ConfigMap in the cluster, so the local build must read it too:
without it the build would differ from the cluster and every diff would show it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from tests.support import builders
from tests.support.builders import WEB_CONTAINER, git_repository, kustomization
from tests.support.cli import headwater, run_headwater
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.gitrepos import Repo, RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import applied, wait_for_kustomization

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
SECRET_VALUE = "hunter2-in-git"
NEW_SECRET_VALUE = "rotated-s3cret-value"


def files(
    replicas: int, *, settings: bool = True, password: str = SECRET_VALUE
) -> dict[str, str | None]:
    found: dict[str, str | None] = {
        "web/deployment.yaml": yaml.safe_dump(
            builders.deployment(
                None,
                "web",
                replicas=replicas,
                metadata={"labels": {"tier": "${tier}"}},
                **WEB_CONTAINER,
            )
        ),
        "web/credentials.yaml": yaml.safe_dump(
            builders.secret(None, "credentials", {"password": password})
        ),
    }
    found["web/settings.yaml"] = (
        yaml.safe_dump(builders.configmap(None, "settings", {"mode": "a"})) if settings else None
    )
    return found


def write_tree(root: Path, tree: dict[str, str | None]) -> Path:
    for rel, content in tree.items():
        if content is not None:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(content)
    return root


@dataclasses.dataclass
class Synced:
    namespace: str
    repo: Repo


@pytest.fixture
def synced(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
) -> Synced:
    repo = git_repos.create()
    commit = repo.commit(files(2))
    apply(
        cluster,
        builders.secret(namespace, "git-auth", {"username": HTTP_USER, "password": HTTP_PASSWORD}),
        builders.configmap(namespace, "vars", {"tier": "frontend"}),
        git_repository(
            namespace,
            "app",
            git_http_basic_server.url(repo.name),
            secretRef={"name": "git-auth"},
        ),
        kustomization(
            namespace,
            "web",
            "app",
            "./web",
            targetNamespace=namespace,
            postBuild={"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]},
        ),
    )
    wait_for_kustomization(cluster, namespace, "web", applied(commit), timeout=120, what="applied")
    return Synced(namespace, repo)


def test_diff_of_the_synced_tree_is_empty(
    cluster: TestCluster, synced: Synced, tmp_path: Path
) -> None:
    tree = write_tree(tmp_path, files(2))
    result = headwater(cluster, "diff", "ks", "web", "-n", synced.namespace, "--path", str(tree))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no changes" in result.stdout
    assert "3 unchanged" in result.stdout


def test_diff_shows_a_replica_change_a_prune_and_never_a_secret_value(
    cluster: TestCluster, synced: Synced, tmp_path: Path
) -> None:
    ns = synced.namespace
    tree = write_tree(tmp_path, files(3, settings=False, password=NEW_SECRET_VALUE))
    result = headwater(cluster, "diff", "kustomization", "web", "-n", ns, "--path", str(tree))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"► Deployment/{ns}/web configured" in out
    assert "-  replicas: 2" in out and "+  replicas: 3" in out
    assert f"► ConfigMap/{ns}/settings to prune" in out
    assert f"► Secret/{ns}/credentials configured" in out
    assert "(sensitive, changed)" in out
    for value in (SECRET_VALUE, NEW_SECRET_VALUE):
        assert value not in out + result.stderr
        assert builders.secret(None, "x", {"k": value})["data"]["k"] not in out

    as_json = headwater(cluster, "diff", "ks", "web", "-n", ns, "--path", str(tree), "-o", "json")
    assert as_json.returncode == 1, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["changed"] is True
    actions = {o["object"]: o["action"] for o in data["objects"]}
    assert actions[f"Deployment/{ns}/web"] == "configured"
    assert actions[f"Secret/{ns}/credentials"] == "configured"
    web = next(o for o in data["objects"] if o["object"] == f"Deployment/{ns}/web")
    assert {"path": "spec.replicas", "old": "2", "new": "3"} in web["changes"]
    assert [p["object"] for p in data["pruned"]] == [f"ConfigMap/{ns}/settings"]
    assert SECRET_VALUE not in as_json.stdout and NEW_SECRET_VALUE not in as_json.stdout

    # Nothing was written: the cluster still runs what git has.
    live = json.loads(cluster.kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert live["spec"]["replicas"] == 2


def test_diff_of_a_branch_fetches_it_with_the_sources_credentials(
    cluster: TestCluster, synced: Synced
) -> None:
    ns = synced.namespace
    branch_commit = synced.repo.commit(files(4), branch="more-replicas")
    result = headwater(cluster, "diff", "ks", "web", "-n", ns, "--ref", "more-replicas")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "+  replicas: 4" in result.stdout
    assert f"more-replicas@sha1:{branch_commit}" in result.stdout
    assert "to prune" not in result.stdout


def test_diff_errors_exit_2(cluster: TestCluster, synced: Synced, tmp_path: Path) -> None:
    ns = synced.namespace
    missing = headwater(cluster, "diff", "ks", "nope", "-n", ns, "--path", str(tmp_path))
    assert missing.returncode == 2
    assert f"Kustomization {ns}/nope not found" in missing.stderr
    no_branch = headwater(cluster, "diff", "ks", "web", "-n", ns, "--ref", "no-such-branch")
    assert no_branch.returncode == 2
    assert "no-such-branch" in no_branch.stderr
    assert HTTP_PASSWORD not in no_branch.stderr


def test_diff_shows_sealed_secrets_as_they_are_and_never_prunes_their_secret(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    ns = namespace
    plain = "sealed-plain-value"
    secret = yaml.safe_dump(builders.secret(ns, "api-token", {"token": plain}))
    sealed = run_headwater("seal", input=secret.encode(), kubeconfig=cluster.kubeconfig)
    assert sealed.returncode == 0, sealed.stderr.decode()
    tree = {"deploy/token.yaml": sealed.stdout.decode()}
    repo = git_repos.create()
    commit = repo.commit(tree)
    apply(
        cluster,
        git_repository(ns, "secrets", git_http_server.url(repo.name)),
        kustomization(
            ns, "secrets", "secrets", "./deploy", decryption={"provider": "sealedsecrets"}
        ),
    )
    wait_for_kustomization(cluster, ns, "secrets", applied(commit), timeout=120, what="applied")

    result = headwater(
        cluster, "diff", "ks", "secrets", "-n", ns, "--path", str(write_tree(tmp_path, tree))
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"► SealedSecret/{ns}/api-token sealed" in result.stdout
    assert "no changes (1 sealed)" in result.stdout
    assert "to prune" not in result.stdout
    assert plain not in result.stdout + result.stderr
