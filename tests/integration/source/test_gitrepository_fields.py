"""GitRepository fields that shape or route the fetch, or are refused: sparseCheckout,
proxySecretRef, provider, serviceAccountName. Real cluster, controllers, git servers and
a real forwarding proxy on loopback."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.builders import git_repository, secret
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.fixtures import PROXY_PASSWORD, PROXY_USER
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer, TestCA
from tests.support.proxies import ForwardProxy
from tests.support.sources import download, tar_listing
from tests.support.status import condition, events_for, get_object, wait_ready

pytestmark = pytest.mark.integration

MONOREPO = {
    "apps/prod/app.yaml": "prod: 1\n",
    "apps/dev/app.yaml": "dev: 1\n",
    "infra/base.yaml": "base: 1\n",
    "README.md": "# monorepo\n",
}


# -- sparseCheckout --------------------------------------------------------------------------


def test_sparse_checkout_keeps_only_the_listed_directories_and_a_change_rebuilds(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit(MONOREPO, "monorepo")
    url = git_http_server.url(repo.name)
    apply(
        cluster,
        git_repository(
            namespace,
            "sparse",
            url,
            interval="1m",
            sparseCheckout=["apps/prod", "./infra/"],
        ),
    )

    obj = wait_ready(cluster, namespace, "gitrepository", "sparse")
    assert obj["status"]["observedSparseCheckout"] == ["apps/prod", "./infra/"]
    assert obj["status"]["artifact"]["revision"] == f"master@sha1:{head}"
    assert tar_listing(download(obj["status"]["artifact"]["url"])) == {
        "apps/prod/app.yaml": b"prod: 1\n",
        "infra/base.yaml": b"base: 1\n",
    }

    # Same commit, other directories: the artifact is rebuilt, not reused.
    first_digest = obj["status"]["artifact"]["digest"]
    apply(
        cluster,
        git_repository(namespace, "sparse", url, interval="1m", sparseCheckout=["apps"]),
    )

    def rebuilt() -> dict[str, bytes] | None:
        current = get_object(cluster, namespace, "gitrepository", "sparse")["status"]
        if current.get("observedSparseCheckout") != ["apps"]:
            return None
        return tar_listing(download(current["artifact"]["url"]))

    assert wait_for(rebuilt, what="the artifact rebuilt for the new sparseCheckout") == {
        "apps/prod/app.yaml": b"prod: 1\n",
        "apps/dev/app.yaml": b"dev: 1\n",
    }
    assert (
        get_object(cluster, namespace, "gitrepository", "sparse")["status"]["artifact"]["digest"]
        != first_digest
    )

    # Dropping sparseCheckout brings the whole tree back, and the observation goes.
    apply(cluster, git_repository(namespace, "sparse", url, interval="1m"))

    def unsparse() -> dict[str, object] | None:
        status = get_object(cluster, namespace, "gitrepository", "sparse")["status"]
        return None if "observedSparseCheckout" in status else status

    whole = wait_for(unsparse, what="observedSparseCheckout removed")
    assert set(tar_listing(download(whole["artifact"]["url"]))) == set(MONOREPO)


def test_sparse_checkout_of_a_missing_directory_fails_naming_it(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit(MONOREPO, "monorepo")
    apply(
        cluster,
        git_repository(
            namespace,
            "missing-dir",
            **{
                "interval": "1m",
                **{
                    "url": git_http_server.url(repo.name),
                    "sparseCheckout": ["apps/prod", "charts"],
                },
            },
        ),
    )

    obj = wait_ready(cluster, namespace, "gitrepository", "missing-dir", status="False")
    ready = condition(obj, "Ready")
    assert ready is not None and ready["reason"] == "GitOperationFailed"
    assert "sparse checkout dir 'charts'" in ready["message"]
    assert "does not exist in repository" in ready["message"]
    assert head in ready["message"]
    fetch_failed = condition(obj, "FetchFailed")
    assert fetch_failed is not None and fetch_failed["status"] == "True"
    assert fetch_failed["message"] == ready["message"]
    assert condition(obj, "Stalled") is None  # the directory may yet be pushed: retried
    assert "artifact" not in obj["status"]


# -- proxySecretRef --------------------------------------------------------------------------


def _proxy_secret(
    cluster: TestCluster, namespace: str, name: str, proxy: ForwardProxy, password: str
) -> None:
    data = {"address": proxy.address, "username": PROXY_USER, "password": password}
    apply(cluster, secret(namespace, name, data))


def test_fetch_goes_through_the_proxy(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    forward_proxy: ForwardProxy,
) -> None:
    repo = git_repos.create()
    head = repo.commit({"a.yaml": "a: 1\n"}, "one")
    url = git_http_server.url(repo.name)
    _proxy_secret(cluster, namespace, "proxy", forward_proxy, PROXY_PASSWORD)
    spec = {"url": url, "proxySecretRef": {"name": "proxy"}}
    apply(cluster, git_repository(namespace, "proxied", **{"interval": "1m", **spec}))

    obj = wait_ready(cluster, namespace, "gitrepository", "proxied")
    assert obj["status"]["artifact"]["revision"] == f"master@sha1:{head}"
    assert tar_listing(download(obj["status"]["artifact"]["url"])) == {"a.yaml": b"a: 1\n"}
    targets = [target for _, target in forward_proxy.forwarded]
    assert f"{url}/info/refs?service=git-upload-pack" in targets
    assert ("POST", f"{url}/git-upload-pack") in forward_proxy.forwarded


def test_unchanged_remote_behind_the_proxy_is_polled_without_fetching_or_writing(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    forward_proxy: ForwardProxy,
) -> None:
    # Its own server: the session's one counts every test's fetches.
    with GitHttpServer(git_repos.project_root) as server:
        repo = git_repos.create()
        repo.commit(MONOREPO, "monorepo")
        _proxy_secret(cluster, namespace, "proxy", forward_proxy, PROXY_PASSWORD)
        spec = {
            "url": server.url(repo.name),
            "interval": "2s",
            "proxySecretRef": {"name": "proxy"},
            "sparseCheckout": ["apps"],
        }
        apply(cluster, git_repository(namespace, "polled", **{"interval": "1m", **spec}))
        version = wait_ready(cluster, namespace, "gitrepository", "polled")["metadata"][
            "resourceVersion"
        ]
        fetches = sum(1 for r in server.requests if r.command in ("fetch", "want"))
        through_proxy = len(forward_proxy.forwarded)
        time.sleep(7)  # three or more polls at a 2s interval
        after = get_object(cluster, namespace, "gitrepository", "polled")
        assert after["metadata"]["resourceVersion"] == version, "a no-op poll wrote status"
        assert sum(1 for r in server.requests if r.command in ("fetch", "want")) == fetches
        assert len(forward_proxy.forwarded) >= through_proxy + 2, "polls skipped the proxy"


def test_https_fetch_is_tunnelled_through_the_proxy(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_https_server: GitHttpServer,
    tls_ca: TestCA,
    forward_proxy: ForwardProxy,
) -> None:
    repo = git_repos.create()
    head = repo.commit({"a.yaml": "a: 1\n"}, "one")
    url = git_https_server.url(repo.name)
    _proxy_secret(cluster, namespace, "proxy", forward_proxy, PROXY_PASSWORD)
    apply(cluster, secret(namespace, "ca", {"ca.crt": tls_ca.cert_pem}))
    apply(
        cluster,
        git_repository(
            namespace,
            "tunnelled",
            **{
                "interval": "1m",
                **{"url": url, "secretRef": {"name": "ca"}, "proxySecretRef": {"name": "proxy"}},
            },
        ),
    )

    obj = wait_ready(cluster, namespace, "gitrepository", "tunnelled")
    assert obj["status"]["artifact"]["revision"] == f"master@sha1:{head}"
    host = url.split("/")[2]
    assert ("CONNECT", host) in forward_proxy.forwarded


def test_wrong_proxy_credentials_and_missing_proxy_secrets_are_named(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    forward_proxy: ForwardProxy,
) -> None:
    repo = git_repos.create()
    repo.commit({"a.yaml": "a: 1\n"}, "one")
    url = git_http_server.url(repo.name)
    wrong = "wrong-proxy-pass-9876"
    _proxy_secret(cluster, namespace, "wrong", forward_proxy, wrong)
    apply(
        cluster,
        secret(namespace, "no-address", {"username": PROXY_USER, "password": PROXY_PASSWORD}),
    )
    apply(
        cluster,
        git_repository(
            namespace,
            "wrong-creds",
            url,
            interval="1m",
            proxySecretRef={"name": "wrong"},
        ),
    )
    apply(
        cluster,
        git_repository(
            namespace,
            "no-secret",
            url,
            interval="1m",
            proxySecretRef={"name": "absent"},
        ),
    )
    apply(
        cluster,
        git_repository(
            namespace,
            "no-address",
            url,
            interval="1m",
            proxySecretRef={"name": "no-address"},
        ),
    )

    refused = wait_ready(cluster, namespace, "gitrepository", "wrong-creds", status="False")
    ready = condition(refused, "Ready")
    assert ready is not None and ready["reason"] == "AuthenticationFailed"
    assert "the proxy (spec.proxySecretRef) refused its credentials" in ready["message"]
    assert "407" in ready["message"]
    assert condition(refused, "FetchFailed")["status"] == "True"  # type: ignore[index]
    assert forward_proxy.refused >= 1
    assert forward_proxy.forwarded == []  # nothing got past the proxy without credentials

    absent = condition(
        wait_ready(cluster, namespace, "gitrepository", "no-secret", status="False"), "Ready"
    )
    assert absent is not None and absent["reason"] == "AuthenticationFailed"
    assert f"secret '{namespace}/absent' (spec.proxySecretRef) not found" in absent["message"]

    no_key = condition(
        wait_ready(cluster, namespace, "gitrepository", "no-address", status="False"), "Ready"
    )
    assert no_key is not None and no_key["reason"] == "AuthenticationFailed"
    assert f"'{namespace}/no-address'" in no_key["message"]
    assert "key 'address' is missing" in no_key["message"]

    wait_for(
        lambda: [
            e
            for e in events_for(cluster, namespace, "GitRepository", "wrong-creds")
            if e["type"] == "Warning"
        ],
        what="a warning event",
    )
    everything = json.dumps(kubectl_json(cluster, "get", "gitrepositories,events", "-n", namespace))
    for leaked in (wrong, PROXY_PASSWORD):
        assert leaked not in everything
        assert leaked not in controllers.logs()


# -- refused fields ---------------------------------------------------------------------------


# The schema accepts serviceAccountName only beside provider aws or azure.
@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"provider": "aws"}, "spec.provider: 'aws' is not supported by headwater"),
        ({"provider": "github"}, "spec.provider: 'github' is not supported by headwater"),
        (
            {"provider": "azure", "serviceAccountName": "reader"},
            "spec.provider: 'azure' is not supported by headwater",
        ),
        (
            {"provider": "azure", "serviceAccountName": "reader"},
            "spec.serviceAccountName is not supported by headwater",
        ),
    ],
    ids=["aws", "github", "azure", "serviceAccountName"],
)
def test_cloud_authentication_fields_stall_naming_field_and_value(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    fields: dict[str, str],
    says: str,
) -> None:
    repo = git_repos.create()
    repo.commit({"a.yaml": "a: 1\n"}, "one")
    apply(
        cluster,
        git_repository(
            namespace,
            "refused",
            git_http_server.url(repo.name),
            interval="1m",
            **fields,
        ),
    )

    obj = wait_ready(cluster, namespace, "gitrepository", "refused", status="False")
    stalled = condition(obj, "Stalled")
    assert stalled is not None and stalled["status"] == "True", obj["status"]
    ready = condition(obj, "Ready")
    assert ready is not None and ready["reason"] == "UnsupportedField"
    assert says in ready["message"]
    assert "artifact" not in obj["status"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


def test_generic_provider_works_as_without_one(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit({"a.yaml": "a: 1\n"}, "one")
    apply(
        cluster,
        git_repository(
            namespace,
            "generic",
            git_http_server.url(repo.name),
            interval="1m",
            provider="generic",
        ),
    )
    obj = wait_ready(cluster, namespace, "gitrepository", "generic")
    assert obj["status"]["artifact"]["revision"] == f"master@sha1:{head}"
