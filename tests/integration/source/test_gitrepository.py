"""GitRepository end to end: real cluster, real controllers, real git servers."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.support.builders import git_repository, secret
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.fixtures import BEARER_TOKEN, HTTP_PASSWORD, HTTP_USER, SSH_KEY_PASSWORD
from tests.support.gitrepos import GpgKey, RepoFactory
from tests.support.gitservers import GitHttpServer, GitSshServer, SSHKey
from tests.support.sources import download, tar_listing
from tests.support.status import condition, events_for, get_object, request_reconcile, wait_ready

pytestmark = pytest.mark.integration

APP_FILES = {
    "deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    "README.md": "# app\n",
    "docs/notes.txt": "not for the cluster\n",
    ".sourceignore": "docs/\n",
}


def test_branch_artifact_is_served_verified_and_holds_the_tree(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit(APP_FILES, "first")
    apply(
        cluster,
        git_repository(
            namespace,
            "app",
            git_http_server.url(repo.name),
            interval="1m",
            ref={"branch": "master"},
        ),
    )

    obj = wait_ready(cluster, namespace, "gitrepository", "app")
    artifact = obj["status"]["artifact"]
    assert artifact["revision"] == f"master@sha1:{head}"
    assert artifact["url"].startswith(controllers.storage_url)
    assert artifact["path"] == f"gitrepository/{namespace}/app/{head}.tar.gz"
    data = download(artifact["url"])
    assert artifact["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert artifact["size"] == len(data)
    files = tar_listing(data)
    assert files == {
        "deploy/app.yaml": APP_FILES["deploy/app.yaml"].encode(),
        "README.md": b"# app\n",
        ".sourceignore": b"docs/\n",
    }
    assert condition(obj, "ArtifactInStorage")["status"] == "True"  # type: ignore[index]
    assert condition(obj, "Reconciling") is None
    assert "finalizers.fluxcd.io" in obj["metadata"]["finalizers"]
    # No kopf bookkeeping on the user's object.
    assert not [k for k in obj["metadata"].get("annotations", {}) if "kopf" in k]
    assert "kopf" not in obj["status"]

    new_artifact = wait_for(
        lambda: [
            e
            for e in events_for(cluster, namespace, "GitRepository", "app")
            if e["reason"] == "NewArtifact"
        ],
        what="a NewArtifact event",
    )
    assert head in new_artifact[0]["message"]


def test_new_commit_is_picked_up_on_requested_reconcile_and_old_artifacts_collected(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    repo.commit({"a.yaml": "a: 1\n"}, "one")
    apply(
        cluster, git_repository(namespace, "moving", git_http_server.url(repo.name), interval="1m")
    )
    wait_ready(cluster, namespace, "gitrepository", "moving")

    heads = []
    for index in range(3):
        heads.append(repo.commit({"a.yaml": f"a: {index + 2}\n"}, f"change {index}"))
        token = request_reconcile(cluster, namespace, "gitrepository", "moving")
        obj = wait_for(
            lambda: (
                o
                if (o := get_object(cluster, namespace, "gitrepository", "moving"))["status"]
                .get("artifact", {})
                .get("revision")
                == f"master@sha1:{heads[-1]}"
                else None
            ),
            what="the new revision",
        )
        assert obj["status"]["lastHandledReconcileAt"] == token

    assert tar_listing(download(obj["status"]["artifact"]["url"])) == {"a.yaml": b"a: 4\n"}
    stored = sorted((controllers.storage_dir / "gitrepository" / namespace / "moving").iterdir())
    assert len(stored) <= 2, stored
    assert f"{heads[-1]}.tar.gz" in {p.name for p in stored}


def test_unchanged_remote_is_polled_without_cloning_or_writing(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
) -> None:
    with GitHttpServer(git_repos.project_root) as server:
        repo = git_repos.create()
        repo.commit({"a.yaml": "a: 1\n"}, "one")
        apply(cluster, git_repository(namespace, "still", server.url(repo.name), interval="2s"))
        obj = wait_ready(cluster, namespace, "gitrepository", "still")
        version = obj["metadata"]["resourceVersion"]
        fetches_before = _upload_pack_posts(server)
        time.sleep(7)  # three or more polls at a 2s interval
        after = get_object(cluster, namespace, "gitrepository", "still")
        assert after["metadata"]["resourceVersion"] == version, "a no-op poll wrote status"
        assert _upload_pack_posts(server) == fetches_before, "a no-op poll fetched objects"
        assert _ref_listings(server) >= 2, "the remote was not polled"


def _upload_pack_posts(server: GitHttpServer) -> int:
    return sum(1 for r in server.requests if r.command in ("fetch", "want"))


def _ref_listings(server: GitHttpServer) -> int:
    return sum(1 for r in server.requests if r.command == "ls-refs" or "info/refs" in r.path)


# -- refs ------------------------------------------------------------------------------------


def test_tag_semver_name_and_commit_refs(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"v.txt": "1.0.0\n"}, "v1.0.0")
    repo.tag("v1.0.0", annotated=True)
    second = repo.commit({"v.txt": "1.2.0\n"}, "v1.2.0")
    repo.tag("v1.2.0")
    third = repo.commit({"v.txt": "2.0.0\n"}, "v2.0.0")
    repo.tag("v2.0.0")
    repo.set_ref("refs/pull/1/head", first)
    url = git_http_server.url(repo.name)

    cases = {
        "by-tag": ({"tag": "v1.0.0"}, f"v1.0.0@sha1:{first}"),
        "by-semver": ({"semver": ">=1.0.0 <2.0.0"}, f"v1.2.0@sha1:{second}"),
        "by-name": ({"name": "refs/pull/1/head"}, f"refs/pull/1/head@sha1:{first}"),
        "by-commit": ({"commit": second}, f"sha1:{second}"),
        "by-default-branch": ({}, f"master@sha1:{third}"),
    }
    for name, (ref, _) in cases.items():
        spec = {"ref": ref} if ref else {}
        apply(cluster, git_repository(namespace, name, url, interval="1m", **spec))
    for name, (_, revision) in cases.items():
        obj = wait_ready(cluster, namespace, "gitrepository", name)
        assert obj["status"]["artifact"]["revision"] == revision, name


def test_missing_branch_and_empty_repository_fail_with_flux_reasons(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    repo.commit({"a": "1"}, "one")
    empty = git_repos.empty()
    apply(
        cluster,
        git_repository(
            namespace,
            "no-branch",
            git_http_server.url(repo.name),
            interval="1m",
            ref={"branch": "does-not-exist"},
        ),
    )
    apply(
        cluster, git_repository(namespace, "empty", git_http_server.url(empty.stem), interval="1m")
    )
    apply(
        cluster,
        git_repository(
            namespace, "unreachable", "http://127.0.0.1:9/nobody/here.git", interval="1m"
        ),
    )

    missing = wait_ready(cluster, namespace, "gitrepository", "no-branch", status="False")
    ready = condition(missing, "Ready")
    assert ready is not None and ready["reason"] == "GitOperationFailed"
    assert "does-not-exist" in ready["message"]
    assert condition(missing, "FetchFailed")["status"] == "True"  # type: ignore[index]
    assert condition(missing, "Reconciling")["reason"] == "ProgressingWithRetry"  # type: ignore[index]

    nothing = wait_ready(cluster, namespace, "gitrepository", "empty", status="False")
    assert condition(nothing, "Ready")["reason"] == "EmptyGitRepository"  # type: ignore[index]

    down = wait_ready(cluster, namespace, "gitrepository", "unreachable", status="False")
    assert condition(down, "Ready")["reason"] == "GitOperationFailed"  # type: ignore[index]
    assert "127.0.0.1:9" in condition(down, "Ready")["message"]  # type: ignore[index]

    warnings = wait_for(
        lambda: [
            e
            for e in events_for(cluster, namespace, "GitRepository", "no-branch")
            if e["type"] == "Warning"
        ],
        what="a warning event",
    )
    assert warnings[0]["reason"] == "GitOperationFailed"


# -- authentication -----------------------------------------------------------------------------


def test_basic_auth_works_and_wrong_password_is_reported_without_leaking_it(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit({"a.yaml": "a: 1\n"}, "one")
    url = git_http_basic_server.url(repo.name)
    apply(cluster, secret(namespace, "good", {"username": HTTP_USER, "password": HTTP_PASSWORD}))
    apply(
        cluster, secret(namespace, "bad", {"username": HTTP_USER, "password": "wrong-password-123"})
    )
    apply(
        cluster, git_repository(namespace, "good", url, interval="1m", secretRef={"name": "good"})
    )
    apply(cluster, git_repository(namespace, "bad", url, interval="1m", secretRef={"name": "bad"}))
    apply(
        cluster,
        git_repository(namespace, "missing", url, interval="1m", secretRef={"name": "nope"}),
    )

    assert wait_ready(cluster, namespace, "gitrepository", "good")["status"]["artifact"][
        "revision"
    ].endswith(head)
    bad = wait_ready(cluster, namespace, "gitrepository", "bad", status="False")
    assert condition(bad, "Ready")["reason"] == "AuthenticationFailed"  # type: ignore[index]
    missing = wait_ready(cluster, namespace, "gitrepository", "missing", status="False")
    assert "nope" in condition(missing, "Ready")["message"]  # type: ignore[index]

    everything = json.dumps(kubectl_json(cluster, "get", "gitrepositories,events", "-n", namespace))
    for leaked in ("wrong-password-123", HTTP_PASSWORD):
        assert leaked not in everything
        assert leaked not in controllers.logs()


def test_bearer_token_auth(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_bearer_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    repo.commit({"a.yaml": "a: 1\n"}, "one")
    apply(cluster, secret(namespace, "token", {"bearerToken": BEARER_TOKEN}))
    apply(
        cluster,
        git_repository(
            namespace,
            "bearer",
            git_http_bearer_server.url(repo.name),
            interval="1m",
            secretRef={"name": "token"},
        ),
    )
    wait_ready(cluster, namespace, "gitrepository", "bearer")
    assert BEARER_TOKEN not in controllers.logs()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain-key", "encrypted-key"])
def test_ssh_key_auth(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_ssh_server: GitSshServer,
    ssh_key: SSHKey,
    ssh_encrypted_key: SSHKey,
    encrypted: bool,
) -> None:
    repo = git_repos.create()
    head = repo.commit({"a.yaml": "a: 1\n"}, "one")
    key = ssh_encrypted_key if encrypted else ssh_key
    data: dict[str, str | bytes] = {
        "identity": key.private,
        "known_hosts": git_ssh_server.known_hosts,
    }
    if encrypted:
        data["password"] = SSH_KEY_PASSWORD
    apply(cluster, secret(namespace, "ssh", data))
    apply(
        cluster,
        git_repository(
            namespace,
            "ssh",
            git_ssh_server.url(repo.name),
            interval="1m",
            secretRef={"name": "ssh"},
        ),
    )
    obj = wait_ready(cluster, namespace, "gitrepository", "ssh")
    assert obj["status"]["artifact"]["revision"] == f"master@sha1:{head}"


# -- content -------------------------------------------------------------------------------------


def test_spec_ignore_include_and_submodules(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    shared = git_repos.create()
    shared.commit({"base/config.yaml": "shared: 1\n"}, "shared")
    sub = git_repos.create()
    sub_head = sub.commit({"lib.txt": "library\n"}, "lib")
    main = git_repos.create()
    main.commit({"app.yaml": "app: 1\n", "secret.env": "x=1\n"}, "main")
    main.add_submodule("vendor/lib", f"../{sub.name}.git", sub_head)

    url = git_http_server.url
    apply(cluster, git_repository(namespace, "shared", url(shared.name), interval="1m"))
    wait_ready(cluster, namespace, "gitrepository", "shared")
    apply(
        cluster,
        git_repository(
            namespace,
            "main",
            url(main.name),
            interval="1m",
            ignore="*.env\n",
            recurseSubmodules=True,
            include=[{"repository": {"name": "shared"}, "fromPath": "base", "toPath": "shared"}],
        ),
    )
    obj = wait_ready(cluster, namespace, "gitrepository", "main")
    files = tar_listing(download(obj["status"]["artifact"]["url"]))
    assert "secret.env" not in files
    assert files["app.yaml"] == b"app: 1\n"
    assert files["shared/config.yaml"] == b"shared: 1\n"
    assert files["vendor/lib/lib.txt"] == b"library\n"
    assert obj["status"]["observedIgnore"] == "*.env\n"
    assert obj["status"]["observedRecurseSubmodules"] is True
    assert obj["status"]["includedArtifacts"][0]["revision"].startswith("master@sha1:")

    # A new commit in the included repository rebuilds the including one.
    shared.commit({"base/config.yaml": "shared: 2\n"}, "shared 2")
    request_reconcile(cluster, namespace, "gitrepository", "shared")

    def rebuilt() -> bool:
        current = get_object(cluster, namespace, "gitrepository", "main")["status"]["artifact"]
        return tar_listing(download(current["url"])).get("shared/config.yaml") == b"shared: 2\n"

    assert wait_for(rebuilt, what="main to pick up the included change")


def test_pgp_verification_of_head(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    gpg_key: GpgKey,
    gpg_other_key: GpgKey,
) -> None:
    signed = git_repos.create()
    signed.commit({"a.yaml": "a: 1\n"}, "signed", sign=gpg_key)
    unsigned = git_repos.create()
    unsigned.commit({"a.yaml": "a: 1\n"}, "unsigned")
    apply(cluster, secret(namespace, "keys", {"signer.asc": gpg_key.public_armored}))
    apply(cluster, secret(namespace, "other-keys", {"other.asc": gpg_other_key.public_armored}))
    verify = {"mode": "HEAD", "secretRef": {"name": "keys"}}

    apply(
        cluster,
        git_repository(
            namespace, "signed", git_http_server.url(signed.name), interval="1m", verify=verify
        ),
    )
    apply(
        cluster,
        git_repository(
            namespace, "unsigned", git_http_server.url(unsigned.name), interval="1m", verify=verify
        ),
    )
    apply(
        cluster,
        git_repository(
            namespace,
            "wrong-key",
            git_http_server.url(signed.name),
            interval="1m",
            verify={"mode": "HEAD", "secretRef": {"name": "other-keys"}},
        ),
    )

    good = wait_ready(cluster, namespace, "gitrepository", "signed")
    verified = condition(good, "SourceVerified")
    assert verified is not None and verified["status"] == "True"
    assert good["status"]["sourceVerificationMode"] == "HEAD"

    for name in ("unsigned", "wrong-key"):
        bad = wait_ready(cluster, namespace, "gitrepository", name, status="False")
        assert condition(bad, "Ready")["reason"] == "VerificationError", name  # type: ignore[index]
        assert condition(bad, "SourceVerified")["status"] == "False", name  # type: ignore[index]
        assert "artifact" not in bad["status"], name


# -- lifecycle -----------------------------------------------------------------------------------


def test_suspend_keeps_the_artifact_and_deletion_removes_storage(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"a.yaml": "a: 1\n"}, "one")
    apply(cluster, git_repository(namespace, "life", git_http_server.url(repo.name), interval="1m"))
    wait_ready(cluster, namespace, "gitrepository", "life")

    cluster.kubectl(
        "patch",
        "gitrepository",
        "life",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": true}}',
    )
    repo.commit({"a.yaml": "a: 2\n"}, "two")
    request_reconcile(cluster, namespace, "gitrepository", "life")
    time.sleep(4)
    assert get_object(cluster, namespace, "gitrepository", "life")["status"]["artifact"][
        "revision"
    ].endswith(first)

    storage = controllers.storage_dir / "gitrepository" / namespace / "life"
    assert storage.is_dir()
    cluster.kubectl("delete", "gitrepository", "life", "-n", namespace, "--timeout=60s")
    assert not storage.exists()
