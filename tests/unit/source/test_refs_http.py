"""The in-process reference listing (toolkit.git.refs_http) reads what git reads.

Advertisements come from git itself (`git upload-pack --http-backend-info-refs`, what
`git http-backend` sends after its service line) and are compared with `git ls-remote`
of the same repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controllers.toolkit.git.checkout import parse_ls_remote
from controllers.toolkit.git.credentials import GitAuth, ProxyConfig
from controllers.toolkit.git.giturl import parse_git_url
from controllers.toolkit.git.refs_http import NotAdvertisement, git_must_list, parse_advertisement

SERVICE = b"001e# service=git-upload-pack\n0000"
IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def advertisement(repo: Path) -> bytes:
    listed = subprocess.run(
        ["git", "upload-pack", "--http-backend-info-refs", str(repo)],
        check=True,
        capture_output=True,
    )
    return SERVICE + listed.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    return path


def test_every_kind_of_reference_as_ls_remote_lists_it(repo: Path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "one")
    git(repo, "tag", "v1.0.0")
    git(repo, "tag", "-a", "v1.1.0", "-m", "annotated")
    git(repo, "checkout", "-q", "-b", "feature/x")
    git(repo, "commit", "-q", "--allow-empty", "-m", "two")
    git(repo, "update-ref", "refs/pull/7/head", "HEAD")
    git(repo, "tag", "-a", "v2.0.0-rc.1", "-m", "on the branch")
    git(repo, "checkout", "-q", "main")
    parsed = parse_advertisement(advertisement(repo))
    assert parsed == parse_ls_remote(git(repo, "ls-remote", "."))
    assert "refs/tags/v1.1.0^{}" in parsed and "HEAD" in parsed


def test_an_empty_repository_advertises_nothing(repo: Path) -> None:
    assert parse_advertisement(advertisement(repo)) == {}
    assert git(repo, "ls-remote", ".") == ""


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"0000",
        b"001e# service=git-receive-pack\n0000",  # another service
        SERVICE,  # no references, not even an empty repository's line
        SERVICE + b"003f" + b"a" * 40 + b" refs/heads/main\n",  # no closing flush
        SERVICE + b"zzzz",  # not a length
        SERVICE + b"0002",  # a length below a header's
        SERVICE + b"0040" + b"a" * 40 + b" refs/heads/main\n",  # longer than the body
        SERVICE + b"003f" + b"g" * 40 + b" refs/heads/main\n0000",  # not hex
        SERVICE + b"0031" + b"a" * 40 + b"refs/h\n0000",  # no space
        SERVICE + b"003f" + b"a" * 40 + b" refs/heads/main\n0000" + b"0000",  # two flushes
    ],
)
def test_anything_else_is_not_an_advertisement(body: bytes) -> None:
    with pytest.raises(NotAdvertisement):
        parse_advertisement(body)


def test_capabilities_only_on_the_first_line(repo: Path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "one")
    body = advertisement(repo)
    assert parse_advertisement(body)
    head = f"{'a' * 40} refs/heads/other\0agent=git/x\n".encode()
    with pytest.raises(NotAdvertisement):
        parse_advertisement(body[:-4] + f"{len(head) + 4:04x}".encode() + head + b"0000")


def test_git_lists_what_this_listing_cannot_promise(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    https = parse_git_url("https://git.example.invalid/org/repo.git")
    assert git_must_list(https, GitAuth(username="u", password="p", ca_cert=b"pem"), None) is None
    assert git_must_list(https, GitAuth(bearer_token="t"), None) is None
    assert git_must_list(https, GitAuth(), ProxyConfig("http://proxy.invalid:3128")) == "a proxy"
    mtls = GitAuth(tls_cert=b"cert", tls_key=b"key")
    assert git_must_list(https, mtls, None) == "a client certificate"
    ssh = parse_git_url("ssh://git@git.example.invalid/org/repo.git")
    assert git_must_list(ssh, GitAuth(), None) == "not http(s)"
    query = parse_git_url("https://git.example.invalid/org/repo.git?x=1")
    assert git_must_list(query, GitAuth(), None) == "a query in the URL"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert git_must_list(https, GitAuth(), None) == "HTTPS_PROXY is set"
