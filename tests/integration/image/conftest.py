"""The image-automation scenario's parts: a registry repository, a git repository with a
marked Deployment, and the objects that tie them together."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import yaml

from tests.support import builders
from tests.support.builders import git_repository, kustomization, secret
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.gitrepos import Repo
from tests.support.gitservers import GitHttpServer
from tests.support.registry import OciRegistry

GIT_SECRET = "git-auth"


def marked_deployment(image: str, setter: str, name: str = "web") -> str:
    """A Deployment in git whose image line carries Flux's setter comment."""
    text = yaml.safe_dump(builders.deployment(None, name, image=image, container=name))
    line = f"image: {image}"
    assert line in text
    return text.replace(line, f'{line} # {{"$imagepolicy": "{setter}"}}')


@dataclass
class Scenario:
    namespace: str
    repo: Repo
    registry: OciRegistry
    repository: str  # the registry repository, e.g. "<namespace>/web"

    @property
    def image(self) -> str:
        return f"{self.registry.host}/{self.repository}"

    def git_objects(self, git: GitHttpServer, **source: Any) -> list[dict[str, Any]]:
        """The GitRepository (pushing needs the basic-auth credentials) and Kustomization."""
        return [
            secret(self.namespace, GIT_SECRET, {"username": HTTP_USER, "password": HTTP_PASSWORD}),
            git_repository(
                self.namespace,
                "app",
                git.url(self.repo.name),
                secretRef={"name": GIT_SECRET},
                **{"interval": "1h", **source},
            ),
            kustomization(
                self.namespace,
                "app",
                "app",
                "./deploy",
                interval="1h",
                targetNamespace=self.namespace,
            ),
        ]

    def file(self, path: str = "deploy/web.yaml", branch: str | None = None) -> str:
        """The file as the server holds it on `branch`, byte for byte."""
        ref = f"refs/heads/{branch or self.repo.default_branch}"
        shown = subprocess.run(
            ["git", "--git-dir", str(self.repo.bare), "show", f"{ref}:{path}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return shown.stdout
