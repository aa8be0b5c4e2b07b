"""Secrets into git auth, URL validation, and credentials never showing in messages."""

from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path

import pytest

from controllers.toolkit.git.checkout import fetch
from controllers.toolkit.git.credentials import (
    GitAuth,
    auth_from_secret,
    git_environment,
)
from controllers.toolkit.git.errors import (
    AUTHENTICATION_FAILED,
    URL_INVALID,
    AuthenticationError,
    GitOperationError,
    SourceError,
    URLInvalidError,
)
from controllers.toolkit.git.gitexec import classify
from controllers.toolkit.git.gitref import GitRef
from controllers.toolkit.git.giturl import parse_git_url
from controllers.toolkit.git.redact import scrub_text, scrub_url
from tests.support.gitservers import free_port, make_ssh_key

HTTPS = parse_git_url("https://git.example.invalid/org/repo.git")
SSH = parse_git_url("ssh://git@git.example.invalid:2222/org/repo.git")


# -- scrubbing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host/r.git", "https://host/r.git"),
        ("https://token@host:8443/r.git", "https://host:8443/r.git"),
        ("http://host/r.git", "http://host/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
    ],
)
def test_scrub_url(url: str, expected: str) -> None:
    assert scrub_url(url) == expected


def test_scrub_text() -> None:
    text = (
        "fatal: unable to access 'https://alice:s3cr3t@host/r.git/': 401\n"
        "> Authorization: Basic YWxpY2U6czNjcjN0\n"
        "header Authorization: Bearer tok-123456\n"
        "the value hunter2-password appears\n"
        "ssh://bob:pw@host/x"
    )
    out = scrub_text(text, ["hunter2-password"])
    for secret in ("s3cr3t", "alice", "YWxpY2U6czNjcjN0", "tok-123456", "hunter2-password", ":pw@"):
        assert secret not in out
    assert "https://***@host/r.git/" in out
    assert "ssh://bob:***@host/x" in out


def test_multiline_secret_is_scrubbed_line_by_line() -> None:
    key = (
        "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ\n"
        "CxyzCxyzCxyzCxyzCxyzCxyz\n-----END KEY-----\n"
    )
    out = scrub_text("ssh said: AAAAB3NzaC1yc2EAAAADAQABAAABAQ is bad", [key])
    assert "AAAAB3NzaC1yc2EAAAADAQABAAABAQ" not in out


def test_errors_scrub_their_own_message() -> None:
    error = GitOperationError("fetch https://u:topsecret@h/r.git failed: Authorization: Bearer abc")
    assert "topsecret" not in str(error)
    assert "abc" not in str(error).split("Bearer")[-1]
    assert error.reason == "GitOperationFailed"
    assert isinstance(error, SourceError)


# -- URLs -----------------------------------------------------------------------------------


def test_url_userinfo_is_taken_out_of_http_urls() -> None:
    url = parse_git_url("https://me:pa%40ss@host:8443/r.git")
    assert url.url == "https://host:8443/r.git"
    assert (url.username, url.password) == ("me", "pa@ss")
    assert url.origin == "https://host:8443/"
    assert str(url) == "https://host:8443/r.git"


def test_ssh_url_keeps_its_user() -> None:
    assert SSH.url == "ssh://git@git.example.invalid:2222/org/repo.git"
    assert SSH.port == 2222
    assert SSH.username == "git"


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:org/repo.git",  # scp-like: not accepted, like Flux
        "file:///etc",
        "/local/path",
        "ftp://host/r.git",
        "ext::sh -c evil",
        "https://",
        "https:///r.git",
        "ssh://-oProxyCommand=evil/r.git",
        "https://host",
        "https://host/",
        "https://host/r.git#frag",
        "https://host/a b.git",
        "https://host:99999/r.git",
        "ssh://git:pw@host/r.git",
        "",
    ],
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(URLInvalidError) as info:
        parse_git_url(url)
    assert info.value.reason == URL_INVALID


def test_invalid_url_message_has_no_password() -> None:
    with pytest.raises(URLInvalidError) as info:
        parse_git_url("ftp://user:topsecret@host/r.git")
    assert "topsecret" not in str(info.value)


# -- secrets ------------------------------------------------------------------------------


