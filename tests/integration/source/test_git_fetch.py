"""The source controller's git steps against real servers: git http-backend and OpenSSH."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controllers.source.archive import write_archive
from controllers.source.ignore import load_ignore_rules
from controllers.source.include import Include, apply_includes
from controllers.source.server import ArtifactServer
from controllers.source.storage import ObjectKey, Storage, artifact_filename
from controllers.source.verify import VerifyMode, keys_from_secret, verify_checkout
from controllers.toolkit.git.checkout import Checkout, Unchanged, fetch, resolve_remote
from controllers.toolkit.git.credentials import GitAuth, auth_from_secret
from controllers.toolkit.git.errors import (
    AUTHENTICATION_FAILED,
    EMPTY_GIT_REPOSITORY,
    GIT_OPERATION_FAILED,
    VERIFICATION_ERROR,
    SourceError,
)
from controllers.toolkit.git.gitref import GitRef
from controllers.toolkit.git.giturl import parse_git_url
from tests.support.fixtures import BEARER_TOKEN, HTTP_PASSWORD, HTTP_USER, SSH_KEY_PASSWORD
from tests.support.gitrepos import GpgKey, Repo, RepoFactory
from tests.support.gitservers import (
    CertPair,
    GitHttpServer,
    GitSshServer,
    SSHKey,
    TestCA,
    free_port,
    make_ssh_key,
)

pytestmark = pytest.mark.integration

TIMEOUT = 30.0


def run_fetch(
    url: str,
    ref: GitRef,
    dest: Path,
    secret: Mapping[str, bytes] | None = None,
    **kwargs: Any,
) -> Checkout | Unchanged:
    parsed = parse_git_url(url)
    return fetch(parsed, ref, auth_from_secret(secret, parsed), dest, timeout=TIMEOUT, **kwargs)


def checkout(url: str, ref: GitRef, dest: Path, **kwargs: Any) -> Checkout:
    result = run_fetch(url, ref, dest, **kwargs)
    assert isinstance(result, Checkout)
    return result


def fail(url: str, ref: GitRef, dest: Path, **kwargs: Any) -> SourceError:
    with pytest.raises(SourceError) as info:
        run_fetch(url, ref, dest, **kwargs)
    return info.value


@pytest.fixture
def app_repo(git_repos: RepoFactory) -> Repo:
    repo = git_repos.create()
    repo.commit({"deploy/app.yaml": "kind: ConfigMap\n", "README.md": "app\n"}, "first")
    return repo


def tree(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): p.read_text()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(path).parts
    }


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getnames()


# -- every ref type ----------------------------------------------------------------------


def test_default_ref_is_branch_master(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    app_repo.commit({"other.txt": "on main\n"}, branch="main")
    result = checkout(git_http_server.url(app_repo.name), GitRef.from_spec(None), tmp_path / "co")
    head = app_repo.head("master")
    assert result.revision == f"master@sha1:{head}"
    assert result.commit == head
    assert "other.txt" not in tree(result.path)
    assert tree(result.path)["deploy/app.yaml"] == "kind: ConfigMap\n"


def test_branch(git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path) -> None:
    dev = app_repo.commit({"dev.txt": "dev\n"}, branch="dev")
    result = checkout(git_http_server.url(app_repo.name), GitRef(branch="dev"), tmp_path / "co")
    assert result.revision == f"dev@sha1:{dev}"
    assert tree(result.path)["dev.txt"] == "dev\n"


def test_lightweight_and_annotated_tags(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    first = app_repo.tag("v1.0.0")
    second_commit = app_repo.commit({"v2.txt": "two\n"})
    second = app_repo.tag("v2.0.0", annotated=True)
    assert second == second_commit
    url = git_http_server.url(app_repo.name)
    light = checkout(url, GitRef(tag="v1.0.0"), tmp_path / "a")
    annotated = checkout(url, GitRef(tag="v2.0.0"), tmp_path / "b")
    # An annotated tag's revision names the commit, not the tag object.
    assert light.revision == f"v1.0.0@sha1:{first}"
    assert annotated.revision == f"v2.0.0@sha1:{second}"
    assert annotated.tag == "v2.0.0"
    assert "v2.txt" not in tree(light.path)
    assert "v2.txt" in tree(annotated.path)


def test_semver_picks_highest_matching_tag(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    commits = {}
    for tag in ("v1.0.0", "v1.2.0", "v1.10.1", "v2.0.0", "v1.11.0-rc.1", "not-a-version"):
        commits[tag] = app_repo.commit({"version.txt": tag})
        app_repo.tag(tag, annotated=tag.endswith(".0"))
    url = git_http_server.url(app_repo.name)
    result = checkout(url, GitRef(semver="^1.0"), tmp_path / "a")
    assert result.revision == f"v1.10.1@sha1:{commits['v1.10.1']}"
    assert tree(result.path)["version.txt"] == "v1.10.1"
    pre = checkout(url, GitRef(semver=">=1.11.0-rc.0 <2.0.0-0"), tmp_path / "b")
    assert pre.revision == f"v1.11.0-rc.1@sha1:{commits['v1.11.0-rc.1']}"
    error = fail(url, GitRef(semver=">=3"), tmp_path / "c")
    assert error.reason == GIT_OPERATION_FAILED
    assert "no tag" in str(error) and ">=3" in str(error)


def test_name_ref_pull_request(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    pr = app_repo.commit({"pr.txt": "pr\n"}, branch="feature", push=False)
    app_repo.set_ref("refs/pull/1/head", pr)
    url = git_http_server.url(app_repo.name)
    result = checkout(url, GitRef(name="refs/pull/1/head"), tmp_path / "a")
    assert result.revision == f"refs/pull/1/head@sha1:{pr}"
    assert tree(result.path)["pr.txt"] == "pr\n"
    # Branch and tag names given in full are shortened in the revision, like Flux.
    main = checkout(url, GitRef(name="refs/heads/master"), tmp_path / "b")
    assert main.revision == f"master@sha1:{app_repo.head()}"


def test_commit_alone_and_with_branch(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    old = app_repo.head()
    app_repo.commit({"later.txt": "later\n"})
    dev = app_repo.commit({"dev.txt": "dev\n"}, branch="dev")
    url = git_http_server.url(app_repo.name)
    alone = checkout(url, GitRef(commit=old), tmp_path / "a")
    assert alone.revision == f"sha1:{old}"
    assert "later.txt" not in tree(alone.path)
    on_branch = checkout(url, GitRef(branch="dev", commit=dev), tmp_path / "b")
    assert on_branch.revision == f"dev@sha1:{dev}"
    # A commit that is not on the given branch is an error, not a silent checkout.
    error = fail(url, GitRef(branch="master", commit=dev), tmp_path / "c")
    assert error.reason == GIT_OPERATION_FAILED
    assert dev in str(error)


def test_commit_from_a_server_without_protocol_v2(
    git_project_root: Path, app_repo: Repo, tmp_path: Path
) -> None:
    # Old servers refuse to send a commit by id; the fetch falls back to all branches.
    old = app_repo.head()
    app_repo.commit({"later.txt": "later\n"})
    with GitHttpServer(git_project_root, protocol_v2=False) as server:
        result = checkout(server.url(app_repo.name), GitRef(commit=old), tmp_path / "a")
        commands = {r.command for r in server.requests}
    assert result.revision == f"sha1:{old}"
    assert "later.txt" not in tree(result.path)
    assert "fetch" not in commands and "want" in commands  # it really spoke v0


def test_branch_from_a_server_without_protocol_v2(
    git_project_root: Path, app_repo: Repo, tmp_path: Path
) -> None:
    # A branch is fetched by the listed commit's id; an old server refuses that and
    # the fetch falls back to the branch itself, with the same result.
    later = app_repo.commit({"later.txt": "later\n"})
    with GitHttpServer(git_project_root, protocol_v2=False) as server:
        url = server.url(app_repo.name)
        first = checkout(url, GitRef(), tmp_path / "a")
        newer = app_repo.commit({"newer.txt": "newer\n"})
        again = checkout(url, GitRef(), tmp_path / "b", last_revision=first.revision)
    assert first.revision == f"master@sha1:{later}"
    assert again.revision == f"master@sha1:{newer}"
    assert tree(again.path)["newer.txt"] == "newer\n"


def test_ref_precedence_commit_over_name_over_tag_over_branch(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    first = app_repo.head()
    tagged = app_repo.commit({"t.txt": "t"})
    app_repo.tag("v1.0.0")
    named = app_repo.commit({"n.txt": "n"}, branch="named")
    url = git_http_server.url(app_repo.name)
    spec: dict[str, str] = {"branch": "master", "tag": "v1.0.0", "name": "refs/heads/named"}
    assert checkout(url, GitRef.from_spec(spec), tmp_path / "a").commit == named
    spec["commit"] = first
    assert checkout(url, GitRef.from_spec(spec), tmp_path / "b").commit == first
    assert (
        checkout(url, GitRef.from_spec({"branch": "named", "tag": "v1.0.0"}), tmp_path / "c").commit
        == tagged
    )


# -- every auth type -----------------------------------------------------------------------


def test_basic_auth(git_http_basic_server: GitHttpServer, app_repo: Repo, tmp_path: Path) -> None:
    url = git_http_basic_server.url(app_repo.name)
    secret = {"username": HTTP_USER.encode(), "password": HTTP_PASSWORD.encode()}
    result = checkout(url, GitRef(), tmp_path / "a", secret=secret)
    assert result.commit == app_repo.head()
    # Credentials never reach the checkout's git config.
    assert HTTP_PASSWORD not in (result.path / ".git" / "config").read_text()


def test_basic_auth_wrong_password(
    git_http_basic_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_http_basic_server.url(app_repo.name)
    secret = {"username": HTTP_USER.encode(), "password": b"wrong-password-123"}
    error = fail(url, GitRef(), tmp_path / "a", secret=secret)
    assert error.reason == AUTHENTICATION_FAILED
    assert "wrong-password-123" not in str(error)
    assert url in str(error)
    missing = fail(url, GitRef(), tmp_path / "b")
    assert missing.reason == AUTHENTICATION_FAILED


def test_basic_auth_from_url_userinfo_is_scrubbed(
    git_http_basic_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    plain = git_http_basic_server.url(app_repo.name)
    good = plain.replace("http://", f"http://{HTTP_USER}:{HTTP_PASSWORD}@")
    assert checkout(good, GitRef(), tmp_path / "a").commit == app_repo.head()
    bad = plain.replace("http://", f"http://{HTTP_USER}:hunter2-secret@")
    error = fail(bad, GitRef(), tmp_path / "b")
    assert error.reason == AUTHENTICATION_FAILED
    assert "hunter2-secret" not in str(error)


def test_bearer_token(
    git_http_bearer_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_http_bearer_server.url(app_repo.name)
    result = checkout(url, GitRef(), tmp_path / "a", secret={"bearerToken": BEARER_TOKEN.encode()})
    assert result.commit == app_repo.head()
    error = fail(url, GitRef(), tmp_path / "b", secret={"bearerToken": b"not-the-token-42"})
    assert error.reason == AUTHENTICATION_FAILED
    assert "not-the-token-42" not in str(error)


def test_https_with_ca(
    git_https_server: GitHttpServer, tls_ca: TestCA, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_https_server.url(app_repo.name)
    result = checkout(url, GitRef(), tmp_path / "a", secret={"ca.crt": tls_ca.cert_pem})
    assert result.commit == app_repo.head()
    # Without the CA the server's certificate is not trusted.
    error = fail(url, GitRef(), tmp_path / "b")
    assert error.reason == GIT_OPERATION_FAILED
    assert "certificate" in str(error).lower()


def test_https_client_certificate(
    git_https_mtls_server: GitHttpServer,
    tls_ca: TestCA,
    client_cert: CertPair,
    app_repo: Repo,
    tmp_path: Path,
) -> None:
    url = git_https_mtls_server.url(app_repo.name)
    secret = {
        "ca.crt": tls_ca.cert_pem,
        "tls.crt": client_cert.cert_pem,
        "tls.key": client_cert.key_pem,
    }
    assert checkout(url, GitRef(), tmp_path / "a", secret=secret).commit == app_repo.head()
    error = fail(url, GitRef(), tmp_path / "b", secret={"ca.crt": tls_ca.cert_pem})
    assert error.reason == GIT_OPERATION_FAILED


def test_ssh_key(
    git_ssh_server: GitSshServer, ssh_key: SSHKey, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_ssh_server.url(app_repo.name)
    secret = {"identity": ssh_key.private, "known_hosts": git_ssh_server.known_hosts}
    result = checkout(url, GitRef(), tmp_path / "a", secret=secret)
    assert result.revision == f"master@sha1:{app_repo.head()}"
    # Commits by id go through the same transport (protocol v2 over ssh).
    old = app_repo.head()
    app_repo.commit({"x.txt": "x"})
    by_commit = checkout(url, GitRef(commit=old), tmp_path / "b", secret=secret)
    assert by_commit.revision == f"sha1:{old}"


def test_ssh_encrypted_key_with_password(
    git_ssh_server: GitSshServer, ssh_encrypted_key: SSHKey, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_ssh_server.url(app_repo.name)
    secret = {
        "identity": ssh_encrypted_key.private,
        "known_hosts": git_ssh_server.known_hosts,
        "password": SSH_KEY_PASSWORD.encode(),
    }
    assert checkout(url, GitRef(), tmp_path / "a", secret=secret).commit == app_repo.head()
    wrong = dict(secret, password=b"not-the-passphrase")
    error = fail(url, GitRef(), tmp_path / "b", secret=wrong)
    assert error.reason == AUTHENTICATION_FAILED
    assert "not-the-passphrase" not in str(error)
    no_password = {k: v for k, v in secret.items() if k != "password"}
    error = fail(url, GitRef(), tmp_path / "c", secret=no_password)
    assert error.reason == AUTHENTICATION_FAILED
    assert "password" in str(error)


def test_ssh_unknown_key_and_wrong_host_key(
    git_ssh_server: GitSshServer, ssh_key: SSHKey, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_ssh_server.url(app_repo.name)
    stranger = make_ssh_key()
    error = fail(
        url,
        GitRef(),
        tmp_path / "a",
        secret={"identity": stranger.private, "known_hosts": git_ssh_server.known_hosts},
    )
    assert error.reason == AUTHENTICATION_FAILED
    other_host = make_ssh_key().public.split()[:2]
    known = f"[127.0.0.1]:{git_ssh_server.port} {' '.join(other_host)}\n".encode()
    error = fail(
        url, GitRef(), tmp_path / "b", secret={"identity": ssh_key.private, "known_hosts": known}
    )
    assert error.reason == AUTHENTICATION_FAILED
    assert "host key" in str(error).lower()


# -- failures ------------------------------------------------------------------------------


def test_unreachable_host(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    error = fail(f"http://127.0.0.1:{port}/nothing.git", GitRef(), tmp_path / "a")
    assert error.reason == GIT_OPERATION_FAILED
    assert f"127.0.0.1:{port}" in str(error)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_server_that_never_answers_times_out(silent_server: int, tmp_path: Path) -> None:
    url = parse_git_url(f"http://127.0.0.1:{silent_server}/repo.git")
    with pytest.raises(SourceError) as info:
        fetch(url, GitRef(), GitAuth(), tmp_path / "a", timeout=2)
    assert info.value.reason == GIT_OPERATION_FAILED
    assert "timed out" in str(info.value) or "timeout" in str(info.value)


def test_empty_repository(
    git_http_server: GitHttpServer, git_repos: RepoFactory, tmp_path: Path
) -> None:
    bare = git_repos.empty()
    url = git_http_server.url(bare.name.removesuffix(".git"))
    error = fail(url, GitRef(), tmp_path / "a")
    assert error.reason == EMPTY_GIT_REPOSITORY
    error = fail(url, GitRef(tag="v1"), tmp_path / "b")
    assert error.reason == EMPTY_GIT_REPOSITORY


def test_missing_branch_tag_and_repository(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_http_server.url(app_repo.name)
    error = fail(url, GitRef(branch="nope"), tmp_path / "a")
    assert error.reason == GIT_OPERATION_FAILED
    assert "branch 'nope' not found" in str(error)
    error = fail(url, GitRef(tag="v9"), tmp_path / "b")
    assert "tag 'v9' not found" in str(error)
    error = fail(git_http_server.url("does-not-exist"), GitRef(), tmp_path / "c")
    assert error.reason == GIT_OPERATION_FAILED


# -- no-op poll ------------------------------------------------------------------------------


def test_unchanged_remote_skips_the_clone(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_http_server.url(app_repo.name)
    first = checkout(url, GitRef(), tmp_path / "a")
    git_http_server.clear_requests()
    again = run_fetch(url, GitRef(), tmp_path / "b", last_revision=first.revision)
    assert isinstance(again, Unchanged)
    assert again.revision == first.revision
    assert not (tmp_path / "b").exists()
    mine = [r for r in git_http_server.requests if r.path.startswith(f"/{app_repo.name}.git/")]
    # One GET of the reference advertisement: no fetch, not even git's second (ls-refs) request.
    assert [(r.method, r.path.rsplit("/", 2)[-2:], r.status) for r in mine] == [
        ("GET", ["info", "refs"], 200)
    ]
    # Once the branch moves, the same call fetches the new commit.
    new = app_repo.commit({"new.txt": "new\n"})
    moved = run_fetch(url, GitRef(), tmp_path / "c", last_revision=first.revision)
    assert isinstance(moved, Checkout)
    assert moved.commit == new
    assert resolve_remote(parse_git_url(url), GitRef(), GitAuth(), timeout=TIMEOUT).revision == (
        f"master@sha1:{new}"
    )


# (the server fixture, the Secret's data, the same Secret with refused credentials)
_AUTH_CASES = {
    "basic": (
        "git_http_basic_server",
        {"username": HTTP_USER.encode(), "password": HTTP_PASSWORD.encode()},
        {"username": HTTP_USER.encode(), "password": b"not-it-1234"},
    ),
    "bearer": (
        "git_http_bearer_server",
        {"bearerToken": BEARER_TOKEN.encode()},
        {"bearerToken": b"not-it-1234"},
    ),
}


@pytest.mark.parametrize("auth", sorted(_AUTH_CASES))
def test_unchanged_poll_is_one_authorized_request(
    auth: str, request: pytest.FixtureRequest, app_repo: Repo, tmp_path: Path
) -> None:
    """The in-process listing sends the Secret's credentials as git does; refused ones make
    it step aside, and git's own error is the one reported."""
    fixture, secret, refused = _AUTH_CASES[auth]
    server: GitHttpServer = request.getfixturevalue(fixture)
    url = server.url(app_repo.name)
    first = checkout(url, GitRef(), tmp_path / "a", secret=secret)
    server.clear_requests()
    again = run_fetch(url, GitRef(), tmp_path / "b", secret=secret, last_revision=first.revision)
    assert isinstance(again, Unchanged)
    assert [(r.method, r.status) for r in server.requests] == [("GET", 200)]
    error = fail(url, GitRef(), tmp_path / "c", secret=refused, last_revision=first.revision)
    assert error.reason == AUTHENTICATION_FAILED
    assert "not-it-1234" not in str(error)


