"""The app a user's day starts from, as the CLI, Flux CLI and dashboard tests use it: a
git repository whose Kustomization `root` (path `./apps`) applies Kustomization `web`,
which applies Deployment `web` and ConfigMap `settings` into the test namespace."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from tests.support import builders
from tests.support.builders import WEB_CONTAINER, git_repository, kustomization
from tests.support.cluster import TestCluster, apply
from tests.support.gitrepos import Repo, RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import applied, wait_for_kustomization


def web_files(replicas: int, **extra: Mapping[str, Any]) -> dict[str, str | None]:
    """`web/`: the Deployment with `replicas` and the settings ConfigMap, plus `extra`
    objects as `web/<name>.yaml`."""
    files: dict[str, str | None] = {
        "web/deployment.yaml": yaml.safe_dump(
            builders.deployment(None, "web", replicas=replicas, **WEB_CONTAINER)
        ),
        "web/settings.yaml": yaml.safe_dump(builders.configmap(None, "settings", {"mode": "a"})),
    }
    files.update({f"web/{name}.yaml": yaml.safe_dump(dict(obj)) for name, obj in extra.items()})
    return files


@dataclasses.dataclass
class App:
    namespace: str
    repo: Repo
    commit: str

    @property
    def revision(self) -> str:
        return f"master@sha1:{self.commit}"


def sync_app(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    *,
    files: Mapping[str, str | None] | None = None,
    children: Mapping[str, Mapping[str, Any]] | None = None,
    **source_fields: Any,
) -> App:
    """Commit the app (`files` in place of the default `web/`, more Kustomizations in
    `children` as `apps/<name>.yaml`), apply `root` and wait until it and every child
    Kustomization applied the commit."""
    kustomizations = {
        "web": kustomization(namespace, "web", "app", "./web", targetNamespace=namespace),
        **(children or {}),
    }
    tree: dict[str, str | None] = {
        f"apps/{name}.yaml": yaml.safe_dump(dict(ks)) for name, ks in kustomizations.items()
    }
    tree.update(files if files is not None else web_files(2))
    repo = git_repos.create()
    commit = repo.commit(tree)
    apply(
        cluster,
        git_repository(namespace, "app", git_http_server.url(repo.name), **source_fields),
        kustomization(namespace, "root", "app", "./apps"),
    )
    for name in ("root", *kustomizations):
        wait_for_kustomization(
            cluster, namespace, name, applied(commit), timeout=120, what=f"{name} applied"
        )
    return App(namespace, repo, commit)
