"""pytest fixtures for real git servers and repositories (no Kubernetes needed).

Make them available with ``from tests.support.fixtures import *`` in a conftest.py (or
``pytest_plugins = ["tests.support.fixtures"]`` in the root one). Servers are per session
and share one project root, so every repository created through `git_repos` is reachable
through every server:

- ``git_repos``: a RepoFactory; ``git_repos.create()`` -> Repo with commit/tag/branch/...
- ``git_http_server``: plain HTTP, anonymous.
- ``git_http_basic_server`` (``.basic`` = (user, password)), ``git_http_bearer_server``
  (``.bearer`` = token): HTTP with auth.
- ``git_https_server``: HTTPS with a certificate from ``tls_ca`` (``tls_ca.cert_pem``).
- ``git_https_mtls_server``: HTTPS that also requires ``client_cert`` (a CertPair).
- ``git_ssh_server``: OpenSSH; ``ssh_key`` and ``ssh_encrypted_key`` (password in
  ``.password``) are authorized; ``git_ssh_server.known_hosts`` for the Secret.
- ``gpg_key`` and ``gpg_other_key``: PGP signing keys (``.public_armored``, ``.fingerprint``).
- ``forward_proxy``: a forwarding HTTP proxy requiring (PROXY_USER, PROXY_PASSWORD), fresh
  per test so its ``forwarded``/``refused`` counts are the test's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.builders import helm_repository
from tests.support.charts import Charts
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import GpgKey, RepoFactory
from tests.support.gitservers import (
    CertPair,
    GitHttpServer,
    GitSshServer,
    SSHKey,
    TestCA,
    make_ssh_key,
)
from tests.support.helmrepos import ChartRepo, ChartRepoServer
from tests.support.proxies import ForwardProxy
from tests.support.status import wait_ready

HTTP_USER = "headwater"
HTTP_PASSWORD = "correct-horse-battery"
BEARER_TOKEN = "hw-test-token-0123456789"
SSH_KEY_PASSWORD = "ssh-key-passphrase"
PROXY_USER = "proxy-user"
PROXY_PASSWORD = "proxy-pass-4711"

__all__ = [
    "BEARER_TOKEN",
    "HTTP_PASSWORD",
    "HTTP_USER",
    "PROXY_PASSWORD",
    "PROXY_USER",
    "SSH_KEY_PASSWORD",
    "client_cert",
    "forward_proxy",
    "git_http_basic_server",
    "git_http_bearer_server",
    "git_http_server",
    "git_https_mtls_server",
    "git_https_server",
    "git_project_root",
    "git_repos",
    "git_ssh_server",
    "gpg_key",
    "gpg_other_key",
    "ssh_encrypted_key",
    "ssh_key",
    "tls_ca",
]


@pytest.fixture(scope="session")
def git_project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory every test git server serves (bare repositories live here)."""
    return tmp_path_factory.mktemp("git-project-root")


@pytest.fixture
def git_repos(git_project_root: Path, request: pytest.FixtureRequest) -> Iterator[RepoFactory]:
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40] or "repo"
    factory = RepoFactory(git_project_root, prefix=stem)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def gpg_key() -> Iterator[GpgKey]:
    key = GpgKey.create("Headwater Signer <signer@headwater.invalid>")
    yield key
    key.close()


@pytest.fixture(scope="session")
def gpg_other_key() -> Iterator[GpgKey]:
    key = GpgKey.create("Someone Else <other@headwater.invalid>")
    yield key
    key.close()


@pytest.fixture(scope="session")
def tls_ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="session")
def client_cert(tls_ca: TestCA) -> CertPair:
    return tls_ca.issue("headwater-client", server=False)


@pytest.fixture(scope="session")
def git_http_server(git_project_root: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(git_project_root) as server:
        yield server


@pytest.fixture(scope="session")
def git_http_basic_server(git_project_root: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(git_project_root, basic=(HTTP_USER, HTTP_PASSWORD)) as server:
        yield server


@pytest.fixture(scope="session")
def git_http_bearer_server(git_project_root: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(git_project_root, bearer=BEARER_TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def git_https_server(git_project_root: Path, tls_ca: TestCA) -> Iterator[GitHttpServer]:
    tls = tls_ca.issue("127.0.0.1", server=True)
    with GitHttpServer(git_project_root, tls=tls) as server:
        yield server


@pytest.fixture(scope="session")
def git_https_mtls_server(git_project_root: Path, tls_ca: TestCA) -> Iterator[GitHttpServer]:
    tls = tls_ca.issue("127.0.0.1", server=True)
    with GitHttpServer(git_project_root, tls=tls, client_ca=tls_ca.cert_pem) as server:
        yield server


@pytest.fixture(scope="session")
def ssh_key() -> SSHKey:
    return make_ssh_key()


@pytest.fixture(scope="session")
def ssh_encrypted_key() -> SSHKey:
    return make_ssh_key(SSH_KEY_PASSWORD)


@pytest.fixture(scope="session")
def git_ssh_server(
    git_project_root: Path, ssh_key: SSHKey, ssh_encrypted_key: SSHKey
) -> Iterator[GitSshServer]:
    server = GitSshServer(git_project_root)
    server.authorize(ssh_key.public)
    server.authorize(ssh_encrypted_key.public)
    with server:
        yield server


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        yield proxy


@pytest.fixture
def charts(
    cluster: TestCluster, controllers: RunningControllers, namespace: str, tmp_path: Path
) -> Iterator[Charts]:
    """The real chain a user builds for helm: a chart repository on loopback (packaged
    and indexed by helm) and a HelmRepository `charts` of it in the test's namespace;
    the source controller pulls HelmCharts from it (see `tests.support.charts.Charts`)."""
    repo = ChartRepo(tmp_path / "charts")
    repo.index()  # an empty repository until a test publishes a chart
    with ChartRepoServer(repo) as server:
        apply(cluster, helm_repository(namespace, "charts", server.url))
        wait_ready(cluster, namespace, "HelmRepository", "charts")
        yield Charts(cluster, namespace, "charts", repo, server)