def test_basic_and_bearer() -> None:
    basic = auth_from_secret({"username": b"me", "password": b"pw\n"}, HTTPS)
    assert (basic.username, basic.password) == ("me", "pw")
    assert basic.kinds() == ["basic"]
    bearer = auth_from_secret({"bearerToken": b"tok"}, HTTPS)
    assert bearer.bearer_token == "tok"
    from_url = auth_from_secret(None, parse_git_url("https://u:p@host/r.git"))
    assert (from_url.username, from_url.password) == ("u", "p")
    assert auth_from_secret(None, HTTPS) == GitAuth()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": b"me"}, "'password' must be set"),
        ({"username": b"me", "password": b"p", "bearerToken": b"t"}, "cannot both be set"),
        ({"tls.crt": b"cert"}, "'tls.crt' and 'tls.key' go together"),
        ({"username": b"\xff\xfe", "password": b"p"}, "not valid UTF-8"),
    ],
)
def test_invalid_http_secrets(data: dict[str, bytes], message: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        auth_from_secret(data, HTTPS)
    assert message in str(info.value)
    assert info.value.reason == AUTHENTICATION_FAILED


def test_ssh_secrets() -> None:
    key = make_ssh_key()
    auth = auth_from_secret({"identity": key.private, "known_hosts": b"kh"}, SSH)
    assert auth.kinds() == ["ssh"]
    with pytest.raises(AuthenticationError) as info:
        auth_from_secret({"identity": key.private}, SSH)
    assert "known_hosts" in str(info.value)
    with pytest.raises(AuthenticationError):
        auth_from_secret(None, SSH)
    encrypted = make_ssh_key("pass-phrase")
    with pytest.raises(AuthenticationError) as info:
        auth_from_secret({"identity": encrypted.private, "known_hosts": b"kh"}, SSH)
    assert "encrypted" in str(info.value)
    ok = auth_from_secret(
        {"identity": encrypted.private, "known_hosts": b"kh", "password": b"pass-phrase"}, SSH
    )
    assert ok.ssh_password == "pass-phrase"


def test_repr_shows_no_values() -> None:
    auth = GitAuth(username="me", password="pw-value", bearer_token="tok-value")
    assert "pw-value" not in repr(auth)
    assert "tok-value" not in repr(auth)


# -- the environment git runs in --------------------------------------------------------


def test_ssh_environment_files_are_private_and_removed() -> None:
    key = make_ssh_key("pass-phrase")
    auth = auth_from_secret(
        {
            "identity": key.private,
            "known_hosts": b"[h]:1 ssh-ed25519 AAAA\n",
            "password": b"pass-phrase",
        },
        SSH,
    )
    with git_environment(auth, SSH, timeout=10) as genv:
        home = genv.home
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for name in ("identity", "known_hosts", "passphrase"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
        command = genv.env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=yes" in command
        assert str(home / "identity") in command
        assert "pass-phrase" not in " ".join(genv.env.values())
        askpass = subprocess.run(
            [genv.env["SSH_ASKPASS"]], capture_output=True, check=True, timeout=10
        )
        assert askpass.stdout == b"pass-phrase\n"
    assert not home.exists()


def test_http_environment_scopes_headers_to_the_origin(tmp_path: Path) -> None:
    auth = GitAuth(username="me", password="pw", ca_cert=b"-----BEGIN CERTIFICATE-----\n")
    with git_environment(auth, HTTPS, timeout=10) as genv:
        env = genv.env
        pairs = {
            env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
            for i in range(int(env["GIT_CONFIG_COUNT"]))
        }
        expected = "Authorization: Basic " + base64.b64encode(b"me:pw").decode()
        assert pairs["http.https://git.example.invalid/.extraHeader"] == expected
        assert pairs["protocol.allow"] == "never"
        assert Path(env["GIT_SSL_CAINFO"]).read_bytes().endswith(b"-----BEGIN CERTIFICATE-----\n")
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert env["GIT_CONFIG_NOSYSTEM"] == "1"
        assert expected.split()[-1] in genv.secrets


def test_git_failure_messages_never_carry_credentials(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: git fails to connect
    url = parse_git_url(f"http://alice:very-secret-pw@127.0.0.1:{port}/r.git")
    auth = auth_from_secret(None, url)
    with pytest.raises(SourceError) as info:
        fetch(url, GitRef(), auth, tmp_path / "co", timeout=20)
    message = str(info.value)
    assert "very-secret-pw" not in message
    assert "alice" not in message
    assert base64.b64encode(b"alice:very-secret-pw").decode() not in message
    assert f"127.0.0.1:{port}" in message
    assert info.value.reason == "GitOperationFailed"


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("fatal: Authentication failed for 'https://h/r.git/'", "AuthenticationFailed"),
        (
            "fatal: could not read Username for 'https://h': terminal prompts disabled",
            "AuthenticationFailed",
        ),
        ("git@h: Permission denied (publickey).", "AuthenticationFailed"),
        ("Host key verification failed.", "AuthenticationFailed"),
        ("warning: You appear to have cloned an empty repository.", "EmptyGitRepository"),
        ("fatal: unable to access 'https://h/': Could not resolve host: h", "GitOperationFailed"),
        ("fatal: couldn't find remote ref refs/heads/x", "GitOperationFailed"),
    ],
)
def test_classification(stderr: str, reason: str) -> None:
    assert classify(stderr).reason == reason