def test_unchanged_poll_over_https_trusts_the_secrets_ca(
    git_https_server: GitHttpServer, tls_ca: TestCA, app_repo: Repo, tmp_path: Path
) -> None:
    url = git_https_server.url(app_repo.name)
    secret = {"ca.crt": tls_ca.cert_pem}
    first = checkout(url, GitRef(), tmp_path / "a", secret=secret)
    git_https_server.clear_requests()
    again = run_fetch(url, GitRef(), tmp_path / "b", secret=secret, last_revision=first.revision)
    assert isinstance(again, Unchanged)
    assert [(r.method, r.status) for r in git_https_server.requests] == [("GET", 200)]
    # Without the CA, nothing is trusted: the listing steps aside and git refuses the server.
    error = fail(url, GitRef(), tmp_path / "c", last_revision=first.revision)
    assert "certificate" in str(error).lower()


def test_moved_branch_is_listed_once(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    # The listing that saw the branch move is the only one: the fetch asks for the
    # listed commit by id (no ls-refs), and a force-pushed branch is followed all the same.
    url = git_http_server.url(app_repo.name)
    first = checkout(url, GitRef(), tmp_path / "a")
    new = app_repo.commit({"new.txt": "new\n"})
    git_http_server.clear_requests()
    moved = checkout(url, GitRef(), tmp_path / "b", last_revision=first.revision)
    mine = [r for r in git_http_server.requests if r.path.startswith(f"/{app_repo.name}.git/")]
    assert moved.commit == new
    # The listing is in-process (GET info/refs); git's fetch by id lists nothing again.
    assert [r.command for r in mine if r.method == "POST"] == ["fetch"]
    app_repo.set_ref("refs/heads/master", first.commit)  # a force push back
    back = checkout(url, GitRef(), tmp_path / "c", last_revision=moved.revision)
    assert back.revision == first.revision
    assert "new.txt" not in tree(back.path)


# -- content: ignore, include, submodules ------------------------------------------------------


def test_ignore_rules_shape_the_artifact(
    git_http_server: GitHttpServer, git_repos: RepoFactory, tmp_path: Path
) -> None:
    repo = git_repos.create()
    repo.commit(
        {
            "deploy/app.yaml": "a",
            "deploy/secret.enc": "b",
            "deploy/logo.png": "png",
            "docs/readme.md": "c",
            "docs/keep.md": "d",
            "nested/.sourceignore": "*.tmp\n",
            "nested/x.tmp": "e",
            "top.tmp": "f",
            ".sourceignore": "docs/\n!docs/keep.md\n",
            ".github/workflows/ci.yaml": "ci",
            "run.sh": "#!/bin/sh\n",
        },
        executable=["run.sh"],
    )
    result = checkout(git_http_server.url(repo.name), GitRef(), tmp_path / "co")
    rules = load_ignore_rules(result.path, "*.enc\n")
    buf = io.BytesIO()
    digest = write_archive(result.path, buf, rules).digest
    names = tar_names(buf.getvalue())
    assert "deploy/app.yaml" in names
    assert "docs/keep.md" in names
    assert "top.tmp" in names  # nested .sourceignore only applies below nested/
    for gone in ("deploy/secret.enc", "deploy/logo.png", "docs/readme.md", "nested/x.tmp"):
        assert gone not in names
    assert not [n for n in names if n.startswith((".git/", ".github")) or n == ".git"]
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r:gz") as tar:
        assert tar.getmember("run.sh").mode == 0o755
    assert digest == "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()


def test_include_copies_another_artifact(
    git_http_server: GitHttpServer, git_repos: RepoFactory, tmp_path: Path
) -> None:
    lib = git_repos.create()
    lib.commit({"manifests/lib.yaml": "lib", "other/skip.txt": "x"})
    app = git_repos.create()
    app.commit({"app.yaml": "app", "vendor/lib/stale.yaml": "old"})
    storage = Storage(tmp_path / "storage", "localhost:9090")
    lib_co = checkout(git_http_server.url(lib.name), GitRef(), tmp_path / "lib")
    stored = storage.archive(
        ObjectKey("gitrepository", "default", lib.name),
        artifact_filename(lib_co.commit),
        lib_co.path,
        lib_co.revision,
        load_ignore_rules(lib_co.path),
    )
    app_co = checkout(git_http_server.url(app.name), GitRef(), tmp_path / "app")
    apply_includes(
        app_co.path,
        [
            Include(
                name=lib.name,
                artifact=storage.local_path(stored.path),
                digest=stored.digest,
                from_path="manifests",
                to_path="vendor/lib",
            )
        ],
    )
    files = tree(app_co.path)
    assert files["vendor/lib/lib.yaml"] == "lib"
    assert "vendor/lib/stale.yaml" not in files
    assert not [f for f in files if f.startswith("vendor/lib/other")]


def test_submodules(
    git_http_basic_server: GitHttpServer, git_repos: RepoFactory, tmp_path: Path
) -> None:
    sub = git_repos.create()
    sub_commit = sub.commit({"module.yaml": "from submodule\n"})
    sub.commit({"module.yaml": "newer, not recorded\n"})
    parent = git_repos.create()
    parent.commit({"main.yaml": "parent\n"})
    parent.add_submodule("modules/sub", f"../{sub.name}.git", sub_commit)
    url = git_http_basic_server.url(parent.name)
    secret = {"username": HTTP_USER.encode(), "password": HTTP_PASSWORD.encode()}
    without = checkout(url, GitRef(), tmp_path / "a", secret=secret)
    assert "modules/sub/module.yaml" not in tree(without.path)
    # The submodule is fetched with the same credentials, at the recorded commit.
    with_subs = checkout(url, GitRef(), tmp_path / "b", secret=secret, recurse_submodules=True)
    assert tree(with_subs.path)["modules/sub/module.yaml"] == "from submodule\n"
    buf = io.BytesIO()
    write_archive(with_subs.path, buf, load_ignore_rules(with_subs.path))
    names = tar_names(buf.getvalue())
    assert "modules/sub/module.yaml" in names
    assert "modules/sub/.git" not in names


# -- signature verification --------------------------------------------------------------


def verify(result: Checkout, mode: VerifyMode, key: GpgKey) -> str:
    keys = keys_from_secret({"author.asc": key.public_armored, "note.txt": b"ignored"})
    outcome = verify_checkout(result.path, result.commit, result.tag, mode, keys, timeout=TIMEOUT)
    return outcome.message


def test_signed_commit_verifies(
    git_http_server: GitHttpServer,
    git_repos: RepoFactory,
    gpg_key: GpgKey,
    gpg_other_key: GpgKey,
    tmp_path: Path,
) -> None:
    repo = git_repos.create()
    repo.commit({"a.yaml": "a"}, sign=gpg_key)
    result = checkout(git_http_server.url(repo.name), GitRef(), tmp_path / "a")
    assert gpg_key.fingerprint in verify(result, VerifyMode.HEAD, gpg_key)
    with pytest.raises(SourceError) as info:
        verify(result, VerifyMode.HEAD, gpg_other_key)
    assert info.value.reason == VERIFICATION_ERROR
    assert "could not be verified" in str(info.value)


def test_unsigned_commit_fails_verification(
    git_http_server: GitHttpServer, app_repo: Repo, gpg_key: GpgKey, tmp_path: Path
) -> None:
    result = checkout(git_http_server.url(app_repo.name), GitRef(), tmp_path / "a")
    with pytest.raises(SourceError) as info:
        verify(result, VerifyMode.HEAD, gpg_key)
    assert info.value.reason == VERIFICATION_ERROR
    assert "not signed" in str(info.value)


def test_signed_tag_modes(
    git_http_server: GitHttpServer,
    git_repos: RepoFactory,
    gpg_key: GpgKey,
    tmp_path: Path,
) -> None:
    repo = git_repos.create()
    repo.commit({"a.yaml": "a"})  # unsigned commit
    repo.tag("v1.0.0", sign=gpg_key)
    repo.tag("v1.0.1")  # lightweight
    url = git_http_server.url(repo.name)
    signed_tag = checkout(url, GitRef(semver="1.0.0"), tmp_path / "a")
    assert "tag signed" in verify(signed_tag, VerifyMode.TAG, gpg_key)
    with pytest.raises(SourceError) as info:
        verify(signed_tag, VerifyMode.TAG_AND_HEAD, gpg_key)
    assert "not signed" in str(info.value)
    light = checkout(url, GitRef(tag="v1.0.1"), tmp_path / "b")
    with pytest.raises(SourceError) as info:
        verify(light, VerifyMode.TAG, gpg_key)
    assert "lightweight" in str(info.value)
    branch = checkout(url, GitRef(), tmp_path / "c")
    with pytest.raises(SourceError) as info:
        verify(branch, VerifyMode.TAG, gpg_key)
    assert info.value.reason == VERIFICATION_ERROR


# -- the whole path: fetch, archive, store, serve, download, check ----------------------------


async def test_artifact_round_trip(
    git_http_server: GitHttpServer, app_repo: Repo, tmp_path: Path
) -> None:
    result = checkout(git_http_server.url(app_repo.name), GitRef(), tmp_path / "co")
    server = ArtifactServer(tmp_path / "storage", host="127.0.0.1", port=0)
    storage = Storage(tmp_path / "storage", "127.0.0.1:0")
    stored = storage.archive(
        ObjectKey("gitrepository", "default", "app"),
        artifact_filename(result.commit),
        result.path,
        result.revision,
        load_ignore_rules(result.path),
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/{stored.path}"
            async with session.get(url) as resp:
                assert resp.status == 200
                body = await resp.read()
    finally:
        await server.stop()
    assert "sha256:" + hashlib.sha256(body).hexdigest() == stored.digest
    assert len(body) == stored.size
    assert sorted(tar_names(body)) == ["README.md", "deploy", "deploy/app.yaml"]
    assert stored.revision == f"master@sha1:{app_repo.head()}"


def test_ambient_git_variables_cannot_weaken_tls(
    git_https_server: GitHttpServer,
    app_repo: Repo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A controller started with GIT_SSL_NO_VERIFY in its environment must still verify.
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")
    error = fail(git_https_server.url(app_repo.name), GitRef(), tmp_path / "a")
    assert error.reason == GIT_OPERATION_FAILED
    assert "certificate" in str(error).lower()


def pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


def test_http_server_takes_chunked_gzip_protocol_v2_requests(
    git_http_server: GitHttpServer, app_repo: Repo
) -> None:
    """The test server's CGI bridge: chunked body, gzip encoding, Git-Protocol header."""
    body = gzip.compress(pkt(b"command=ls-refs\n") + b"0001" + pkt(b"peel\n") + b"0000")
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:]) if part
    )
    request = (
        (
            f"POST /{app_repo.name}.git/git-upload-pack HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Content-Type: application/x-git-upload-pack-request\r\n"
            "Accept: application/x-git-upload-pack-result\r\n"
            "Content-Encoding: gzip\r\n"
            "Git-Protocol: version=2\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", git_http_server.port), timeout=30) as conn:
        conn.sendall(request)
        response = b""
        while data := conn.recv(65536):
            response += data
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"application/x-git-upload-pack-result" in head
    assert f"{app_repo.head()} refs/heads/master".encode() in payload
