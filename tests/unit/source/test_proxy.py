"""spec.proxySecretRef: the Secret's keys, what git is given, and a refusal named as such."""

from __future__ import annotations

import pytest

from controllers.toolkit.git.credentials import (
    GitAuth,
    ProxyConfig,
    git_environment,
    proxy_from_secret,
)
from controllers.toolkit.git.errors import AuthenticationError
from controllers.toolkit.git.gitexec import classify
from controllers.toolkit.git.giturl import parse_git_url

WHERE = "secret 'apps/proxy' (spec.proxySecretRef)"


def test_address_alone_or_with_credentials() -> None:
    plain = proxy_from_secret({"address": b"http://proxy.invalid:3128\n"}, WHERE)
    assert plain.git_url() == "http://proxy.invalid:3128"
    assert plain.secret_values() == ()
    authed = proxy_from_secret(
        {"address": b"http://proxy.invalid:3128", "username": b"me", "password": b"p@ss:w/rd!"},
        WHERE,
    )
    # Userinfo is percent-encoded: git decodes it before handing it to curl.
    assert authed.git_url() == "http://me:p%40ss%3Aw%2Frd%21@proxy.invalid:3128"
    assert "p@ss:w/rd!" in authed.secret_values()
    assert "p%40ss%3Aw%2Frd%21" in authed.secret_values()
    assert "p@ss" not in repr(authed)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({}, "key 'address' is missing or empty"),
        ({"address": b""}, "key 'address' is missing or empty"),
        ({"address": b"proxy.invalid:3128"}, "'address' must be a URL"),
        ({"address": b"ftp://proxy.invalid"}, "'address' must be a URL"),
        ({"address": b"http://u:p@proxy.invalid"}, "not in 'address'"),
        ({"address": b"http://proxy.invalid", "password": b"x"}, "'password' needs a 'username'"),
    ],
)
def test_unusable_proxy_secrets_are_named(data: dict[str, bytes], says: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        proxy_from_secret(data, WHERE)
    assert caught.value.message.startswith(f"invalid proxy {WHERE}: ")
    assert says in caught.value.message


def test_git_gets_the_proxy_through_its_config_and_scrubs_its_password() -> None:
    url = parse_git_url("https://git.example.invalid/org/repo.git")
    proxy = ProxyConfig("http://proxy.invalid:3128", "me", "proxy-password-1")
    with git_environment(GitAuth(), url, 30, proxy) as genv:
        config = {
            genv.env[f"GIT_CONFIG_KEY_{i}"]: genv.env[f"GIT_CONFIG_VALUE_{i}"]
            for i in range(int(genv.env["GIT_CONFIG_COUNT"]))
        }
        assert config["http.proxy"] == "http://me:proxy-password-1@proxy.invalid:3128"
        assert genv.env["no_proxy"] == genv.env["NO_PROXY"] == ""
        assert "proxy-password-1" in genv.secrets
    with git_environment(GitAuth(), url, 30) as genv:
        assert "no_proxy" not in genv.env
        assert not any(v.startswith("http.proxy") for k, v in genv.env.items() if "KEY" in k)


@pytest.mark.parametrize(
    "stderr",
    [
        "fatal: unable to access 'http://h/r.git/': The requested URL returned error: 407",
        "fatal: unable to access 'https://h/': Received HTTP code 407 from proxy after CONNECT",
    ],
)
def test_a_proxy_refusing_credentials_is_an_authentication_failure(stderr: str) -> None:
    assert classify(stderr) is AuthenticationError
